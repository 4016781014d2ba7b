"""What access sensing costs, in the lab (DAMON vaddr and soft-dirty exist only there). Inside the
`tiered` guest, as root:

    scripts/lab --timeout 900 -- python benchmarks/access_lab.py [--rounds 6] [--seconds 10]

The workload (benchmarks/sweep.c) sweeps 128 MiB on node0's CPU, reading every cache line and
writing one in eight. Each round runs three arms back to back, in one run: `off` (no sensor),
`on` (a Sensor with the access probe watching the workload: DAMON vaddr through llamas's
kdamond and pagemap placement, a snapshot a second) and `on+soft-dirty` (the same, with the
workload's soft-dirty bits cleared every 10 s, as `[access] soft_dirty = true`, the default,
does). Reported: passes per second per arm, the median of each arm's ratio to the `off` run of
its round (the slowdown), kdamond's CPU and llamas' own as % of one core. TCG emulates every
instruction, so the absolute figures are the emulator's; the ratios are what the arms differ by.
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


def python_speed() -> float:
    """CPU seconds of a fixed pure-Python loop: run here and in the guest, their ratio is how much
    slower the emulator runs llamas's Python (what turns the guest's CPU figures into estimates)."""
    started = time.process_time()
    table: dict[int, int] = {}
    for i in range(3_000_000):
        table[i & 1023] = table.get(i & 1023, 0) + i
    return round(time.process_time() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python-speed", action="store_true", help="only time the Python loop, and end")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per arm")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mib", type=int, default=128)
    args = parser.parse_args()
    if args.python_speed:
        print(json.dumps({"python_loop_cpu_s": python_speed()}))
        return
    from llamas_ebpf.sense import Sensor

    Path("/proc/sys/kernel/numa_balancing").write_text("0")
    binary = Path(tempfile.mkdtemp()) / "sweep"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "sweep.c")], check=True)
    arms: dict[str, list[dict]] = {"off": [], "on": [], "on+soft-dirty": []}
    with Sensor(only={"access"}, access_targets=4, soft_dirty=False) as sensor:
        method = sensor.health["access"].method
        probe = next(p for p in sensor.probes if p.name == "access")
        for _ in range(args.rounds):
            arms["off"].append(one_round(binary, args.mib, args.seconds))
            probe.soft_dirty = False  # the probe's switch, as [access] soft_dirty sets it at start
            arms["on"].append(one_round(binary, args.mib, args.seconds, sensor))
            probe.soft_dirty = True
            arms["on+soft-dirty"].append(one_round(binary, args.mib, args.seconds, sensor))
    result: dict = {"method": method, "rounds": args.rounds, "seconds": args.seconds, "mib": args.mib,
                    "python_loop_cpu_s": python_speed()}
    for name, runs in arms.items():
        result[f"{name}_passes_per_s"] = [round(r["passes_per_s"], 2) for r in runs]
    for name in ("on", "on+soft-dirty"):
        ratios = [b["passes_per_s"] / a["passes_per_s"] for a, b in zip(arms["off"], arms[name], strict=True)]
        result[f"{name}_slowdown_pct"] = round(100 * (1 - statistics.median(ratios)), 2)
        for cost in ("kdamond", "llamas"):
            share = statistics.median(r[f"{cost}_pct"] for r in arms[name])
            result[f"{name}_{cost}_pct_of_a_core"] = round(share, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
