"""Overhead of the probes on a page-fault storm, bare and probed runs alternating in one process.

Usage (root): .venv/bin/python benchmarks/fault_storm.py [--rounds 15] [--threads 4] [--mib 1024]

Each round runs the storm three ways, back to back: bare; with every probe attached and BPF
run-time statistics off (what `llamas observe --no-bpf-stats` costs); and with statistics on
(BPF_ENABLE_STATS, as bpftop reads them), which gives the ns per event. Reports medians.

The run time BPF statistics report includes their own two clock reads per run, which are slow
in a VM, so the cost the storm really pays per event is given as well: the median extra wall time
with the probes attached (statistics off) over the events the programs ran (counted in the
statistics arm, which does the same work), times the threads that fault at once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from llamas_ebpf.sense import Sensor

HERE = Path(__file__).resolve().parent


def build() -> Path:
    binary = Path(tempfile.mkdtemp()) / "fault_storm"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(binary), str(HERE / "fault_storm.c")], check=True)
    return binary


def storm(binary: Path, threads: int, mib: int) -> float:
    out = subprocess.run([str(binary), str(threads), str(mib)], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    binary = build()
    storm(binary, args.threads, 64)  # warm up the binary and the page allocator
    bare, probed, with_stats = [], [], []
    events = run_ns = lost = 0
    for _ in range(args.rounds):
        bare.append(storm(binary, args.threads, args.mib))
        with Sensor(bpf_stats=False) as sensor:
            sensor.collect()
            probed.append(storm(binary, args.threads, args.mib))
            snap = sensor.collect()
            lost += sum(p.map_full + p.drops for p in snap.probes.values())
        with Sensor(bpf_stats=True) as sensor:
            sensor.collect()
            elapsed = storm(binary, args.threads, args.mib)
            with_stats.append(elapsed)
            snap = sensor.collect()
            events += sum(p.events or 0 for p in snap.probes.values())
            run_ns += sum(p.run_time_ns or 0 for p in snap.probes.values())
            lost += sum(p.map_full + p.drops for p in snap.probes.values())
            per_probe = {
                n: round((p.run_time_ns or 0) / p.events, 1) for n, p in snap.probes.items() if p.events
            }
    faults = args.threads * args.mib * 256

    def slowdown(runs: list[float]) -> float:
        return round(100 * (statistics.median(runs) / statistics.median(bare) - 1), 2)

    per_run = events / args.rounds if args.rounds else 0
    extra_s = statistics.median(probed) - statistics.median(bare)
    parallel = min(args.threads, os.cpu_count() or 1)
    result = {
        "faults_per_run": faults,
        "bare_s_median": round(statistics.median(bare), 4),
        "probed_s_median": round(statistics.median(probed), 4),
        "probed_with_stats_s_median": round(statistics.median(with_stats), 4),
        "slowdown_pct": slowdown(probed),
        "slowdown_with_stats_pct": slowdown(with_stats),
        "bpf_ns_per_event": round(run_ns / events, 1) if events else None,
        "bpf_ns_per_event_by_probe_last_round": per_probe,
        "bpf_events_per_s": round(events / sum(with_stats)),
        "events_per_run": round(per_run),
        # wall time is shared by the threads faulting at once: CPU time per event is that many times more
        "storm_ns_per_event_from_slowdown": round(extra_s * 1e9 * parallel / per_run, 1) if per_run else None,
        "bare_s_all": [round(b, 4) for b in bare],
        "probed_s_all": [round(p, 4) for p in probed],
        "lost_events": lost,
        "rounds": args.rounds,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
