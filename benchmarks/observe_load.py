"""`llamas observe` at a 1 s interval with N live processes: its CPU (% of one core) and memory.

Usage (root): .venv/bin/python benchmarks/observe_load.py [--processes 1000] [--seconds 30]

Starts N small processes that each fault every 200 ms (or only --active of them; the rest fault
once and sleep), runs `llamas observe --json 1`, and
measures the observer's CPU time over the steady state (from its first output to the end, so
the one-off BPF compile at start is left out, and reported apart) and its RSS (VmRSS, VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--probes", default=None, help="observe --probes (default: all)")
    parser.add_argument("--active", type=int, default=None,
                        help="how many of the processes fault (default: all); the rest sleep")
    args = parser.parse_args()
    binary = Path(tempfile.mkdtemp()) / "observe_load"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "observe_load.c")], check=True)
    active = args.processes if args.active is None else args.active
    # an idle process is the same program with a period far beyond the run
    periods = ["200" if i < active else "3600000" for i in range(args.processes)]
    load = [subprocess.Popen([str(binary), period]) for period in periods]
    try:
        llamas = Path(sys.executable).parent / "llamas"
        started = time.monotonic()
        only = ["--probes", args.probes] if args.probes else []
        observer = subprocess.Popen([str(llamas), "observe", "--json", *only, "1"], stdout=subprocess.PIPE,
                                    text=True)
        assert observer.stdout is not None
        observer.stdout.readline()
        ready = time.monotonic()
        startup_cpu = cpu_seconds(observer.pid)
        lines, seen = 0, 0
        end = ready + args.seconds
        while time.monotonic() < end:
            snap = json.loads(observer.stdout.readline())
            lines += 1
            seen = max(seen, len(snap["processes"]))
        steady_cpu = cpu_seconds(observer.pid) - startup_cpu
        wall = time.monotonic() - ready
        rss, hwm = status_kb(observer.pid, "VmRSS"), status_kb(observer.pid, "VmHWM")
        observer.send_signal(signal.SIGTERM)  # SIGINT is ignored where the benchmark runs in the background
        observer.wait(timeout=30)
    finally:
        for child in load:
            child.kill()
        for child in load:
            child.wait()
    print(json.dumps({
        "live_processes": args.processes,
        "faulting_processes": active,
        "max_processes_in_a_snapshot": seen,
        "snapshots": lines,
        "startup_s": round(ready - started, 2),
        "startup_cpu_s": round(startup_cpu, 2),
        "steady_cpu_pct_of_one_core": round(100 * steady_cpu / wall, 2),
        "rss_mb": round(rss / 1024, 1),
        "peak_rss_mb": round(hwm / 1024, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
