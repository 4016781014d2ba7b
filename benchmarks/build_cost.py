"""What the probes cost a realistic workload: a C build, bare and probed rounds alternating.

Usage (root): .venv/bin/python benchmarks/build_cost.py [--rounds 8] [--repeat 4]

A round compiles every C file of tests/helpers/ and benchmarks/ with `gcc -O2`, `--repeat` times,
one after another: a build's fault rate (each compiler process faults its way through start-up,
parsing and code generation, then exits), not a storm's. Bare rounds alternate with rounds where
every probe is attached with BPF statistics off (`llamas observe`'s default), so drift on this
noisy machine falls on both arms alike. Reports the median wall time of each arm, the slowdown,
and the page faults of a round (from the probes, in the last probed round).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = sorted([*(HERE.parent / "tests/helpers").glob("*.c"), *HERE.glob("*.c")])


def build(out: Path, repeat: int) -> float:
    started = time.monotonic()
    for _ in range(repeat):
        for source in SOURCES:
            target = out / (source.stem + ".o")
            subprocess.run(["gcc", "-O2", "-pthread", "-c", "-o", str(target), str(source)], check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    from llamas_ebpf.sense import Sensor

    out = Path(tempfile.mkdtemp())
    build(out, 1)  # warm the page cache and the compiler
    bare, probed = [], []
    faults = 0
    for _ in range(args.rounds):
        bare.append(build(out, args.repeat))
        with Sensor(bpf_stats=False) as sensor:
            sensor.collect()
            probed.append(build(out, args.repeat))
            snap = sensor.collect()
            faults = sum(p.total_faults for p in snap.counted)
    wall = statistics.median(bare)
    print(json.dumps({
        "compiles_per_round": len(SOURCES) * args.repeat,
        "bare_s_median": round(wall, 3),
        "probed_s_median": round(statistics.median(probed), 3),
        "slowdown_pct": round(100 * (statistics.median(probed) / wall - 1), 2),
        "faults_per_round": faults,
        "faults_per_s": round(faults / wall),
        "bare_s_all": [round(b, 3) for b in bare],
        "probed_s_all": [round(p, 3) for p in probed],
        "rounds": args.rounds,
    }, indent=2))


if __name__ == "__main__":
    main()
