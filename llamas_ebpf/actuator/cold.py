"""Cold memory: which mappings of a process went unaccessed for a while, for `demote_node`.

How: the mark is process_madvise(MADV_COLD) on the process's private writable mappings, which
clears the accessed bit of each page that has it *and flushes its TLB entry*; after the rule's
`cold_seconds`, /proc/PID/smaps says per mapping how much of what is resident was referenced
since ("Referenced:"). A private writable mapping with resident pages and none referenced is
cold.

Why not /proc/PID/clear_refs: it clears the accessed bits without flushing the TLB, so a page the
process keeps using stays cached in the TLB with the bit clear, the CPU never sets it again, and
a busy mapping reads as idle. The lab shows it (a mapping read in a loop read 12000, 7668, 112
and 0 KiB referenced over successive 3 s windows). Reclaim accepts that inaccuracy for aging;
demoting a hot mapping to slow memory is too costly to accept it. clear_refs stays the fallback
where process_madvise is missing (before Linux 5.10) or refused.

Side effect, said plainly: MADV_COLD also moves those pages to the inactive LRU list. Without
memory pressure nothing follows from it; under pressure a page the process touched again since
is kept by reclaim's own accessed-bit check, so what goes first is what the window found cold.
Shared pages (mapped by more than one process) are left alone by MADV_COLD and so read as
referenced: never cold, which matches move_pages(2), which does not move them either.

The granularity is the kernel's mapping (VMA), not the page: per-page accessed bits need idle
page tracking, which is not built everywhere (Debian's 6.12 lacks it), and DAMON is a further
back end.
"""

from __future__ import annotations

import contextlib
import errno
import time
from dataclasses import dataclass, field
from pathlib import Path

from llamas_ebpf.actuator.pages import REGION
from llamas_ebpf.kernel import mempolicy

_SKIP = ("[vsyscall]", "[vvar]", "[vdso]", "[stack]")
_REFUSED = {"lo", "pf", "ht", "io"}  # VmFlags: locked, PFN map, hugetlb, I/O


@dataclass
class ColdTracker:
    proc: Path = Path("/proc")
    marked: dict[int, float] = field(default_factory=dict)  # tgid -> when its bits were cleared
    use_madvise: bool = True  # cleared once process_madvise turns out to be missing or refused

    def mark(self, tgid: int) -> bool:
        """Start a measurement: clear the accessed bits of the process's candidate mappings."""
        try:
            mappings = [(start, end) for start, end, rss, _ in candidates(self._smaps(tgid)) if rss > 0]
            if self.use_madvise:
                try:
                    mempolicy.madvise_cold(tgid, mappings)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EACCES):
                        raise  # gone (ESRCH), or something else about this process only
                    self.use_madvise = False  # this kernel or this caller: the fallback from now on
            if not self.use_madvise:
                (self.proc / str(tgid) / "clear_refs").write_text("1")
        except OSError:
            self.marked.pop(tgid, None)
            return False
        self.marked[tgid] = time.monotonic()
        return True

    def due(self, tgid: int, seconds: float) -> bool:
        since = self.marked.get(tgid)
        return since is not None and time.monotonic() - since >= seconds

    def forget(self, tgid: int) -> None:
        self.marked.pop(tgid, None)

    def cold_ranges(self, tgid: int) -> list[tuple[int, int]]:
        """Mappings unreferenced since the last mark, as 2 MiB-aligned [start, end) pieces."""
        text = ""
        with contextlib.suppress(OSError):
            text = self._smaps(tgid)
        return cold_in_smaps(text)

    def _smaps(self, tgid: int) -> str:
        return (self.proc / str(tgid) / "smaps").read_text()


def candidates(text: str) -> list[tuple[int, int, int, int]]:
    """Private writable mappings of an smaps text: (start, end, Rss kB, Referenced kB). Mappings
    madvise refuses (locked, PFN, hugetlb) and the kernel's special ones are left out."""
    out: list[tuple[int, int, int, int]] = []
    span: tuple[int, int] | None = None
    rss = referenced = 0

    for line in text.splitlines():
        head = line.split(None, 1)[0] if line.strip() else ""
        if "-" in head and not head.endswith(":"):
            fields = line.split()
            perms, name = fields[1], fields[5] if len(fields) > 5 else ""
            span = None
            if "w" in perms and "p" in perms and name not in _SKIP:
                start, end = (int(x, 16) for x in head.split("-"))
                span = (start, end)
            rss = referenced = 0
        elif head == "Rss:":
            rss = int(line.split()[1])
        elif head == "Referenced:":
            referenced = int(line.split()[1])
        elif head == "VmFlags:" and span is not None:
            if not _REFUSED & set(line.split()[1:]):
                out.append((*span, rss, referenced))
            span = None
    return out


def cold_in_smaps(text: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end, rss, referenced in candidates(text):
        if rss > 0 and referenced == 0:
            region = start - start % REGION
            while region < end:
                out.append((max(region, start), min(region + REGION, end)))
                region += REGION
    return out
