"""One decision cycle of `llamas run` (fold the window's snapshots, heuristic advice, validation)
for 1,000 and 10,000 processes, and the claude advisor's prompt size against the process count.

    .venv/bin/python benchmarks/decide.py [--rounds 7]

The window is 10 one-second snapshots of N processes, every tenth of them remote-heavy, on the
lab's `tiered` host (captured sysfs). /proc is not read (the processes are synthetic), so the
figure is the advisor's own cost; live, the 32 busiest processes add a /proc read each.
Targets: 50 ms at 1,000 processes, 500 ms at 10,000; prompt tokens flat beyond K.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llamas_ebpf.advise.base import AdvisorInput  # noqa: E402
from llamas_ebpf.advise.claude import build_prompt  # noqa: E402
from llamas_ebpf.advise.heuristic import HeuristicAdvisor  # noqa: E402
from llamas_ebpf.advise.summary import summarize  # noqa: E402
from llamas_ebpf.config import Guardrails  # noqa: E402
from llamas_ebpf.devices.inventory import discover  # noqa: E402
from llamas_ebpf.policy.validate import HostFacts, validate  # noqa: E402
from llamas_ebpf.snapshot import FaultCounts, NodeSample, NumaCounts, ProcessSample, Snapshot  # noqa: E402

HOST = HostFacts(node_cpus={0: [0], 1: [1], 2: []}, node_memory_mb={0: 1024, 1: 1024, 2: 1024}, gpu_nodes=[],
                 proc=Path("/nonexistent"))


def window(n: int, snapshots: int = 10) -> list[Snapshot]:
    out = []
    for t in range(snapshots):
        procs = []
        for i in range(n):
            remote = 400 if i % 10 == 0 else 5
            procs.append(ProcessSample(
                pid=10_000 + i, comm=f"worker-{i % 50}",
                faults=FaultCounts(user=600 - i % 500, read=300, write=300 - i % 300),
                numa=NumaCounts(alloc_local=200, alloc_remote=remote,
                                alloc_pages_by_node={0: 200, 1: remote}),
                cpu_node=0 if i < 16 else None, resident_by_node={0: 5000, 1: 20000} if i < 16 else None))
        out.append(Snapshot(host="bench", kernel="6.12", time=float(t), interval_s=1.0, processes=procs,
                            nodes=[NodeSample(id=k, faults=1000) for k in range(3)]))
    return out


def cycle(snaps: list[Snapshot], inventory, advisor: HeuristicAdvisor) -> tuple[float, int]:
    started = time.perf_counter()
    summary = summarize(snaps)
    advice = advisor.advise(AdvisorInput(inventory, summary, None, [], Guardrails(), HOST))
    checked = validate(advice.raw or b"", HOST, Guardrails())  # pids are synthetic: host checks refuse them
    elapsed = time.perf_counter() - started
    return elapsed, len(json.loads(advice.raw or b'{"rules": []}')["rules"]) + 0 * len(checked.errors)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    inventory = discover(ROOT / "tests/fixtures/sysfs/lab-tiered", ROOT / "devices")
    advisor = HeuristicAdvisor(touchable=lambda pid: True, alive=lambda pid: True)
    print("decision cycle (summarize + heuristic + validate), median of", args.rounds, "rounds")
    for n, target in ((1_000, 0.050), (10_000, 0.500)):
        snaps = window(n)
        times, rules = [], 0
        for _ in range(args.rounds):
            elapsed, rules = cycle(snaps, inventory, advisor)
            times.append(elapsed)
        median = statistics.median(times)
        print(f"  {n:>6} processes: {1000 * median:7.1f} ms (target {1000 * target:.0f} ms, "
              f"{median / target:.2f}x of it), {rules} rules")
    print("claude prompt, estimated input tokens (budget 6000)")
    texts = {p.name: p.read_text() for p in sorted((ROOT / "devices").glob("*.toml"))}
    for n in (10, 100, 1_000, 5_000, 10_000):
        summary = summarize(window(n, 1))
        prompt = build_prompt(AdvisorInput(inventory, summary, None, [], Guardrails(), HOST, texts), 6000)
        print(f"  {n:>6} processes: {prompt.estimated_tokens:5d} tokens, {prompt.top_k} processes shown")


if __name__ == "__main__":
    main()
