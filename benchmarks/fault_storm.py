"""Overhead of the probes on a page-fault storm, bare and probed runs alternating in one process.

Usage (root): .venv/bin/python benchmarks/fault_storm.py [--rounds 15] [--threads 4] [--mib 256] [--passes 4]
                                                     [--floor]

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


def build(source: str = "fault_storm.c") -> Path:
    binary = Path(tempfile.mkdtemp()) / Path(source).stem
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(binary), str(HERE / source)], check=True)
    return binary


def storm(binary: Path, threads: int, mib: int, passes: int = 1) -> float:
    """Seconds for `passes` timed passes over `mib` MiB a thread (fault_storm.c says why it makes
    one more, untimed, first)."""
    command = [str(binary), str(threads), str(mib), str(passes)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(out.stdout)


# the two tracepoints the probes use per page, each with a program that does nothing
_FLOOR = """
RAW_TRACEPOINT_PROBE(page_fault_user) { return 0; }
RAW_TRACEPOINT_PROBE(mm_page_alloc) { return 0; }
"""


def floor_slowdown(binary: Path, args: argparse.Namespace) -> float:
    """What the storm pays for the dispatch alone: bare against two empty raw-tracepoint programs
    (the hooks faults.c and numa_alloc.c sit on), alternating, medians."""
    from bcc import BPF

    bare, empty = [], []
    for _ in range(args.rounds):
        bare.append(storm(binary, args.threads, args.mib, args.passes))
        programs = BPF(text=_FLOOR)
        empty.append(storm(binary, args.threads, args.mib, args.passes))
        programs.cleanup()
    return round(100 * (statistics.median(empty) / statistics.median(bare) - 1), 2)


def migrate_ns_per_event(count: int) -> float | None:
    """cpu_migrate's run time per event in a storm of its own event (migrate_storm.c): in the
    fault storm it fires a few hundred times a run, each with cold caches."""
    binary = build("migrate_storm.c")
    with Sensor(bpf_stats=True, only={"cpu_migrate"}) as sensor:
        sensor.collect()
        subprocess.run([str(binary), str(count)], check=True)
        health = sensor.collect().probes["cpu_migrate"]
    if not health.events or health.run_time_ns is None:
        return None
    return round(health.run_time_ns / health.events, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--floor", action="store_true",
                        help="also measure two empty programs on the same hooks (the dispatch alone)")
    args = parser.parse_args()
    binary = build()
    storm(binary, args.threads, 64)  # warm up the binary and the page allocator
    bare, probed, with_stats = [], [], []
    events = run_ns = lost = 0
    for _ in range(args.rounds):
        bare.append(storm(binary, args.threads, args.mib, args.passes))
        with Sensor(bpf_stats=False) as sensor:
            sensor.collect()
            probed.append(storm(binary, args.threads, args.mib, args.passes))
            snap = sensor.collect()
            lost += sum(p.map_full + p.drops for p in snap.probes.values())
        with Sensor(bpf_stats=True) as sensor:
            sensor.collect()
            elapsed = storm(binary, args.threads, args.mib, args.passes)
            with_stats.append(elapsed)
            snap = sensor.collect()
            events += sum(p.events or 0 for p in snap.probes.values())
            run_ns += sum(p.run_time_ns or 0 for p in snap.probes.values())
            lost += sum(p.map_full + p.drops for p in snap.probes.values())
            per_probe = {
                n: round((p.run_time_ns or 0) / p.events, 1) for n, p in snap.probes.items() if p.events
            }
    faults = args.threads * args.mib * 256 * args.passes
    multi_cpu = len(os.sched_getaffinity(0)) > 1

    def slowdown(runs: list[float]) -> float:
        return round(100 * (statistics.median(runs) / statistics.median(bare) - 1), 2)

    # the programs also ran in the untimed first pass: the timed passes' share of the events
    per_run = events / args.rounds * args.passes / (args.passes + 1) if args.rounds else 0
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
        "cpu_migrate_ns_per_event_in_a_migration_storm": migrate_ns_per_event(200_000) if multi_cpu else None,
        "slowdown_two_empty_programs_pct": floor_slowdown(binary, args) if args.floor else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
