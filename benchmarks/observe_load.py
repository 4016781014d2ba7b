"""`llamas observe` at a 1 s interval with N live processes: its CPU (% of one core) and memory.

Usage (root): .venv/bin/python benchmarks/observe_load.py [--processes 1000] [--seconds 30]

Starts N small processes that each fault every 200 ms (or only --active of them; the rest fault
once and sleep), runs `llamas observe --json 1`, and
measures the observer's CPU time over the steady state (from its first output to the end, so
the one-off BPF compile at start is left out, and reported apart) and its RSS (VmRSS, VmHWM).

--parts: instead of the command, a Sensor in this process, collecting once a second; prints the
CPU (thread time) of an interval by part: each probe's collect, the /proc facts of the busiest
(enrich), the rest of the collect, and the JSON line.
"""

from __future__ import annotations

import argparse
import collections
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
    parser.add_argument("--parts", action="store_true",
                        help="time each part of a collect in this process instead (module docstring)")
    args = parser.parse_args()
    if args.seconds < 1 or args.processes < 0:
        parser.error("--seconds must be at least 1 and --processes at least 0")
    binary = Path(tempfile.mkdtemp()) / "observe_load"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "observe_load.c")], check=True)
    active = args.processes if args.active is None else args.active
    # an idle process is the same program with a period far beyond the run
    periods = ["200" if i < active else "3600000" for i in range(args.processes)]
    load = [subprocess.Popen([str(binary), period]) for period in periods]
    try:
        if args.parts:
            print(json.dumps(parts(args.seconds), indent=2))
            return
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


def parts(seconds: int) -> dict[str, float]:
    """ms of CPU per interval, by part, over `seconds` collects a second apart."""
    from llamas_ebpf.sense import Sensor

    spent: collections.Counter[str] = collections.Counter()

    def timed(name: str, call):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.thread_time()
            try:
                return call(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - started
        return wrapper

    with Sensor() as sensor:
        for probe in sensor.probes:
            probe.collect_with_health = timed(probe.name, probe.collect_with_health)  # type: ignore[method-assign]
        sensor._enrich = timed("enrich", sensor._enrich)  # type: ignore[method-assign]
        sensor.collect()
        time.sleep(1)
        sensor.collect()
        spent.clear()
        processes = 0
        for _ in range(seconds):
            time.sleep(1)
            snap = timed("collect", sensor.collect)()
            timed("json", snap.to_json)()
            processes = max(processes, len(snap.processes))
    ms = {name: round(1000 * total / seconds, 2) for name, total in spent.most_common()}
    inner = sum(v for name, v in ms.items() if name not in ("collect", "json"))
    ms["rest of the collect"] = round(ms.pop("collect") - inner, 2)
    return {"processes_in_a_snapshot": processes, "interval_ms": round(sum(ms.values()), 2), **ms}


if __name__ == "__main__":
    main()
