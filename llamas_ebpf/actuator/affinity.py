"""CPU affinity: sched_setaffinity for every thread of a process, remembering each thread's
original mask first (in a journal that survives a crash) so that rollback can put it back."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llamas_ebpf.kernel import procfs
from llamas_ebpf.policy.lock import state_lock, write_atomically


class Journal:
    """Original affinity masks, by thread, written through to disk (fsynced) on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.masks: dict[int, tuple[int, list[int]]] = {}  # tid -> (tgid, original CPUs)
        self.reload()

    def _on_disk(self) -> dict[int, tuple[int, list[int]]]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        return {int(tid): (entry["tgid"], entry["cpus"]) for tid, entry in data.items()}

    def reload(self) -> None:
        """What the file holds now: another process (an apply from another shell, or a rollback)
        may have written it."""
        self.masks = self._on_disk()

    def remember(self, tgid: int, tid: int, cpus: set[int]) -> bool:
        if tid in self.masks:
            return False
        self.masks[tid] = (tgid, sorted(cpus))
        return True

    def save(self) -> None:
        """Write the masks through, merged with what another process wrote meanwhile (the first
        original of a thread wins), under the state directory's lock."""
        with state_lock(self.path.parent):
            merged = self._on_disk()
            for tid, entry in self.masks.items():
                merged.setdefault(tid, entry)
            self.masks = merged
            data = {str(tid): {"tgid": tgid, "cpus": cpus} for tid, (tgid, cpus) in merged.items()}
            write_atomically(self.path, json.dumps(data))

    def clear(self) -> None:
        self.masks = {}
        self.path.unlink(missing_ok=True)


class AffinityActuator:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def enforce_thread(self, tgid: int, tid: int, cpus: set[int]) -> bool:
        """Pin one thread; False when it is gone or already there."""
        try:
            current = os.sched_getaffinity(tid)
            if current == cpus:
                return False
            self.journal.remember(tgid, tid, current)
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def enforce(self, tgid: int, cpus: set[int]) -> int:
        """Pin every thread of a process; how many changed. Threads made later inherit the mask."""
        changed = sum(self.enforce_thread(tgid, tid, cpus) for tid in procfs.thread_ids(tgid))
        if changed:
            self.journal.save()
        return changed

    def rollback(self) -> int:
        """Put every original mask back; threads born under the policy get their process's
        original (the main thread's, else any thread's). How many threads were restored."""
        by_process: dict[int, list[int]] = {}
        for tid, (tgid, cpus) in self.journal.masks.items():
            if tid == tgid or tgid not in by_process:
                by_process[tgid] = cpus
        restored = 0
        for tgid, process_cpus in by_process.items():
            for tid in procfs.thread_ids(tgid):
                entry = self.journal.masks.get(tid)
                try:
                    os.sched_setaffinity(tid, set(entry[1] if entry else process_cpus))
                    restored += 1
                except (ProcessLookupError, PermissionError, OSError):
                    continue
        self.journal.clear()
        return restored
