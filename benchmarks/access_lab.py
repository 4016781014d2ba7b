"""What access sensing costs, in the lab (DAMON vaddr and soft-dirty exist only there). Inside the
`tiered` guest, as root:

    scripts/lab --timeout 900 -- python benchmarks/access_lab.py [--rounds 6] [--seconds 10]

The workload (benchmarks/sweep.c) sweeps 128 MiB on node0's CPU, reading every cache line and
writing one in eight. Rounds alternate, in one run: `off` (no sensor) and `on` (a Sensor with the
access probe watching the workload: DAMON vaddr through llamas's kdamond, pagemap placement and
soft-dirty clearing, a snapshot a second). Reported: the workload's passes per second in each
arm and the median of on/off ratios of neighbouring rounds (the slowdown), kdamond's CPU and
llamas' own as % of one core during the `on` rounds. TCG emulates every instruction, so the
absolute figures are the emulator's; the ratios are what the arms differ by.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def one_round(binary: Path, mib: int, seconds: float, sensor=None) -> dict:
    command = ["numactl", "--cpunodebind=0", "--membind=0", str(binary), str(mib), str(seconds)]
    work = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert work.stdin is not None and work.stdout is not None
    assert work.stdout.readline().strip() == "ready"
    stop = threading.Event()
    kdamond_cpu = llamas_cpu = 0.0
    if sensor is not None:
        sensor.detail_pids = {work.pid}
        sensor.collect()
        time.sleep(1.5)  # DAMON has its target and its first regions before the clock starts
        sensor.collect()
        kdamond = next(p for p in sensor.probes if p.name == "access").thread
        k0, l0 = cpu_seconds(kdamond) if kdamond else 0.0, own_cpu()

        def sample() -> None:
            while not stop.wait(1.0):
                sensor.collect()

        thread = threading.Thread(target=sample)
        thread.start()
    started = time.monotonic()
    work.stdin.write("go\n")
    work.stdin.flush()
    passes = int(work.stdout.readline().split()[1])
    wall = time.monotonic() - started
    work.wait()
    if sensor is not None:
        stop.set()
        thread.join()
        kdamond_cpu = (cpu_seconds(kdamond) - k0) if kdamond else 0.0
        llamas_cpu = own_cpu() - l0
    return {"passes_per_s": passes / seconds, "wall_s": wall,
            "kdamond_pct": 100 * kdamond_cpu / wall, "llamas_pct": 100 * llamas_cpu / wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6, help="rounds per arm")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mib", type=int, default=128)
    args = parser.parse_args()
    from llamas_ebpf.sense import Sensor

    Path("/proc/sys/kernel/numa_balancing").write_text("0")
    binary = Path(tempfile.mkdtemp()) / "sweep"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "sweep.c")], check=True)
    off, on = [], []
    with Sensor(only={"access"}, access_targets=4) as sensor:
        method = sensor.health["access"].method
        for _ in range(args.rounds):
            off.append(one_round(binary, args.mib, args.seconds))
            on.append(one_round(binary, args.mib, args.seconds, sensor))
    ratios = [b["passes_per_s"] / a["passes_per_s"] for a, b in zip(off, on, strict=True)]
    print(json.dumps({
        "method": method,
        "rounds": args.rounds, "seconds": args.seconds, "mib": args.mib,
        "off_passes_per_s": [round(r["passes_per_s"], 2) for r in off],
        "on_passes_per_s": [round(r["passes_per_s"], 2) for r in on],
        "median_on_off_ratio": round(statistics.median(ratios), 4),
        "slowdown_pct": round(100 * (1 - statistics.median(ratios)), 2),
        "kdamond_pct_of_a_core": round(statistics.median(r["kdamond_pct"] for r in on), 2),
        "llamas_pct_of_a_core": round(statistics.median(r["llamas_pct"] for r in on), 2),
    }, indent=2))


if __name__ == "__main__":
    main()
