"""Cold memory: which mappings of a process went unaccessed for a while, for `demote_node`.

How: writing 1 to /proc/PID/clear_refs clears the accessed bit of every page the process maps;
after the rule's `cold_seconds`, /proc/PID/smaps says per mapping how much of what is resident
was referenced since ("Referenced:"). A private writable mapping with resident pages and none
referenced is cold. The granularity is the kernel's mapping (VMA), not the page: the kernel
exposes accessed bits per page only through idle page tracking, which is not built everywhere
(Debian's 6.12 lacks it), and DAMON is a further back end. Clearing accessed bits is the same
thing reclaim's aging does; it does not change what the process sees.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from llamas_ebpf.actuator.pages import REGION

_SKIP = ("[vsyscall]", "[vvar]", "[vdso]", "[stack]")


@dataclass
class ColdTracker:
    proc: Path = Path("/proc")
    marked: dict[int, float] = field(default_factory=dict)  # tgid -> when its bits were cleared

    def mark(self, tgid: int) -> bool:
        try:
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
            text = (self.proc / str(tgid) / "smaps").read_text()
        return cold_in_smaps(text)


def cold_in_smaps(text: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    span: tuple[int, int] | None = None
    rss = referenced = -1

    def close() -> None:
        if span is not None and rss > 0 and referenced == 0:
            start, end = span
            region = start - start % REGION
            while region < end:
                out.append((max(region, start), min(region + REGION, end)))
                region += REGION

    for line in text.splitlines():
        head = line.split(None, 1)[0] if line.strip() else ""
        if "-" in head and not head.endswith(":"):
            close()
            fields = line.split()
            perms, name = fields[1], fields[5] if len(fields) > 5 else ""
            span = None
            if "w" in perms and "p" in perms and name not in _SKIP:
                start, end = (int(x, 16) for x in head.split("-"))
                span = (start, end)
            rss = referenced = -1
        elif head == "Rss:":
            rss = int(line.split()[1])
        elif head == "Referenced:":
            referenced = int(line.split()[1])
    close()
    return out
