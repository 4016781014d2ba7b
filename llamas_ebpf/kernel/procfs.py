"""Per-process facts from /proc: names, thread groups, fault counters, vmstat."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    comm: str
    minflt: int
    majflt: int
    utime_ticks: int
    stime_ticks: int
    num_threads: int
    rss_pages: int
    processor: int  # the CPU it last ran on
    start_ticks: int = 0  # when it started, in clock ticks after boot


TICKS = os.sysconf("SC_CLK_TCK")


def age_s(started: ProcStat, proc: Path = PROC) -> float:
    """Seconds since the process of this stat started: against CLOCK_BOOTTIME, the clock of
    both /proc/uptime and a stat's start time (or, under another proc root, its uptime file)."""
    if proc == PROC:
        uptime = time.clock_gettime(time.CLOCK_BOOTTIME)
    else:
        uptime = float((proc / "uptime").read_text().split()[0])
    return max(uptime - started.start_ticks / TICKS, 0.0)


def stat(pid: int, proc: Path = PROC) -> ProcStat:
    """Fields of /proc/PID/stat; comm may hold spaces and parentheses, so split after the last ')'."""
    text = (proc / str(pid) / "stat").read_text()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); field N is rest[N - 3]
    return ProcStat(
        comm=comm,
        minflt=int(rest[7]),
        majflt=int(rest[9]),
        utime_ticks=int(rest[11]),
        stime_ticks=int(rest[12]),
        num_threads=int(rest[17]),
        rss_pages=int(rest[21]),
        processor=int(rest[36]),
        start_ticks=int(rest[19]),
    )


def comm(pid: int, proc: Path = PROC) -> str | None:
    try:
        return (proc / str(pid) / "comm").read_text().rstrip("\n")
    except OSError:
        return None


def tgid_of(tid: int, proc: Path = PROC) -> int | None:
    """The process a thread belongs to (/proc/TID/status works for threads though not listed)."""
    try:
        with open(proc / str(tid) / "status") as status:
            for line in status:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def thread_ids(pid: int, proc: Path = PROC) -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(proc / str(pid) / "task"))
    except OSError:
        return []


def vmstat(proc: Path = PROC) -> dict[str, int]:
    result = {}
    for line in (proc / "vmstat").read_text().splitlines():
        key, _, value = line.partition(" ")
        result[key] = int(value)
    return result


def cmdline(pid: int, proc: Path = PROC, limit: int = 4096) -> str:
    """The command line, arguments joined by spaces; '' for kernel threads or a process gone."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()[:limit]
    except OSError:
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
