"""Overhead of the probes on a page-fault storm, bare and probed runs alternating in one process.

Usage (root): .venv/bin/python benchmarks/fault_storm.py [--rounds 15] [--threads 4] [--mib 256] [--passes 4]
                                                     [--floor]

The probes are compiled and loaded once. Each round runs the storm with their tracepoint programs
detached (bare) and attached (probed), in turn, in ABBA order so that a drift of the machine falls
on both arms alike; the slowdown is the median of the rounds' probed/bare ratios. Building the
probes anew for each arm, as this benchmark first did, left seconds of compile between arms, in
which this guest hands freed memory back to its host (fault_storm.c says why that matters).

A second sensor with BPF run-time statistics on (BPF_ENABLE_STATS, as bpftop reads them) gives
the ns per event of each program. Those include the statistics' own two clock reads per run,
slow in a VM: `--floor` measures them on empty programs, and the dispatch alone (the two hooks
with programs that do nothing), the same way, attached and detached in turn.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamas_ebpf.kernel import bpfsys
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


class Hooks:
    """The raw tracepoint programs of loaded BCC objects, detached and attached again without a
    rebuild. Programs on other hooks stay attached: those of the probes (sched, damon, dma_fence
    tracepoints; numa_hint's kfunc) do not run in a storm of faults with NUMA balancing off."""

    def __init__(self, objects: list[Any]):
        self.attached = [(bpf, tp) for bpf in objects for tp in bpf.raw_tracepoint_fds]
        self.names = {tp for _, tp in self.attached}

    def detach(self) -> None:
        for bpf, tp in self.attached:
            bpf.detach_raw_tracepoint(tp=tp)

    def attach(self) -> None:
        for bpf, tp in self.attached:
            bpf.attach_raw_tracepoint(tp=tp, fn_name=b"raw_tracepoint__" + tp)


def paired(hooks: Hooks, run: Callable[[], float], rounds: int) -> tuple[list[float], list[float]]:
    """(bare, attached) seconds, ABBA: bare first in even rounds, attached first in odd ones."""
    bare, attached = [], []
    for index in range(rounds):
        order = ("bare", "on") if index % 2 == 0 else ("on", "bare")
        for arm in order:
            if arm == "bare":
                hooks.detach()
                bare.append(run())
                hooks.attach()
            else:
                attached.append(run())
    return bare, attached


def ratio_pct(bare: list[float], attached: list[float]) -> float:
    """The median of the rounds' attached/bare ratios, as a slowdown in percent."""
    return round(100 * (statistics.median(a / b for a, b in zip(attached, bare, strict=True)) - 1), 2)


def floor(binary: Path, args: argparse.Namespace) -> dict[str, float]:
    """The dispatch alone (two empty raw-tracepoint programs on the hooks faults.c and numa_alloc.c
    use), and the run time BPF statistics give those empty programs: their own clock reads."""
    from bcc import BPF

    programs = BPF(text=_FLOOR)
    hooks = Hooks([programs])
    bare, empty = paired(hooks, lambda: storm(binary, args.threads, args.mib, args.passes), args.rounds)
    stats_fd = bpfsys.enable_stats()
    try:
        before = [bpfsys.prog_stats(fn.fd) for fn in programs.funcs.values()]
        storm(binary, args.threads, args.mib, args.passes)
        after = [bpfsys.prog_stats(fn.fd) for fn in programs.funcs.values()]
    finally:
        os.close(stats_fd)
        programs.cleanup()
    runs = sum(a.run_cnt - b.run_cnt for a, b in zip(after, before, strict=True))
    run_ns = sum(a.run_time_ns - b.run_time_ns for a, b in zip(after, before, strict=True))
    return {"slowdown_two_empty_programs_pct": ratio_pct(bare, empty),
            "bpf_stats_ns_per_event_of_an_empty_program": round(run_ns / runs, 1) if runs else 0.0}


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

    def run() -> float:
        return storm(binary, args.threads, args.mib, args.passes)

    lost = estimated = 0
    with Sensor(bpf_stats=False) as sensor:
        sensor.collect()
        hooks = Hooks(list({id(p.bpf): p.bpf for p in sensor.probes if p.bpf is not None}.values()))
        if not {b"page_fault_user", b"mm_page_alloc"} <= hooks.names:
            raise SystemExit(f"the storm's hooks are not raw tracepoints here: {sorted(hooks.names)}")
        bare, probed = paired(hooks, run, args.rounds)
        snap = sensor.collect()
        lost += sum(p.map_full + p.drops for p in snap.probes.values())
        estimated = sum(getattr(p, "estimated", 0) for p in snap.probes.values())  # 0 before sampling
        sampled = {n: p.sample_every for n, p in snap.probes.items() if getattr(p, "sample_every", None)}
    stats_rounds = max(3, args.rounds // 3)
    events = run_ns = 0
    with_stats = []
    per_probe: dict[str, list[float]] = {}
    with Sensor(bpf_stats=True) as sensor:
        sensor.collect()
        for _ in range(stats_rounds):
            with_stats.append(run())
            snap = sensor.collect()
            events += sum(p.events or 0 for p in snap.probes.values())
            run_ns += sum(p.run_time_ns or 0 for p in snap.probes.values())
            lost += sum(p.map_full + p.drops for p in snap.probes.values())
            for n, p in snap.probes.items():
                if p.events and p.run_time_ns is not None:
                    per_probe.setdefault(n, []).append(p.run_time_ns / p.events)
    faults = args.threads * args.mib * 256 * args.passes
    multi_cpu = len(os.sched_getaffinity(0)) > 1

    # the programs also ran in the untimed first pass: the timed passes' share of the events
    per_run = events / stats_rounds * args.passes / (args.passes + 1) if stats_rounds else 0
    extra_s = statistics.median(p - b for p, b in zip(probed, bare, strict=True))
    parallel = min(args.threads, os.cpu_count() or 1)
    result: dict[str, object] = {
        "faults_per_run": faults,
        "bare_s_median": round(statistics.median(bare), 4),
        "probed_s_median": round(statistics.median(probed), 4),
        "slowdown_pct": ratio_pct(bare, probed),
        "slowdown_pct_of_medians": round(100 * (statistics.median(probed) / statistics.median(bare) - 1), 2),
        "probed_with_stats_s_median": round(statistics.median(with_stats), 4),
        "bpf_ns_per_event": round(run_ns / events, 1) if events else None,
        "bpf_ns_per_event_by_probe_median": {n: round(statistics.median(v), 1) for n, v in per_probe.items()},
        "bpf_events_per_run": round(per_run),
        # wall time is shared by the threads faulting at once: CPU time per event is that many times more
        "storm_ns_per_event_from_slowdown": round(extra_s * 1e9 * parallel / per_run, 1) if per_run else None,
        "events_estimated_by_sample": estimated,
        "sample_every": sampled,
        "bare_s_all": [round(b, 4) for b in bare],
        "probed_s_all": [round(p, 4) for p in probed],
        "lost_events": lost,
        "rounds": args.rounds,
        "cpu_migrate_ns_per_event_in_a_migration_storm": migrate_ns_per_event(200_000) if multi_cpu else None,
    }
    if args.floor:
        result.update(floor(binary, args))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
