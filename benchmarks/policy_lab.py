"""Policy enforcement in the lab: run inside the `tiered` guest, as root.

    scripts/lab -- python benchmarks/policy_lab.py [--pages 20000] [--rounds 6]

In one run, alternating (each arm going first in turn, since the guest's speed drifts):
  - migration throughput: llamas' actuator (PageMover, unlimited budget) in budgeted move_pages
    batches, and its whole-process back end (one migrate_pages call), against numactl's
    `migratepages` moving the same process's pages between node1 and node0, as pages/s and ratio;
  - apply -> enforced latency for affinity: `Enforcer.apply` until every thread's mask is the
    rule's (one-shot apply), and exec -> pinned through bpf/enforce.c and the controller;
  - cost per request: the controller's handling time per request, and BPF ns per event of the
    enforcement programs (BPF_ENABLE_STATS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from llamas_ebpf.actuator.pages import PageJournal, PageMover, TokenBucket, pages_of, resident_regions
from llamas_ebpf.config import Guardrails
from llamas_ebpf.enforce import Enforcer, RequestServer
from llamas_ebpf.kernel import bpfsys, mempolicy
from llamas_ebpf.paths import Paths
from llamas_ebpf.policy.validate import HostFacts, validate
from llamas_ebpf.probes.base import prog_stats

ROOT = Path(__file__).resolve().parent.parent


def toucher(binary: Path, pages: int, *numactl: str) -> subprocess.Popen:
    child = subprocess.Popen(["numactl", *numactl, str(binary)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    child.stdin.write(f"write {pages}\n")
    child.stdin.flush()
    child.stdout.readline()
    return child


def on_node(pid: int, node: int) -> int:
    return mempolicy.pages_per_node(pid).get(node, 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    binary = work / "lt-bench"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(ROOT / "tests/helpers/toucher.c")], check=True)
    Path("/proc/sys/kernel/numa_balancing").write_text("0")

    # -- throughput, alternating
    child = toucher(binary, args.pages, "--cpunodebind=0", "--preferred=1")
    ours, whole, theirs = [], [], []
    call_share: list[float] = []  # of a whole-process move's time, the migrate_pages call's
    mover = PageMover(TokenBucket(1e6), PageJournal(work / "pages.jsonl"))

    def whole_process() -> None:  # the whole-process back end: one migrate_pages(2)
        count = on_node(child.pid, 1)
        started, in_call = time.monotonic(), mover.seconds
        result = mover.move_process(child.pid, 0, TokenBucket(1e6))
        assert result is not None
        took = time.monotonic() - started
        whole.append(result.moved / took)
        call_share.append((mover.seconds - in_call) / took)
        assert on_node(child.pid, 1) < 0.05 * count

    def migratepages() -> None:
        count = on_node(child.pid, 1)
        started = time.monotonic()
        subprocess.run(["migratepages", str(child.pid), "1", "0"], check=True)
        theirs.append(count / (time.monotonic() - started))

    def batches() -> None:
        count = on_node(child.pid, 1)
        started = time.monotonic()
        addresses = [a for start, end in resident_regions(child.pid) for a in pages_of(start, end)]
        moved = mover.move(child.pid, addresses, 0, TokenBucket(1e6)).moved
        ours.append(moved / (time.monotonic() - started))
        assert on_node(child.pid, 1) < 0.05 * count

    arms = [whole_process, migratepages, batches]
    for arm in arms:  # a round to warm up (the first calls in a fresh guest), not counted
        subprocess.run(["migratepages", str(child.pid), "0", "1"], check=True)
        arm()
    del whole[:], theirs[:], ours[:], call_share[:]
    for round_ in range(args.rounds):
        # each arm goes first in turn: this guest's speed drifts within a run
        for arm in arms[round_ % 3:] + arms[:round_ % 3]:
            subprocess.run(["migratepages", str(child.pid), "0", "1"], check=True)
            arm()
    child.kill()

    # -- apply -> enforced, and the controller's cost per request
    paths = Paths(config_dir=work, state_dir=work / "state", pin_dir=Path("/sys/fs/bpf/llamas-bench"),
                  bpf_dir=ROOT / "bpf")
    guard = Guardrails()
    host = HostFacts.from_host()
    pinned_child = toucher(binary, 10)
    raw = json.dumps({"schema": "llamas.policy/v1", "rules": [
        {"name": "pin", "match": {"comm": "lt-bench"}, "cpu": {"nodes": [1]}}]}).encode()
    checked = validate(raw, host, guard)
    enforcer = Enforcer(paths, guard, host)
    started = time.monotonic()
    enforcer.apply(checked.document, "bench", "bench")
    while os.sched_getaffinity(pinned_child.pid) != set(host.node_cpus[1]):
        time.sleep(0.0005)
    apply_latency = time.monotonic() - started
    pinned_child.kill()

    stats_fd = bpfsys.enable_stats()
    controller = RequestServer(enforcer, paths.bpf_dir)
    exec_latencies = []
    for _ in range(10):
        started = time.monotonic()
        child = toucher(binary, 10)
        while os.sched_getaffinity(child.pid) != set(host.node_cpus[1]):
            controller.serve(0.001)
            assert time.monotonic() - started < 5
        exec_latencies.append(time.monotonic() - started)
        child.kill()
    count, run_ns = prog_stats(controller.program_fds())
    served = sum(controller.served.values())
    handling_s = controller.handling_s
    controller.close()
    os.close(stats_fd)
    enforcer.rollback("benchmark done")
    enforcer.close()
    shutil.rmtree(paths.pin_dir, ignore_errors=True)
    print(json.dumps({
        "pages": args.pages,
        "llamas_pages_per_s": round(statistics.median(ours)),
        "migratepages_pages_per_s": round(statistics.median(theirs)),
        "ratio_llamas_over_migratepages": round(statistics.median(ours) / statistics.median(theirs), 2),
        "llamas_whole_process_pages_per_s": round(statistics.median(whole)),
        "ratio_whole_process_over_migratepages": round(statistics.median(whole) / statistics.median(theirs),
                                                       2),
        "ratio_whole_process_each_round": [round(w / t, 2) for w, t in zip(whole, theirs, strict=True)],
        "whole_process_pages_per_s_each_round": [round(w) for w in whole],
        "whole_process_in_the_call_each_round": [round(c, 2) for c in call_share],
        "migratepages_pages_per_s_each_round": [round(t) for t in theirs],
        "apply_to_enforced_ms_one_shot": round(apply_latency * 1000, 1),
        "exec_to_pinned_ms_median": round(statistics.median(exec_latencies) * 1000, 1),
        "requests_served": served,
        "controller_us_per_request": round(handling_s / served * 1e6, 1) if served else None,
        "bpf_events": count,
        "bpf_ns_per_event": round(run_ns / count, 1) if count else None,
    }, indent=2))


if __name__ == "__main__":
    main()
