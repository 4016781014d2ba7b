"""CPU affinity: sched_setaffinity for every thread of a process, remembering each thread's
original mask first (in a journal that survives a crash) so that rollback can put it back.

The journal is sealed with a checksum (policy.lock.write_sealed). One that no longer reads back
is set aside (originals.json.damaged, for a post-mortem) and said; a rollback then gives the
processes the policy took their cgroup's CPUs, the mask they would have had but for llamas,
in place of the recorded ones, and says how many."""

from __future__ import annotations

import os
from pathlib import Path

from llamas_ebpf.failpoints import failpoint
from llamas_ebpf.kernel import cpulist, procfs
from llamas_ebpf.policy.lock import CorruptState, read_sealed, state_lock, write_sealed


class Journal:
    """Original affinity masks, by thread, written through to disk (fsynced) on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.masks: dict[int, tuple[int, list[int]]] = {}  # tid -> (tgid, original CPUs)
        self.damaged = ""  # why the file on disk did not read back, when it did not
        self.reload()

    def _on_disk(self) -> dict[int, tuple[int, list[int]]]:
        try:
            data = read_sealed(self.path)
            if data is None:
                return {}
            return {int(tid): (int(entry["tgid"]), [int(cpu) for cpu in entry["cpus"]])
                    for tid, entry in data.items()}
        except CorruptState as exc:
            damage = str(exc)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            damage = f"{self.path}: not a journal of masks ({type(exc).__name__})"
        # kept aside, not lost, and not read again: the next save writes a good journal
        self.path.replace(self.path.with_name(self.path.name + ".damaged"))
        self.damaged = damage
        return {}

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
            self._write()

    def forget(self, tgids: set[int]) -> None:
        """Drop the originals of these processes (restored, or gone), on disk too."""
        with state_lock(self.path.parent):
            kept = {tid: entry for tid, entry in self._on_disk().items() if entry[0] not in tgids}
            self.masks = {tid: entry for tid, entry in self.masks.items() if entry[0] not in tgids} | kept
            self._write()

    def prune(self) -> set[int]:
        """Forget the originals of processes that have exited (there is nothing to put back, and
        their ids will be given to new processes, whose originals must not be taken for theirs).
        The processes forgotten."""
        gone = {tgid for tgid, _cpus in self.masks.values() if not procfs.alive(tgid)}
        if gone:
            self.forget(gone)
        return gone

    def _write(self) -> None:
        masks = {str(tid): {"tgid": tgid, "cpus": cpus} for tid, (tgid, cpus) in self.masks.items()}
        write_sealed(self.path, masks)

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

    def rollback(self, only: set[int] | None = None, unrecorded: set[int] | None = None) -> int:
        """Put every original mask back (or only those of the processes in `only`); threads born
        under the policy get their process's original (the main thread's, else any thread's).
        `unrecorded`: processes the policy took whose originals are not in the journal (it was
        damaged); they get their cgroup's CPUs. How many threads were restored."""
        by_process: dict[int, list[int]] = {}
        for tgid in unrecorded or set():
            cpus = cgroup_cpus(tgid)
            if cpus and (only is None or tgid in only):
                by_process[tgid] = cpus
        for tid, (tgid, cpus) in self.journal.masks.items():
            if only is not None and tgid not in only:
                continue
            if tid == tgid or tgid not in by_process:
                by_process[tgid] = cpus  # the journal's word over a cgroup's
        restored = 0
        for tgid, process_cpus in by_process.items():
            for tid in procfs.thread_ids(tgid):
                entry = self.journal.masks.get(tid)
                try:
                    os.sched_setaffinity(tid, set(entry[1] if entry else process_cpus))
                    restored += 1
                    failpoint("rollback.restoring")
                except (ProcessLookupError, PermissionError, OSError):
                    continue
        if only is None:
            self.journal.clear()
        else:
            self.journal.forget(set(by_process))
        return restored


def cgroup_cpus(tgid: int, proc: Path = Path("/proc"), cgroupfs: Path = Path("/sys/fs/cgroup")) -> list[int]:
    """The CPUs a process's cgroup allows it (cpuset.cpus.effective, cgroup v2), else every
    online CPU: the mask it would have without llamas. [] when it is gone."""
    try:
        line = next(x for x in (proc / str(tgid) / "cgroup").read_text().splitlines() if x.startswith("0::"))
    except (OSError, StopIteration):
        return []
    group = cgroupfs / line.removeprefix("0::").strip("/")
    for where in (group, *group.parents):
        if not where.is_relative_to(cgroupfs):
            break
        try:
            cpus = cpulist.parse((where / "cpuset.cpus.effective").read_text().strip())
        except (OSError, ValueError):
            continue
        if cpus:
            return cpus
    try:
        return cpulist.parse(Path("/sys/devices/system/cpu/online").read_text().strip())
    except (OSError, ValueError):
        return []
