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
        """What the file holds now (another process, an apply from another shell, may have
        written it), with what this process remembered and has not written yet: a signal can
        land between a thread's new mask and the save (a CI run lost one that way). The first
        original of a thread wins, as in save()."""
        merged = self._on_disk()
        for tid, entry in self.masks.items():
            merged.setdefault(tid, entry)
        self.masks = merged

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

    def forget(self, tgids: set[int]) -> None:
        """Drop the originals of these processes (restored, or gone), on disk too."""
        with state_lock(self.path.parent):
            kept = {tid: entry for tid, entry in self._on_disk().items() if entry[0] not in tgids}
            self.masks = {tid: entry for tid, entry in self.masks.items() if entry[0] not in tgids} | kept
            data = {str(tid): {"tgid": tgid, "cpus": cpus} for tid, (tgid, cpus) in self.masks.items()}
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

    def taken(self) -> set[int]:
        """The processes whose masks this journal holds originals of."""
        return {tgid for tgid, _cpus in self.journal.masks.values()}

    def rollback(self, only: set[int] | None = None) -> int:
        """Put every original mask back (or only those of the processes in `only`); threads born
        under the policy get their process's original (the main thread's, else any thread's).
        How many threads were restored."""
        by_process: dict[int, list[int]] = {}
        for tid, (tgid, cpus) in self.journal.masks.items():
            if only is not None and tgid not in only:
                continue
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
        if only is None:
            self.journal.clear()
        else:
            self.journal.forget(set(by_process))
        return restored
