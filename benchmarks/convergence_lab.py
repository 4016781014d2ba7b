"""Convergence on a misplaced workload in the lab: `llamas run` (heuristic advisor) against the
kernel's own NUMA balancing, mode 1 and mode 2 (memory tiering), in one run. Inside the
`tiered` guest, as root:

    scripts/lab --timeout 1500 -- python benchmarks/convergence_lab.py [--seconds 90] [--hot 8192]

The workload (benchmarks/hotcold.c) runs on node0's CPU. It reads HOT pages all the time, wrote
COLD pages once and leaves them, and maps/writes/unmaps a few pages every 10 ms, as programs
allocate. Before each arm starts, the harness puts every hot and cold page on node2, the slow
CPU-less tier: the state a process is in after its memory was demoted, or allocated when DRAM was
full. A shell loop spins on node0's CPU beside it in every arm (under TCG a process alone on its
CPU never refills the emulator's TLB, so no accessed bit is ever set again for DAMON to see).
Then, per arm, for --seconds:
  - kernel-1   numa_balancing=1: hinting faults move pages towards the CPU that touches them;
  - kernel-2   numa_balancing=2: hot pages on a slower tier are promoted to the fast tier;
  - llamas     numa_balancing=0 and `llamas run --advisor heuristic` (started and compiled
               once the pages are placed and before the workload starts reading; its start-up
               is reported apart; the harness's own pid is in its deny list);
  - none       numa_balancing=0 and nothing else: the floor.
Reported per arm (pages migrated also as a ratio to the minimum, the hot pages, since every hot
page starts on node2 and no cold one needs to move): the fraction of hot pages on the fast tier
(node0 or node1) and on node0 over
time (move_pages' own query, every second), the seconds until 50% and 90% of the hot pages are on
the fast tier, where the cold pages ended up, pages migrated (/proc/vmstat pgmigrate_success,
which counts the kernel's and move_pages' migrations alike), and CPU: the workload's own user and
system time (NUMA balancing scans and handles hinting faults in the task's context, so the
kernel's cost shows there), llamas' own CPU time, and the whole guest's busy time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from lab_daemon import Llamas

from llamas_ebpf.kernel import mempolicy

ROOT = Path(__file__).resolve().parent.parent
FAST = {0, 1}  # the tiered topology's DRAM nodes; node2 is the slow tier
CHUNK = 4096
VMSTAT = ("pgmigrate_success", "numa_pages_migrated", "pgpromote_success", "numa_hint_faults")
TICK = os.sysconf("SC_CLK_TCK")


def vmstat() -> dict[str, int]:
    values = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    return {k: int(values.get(k, 0)) for k in VMSTAT}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) seconds of a process, its reaped children included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system, cuser, csystem = (int(x) for x in fields[11:15])
    return (user + cuser) / TICK, (system + csystem) / TICK


def busy_seconds() -> float:
    """The guest's busy CPU time, all CPUs: everything but idle and iowait."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def nodes_of(pid: int, addresses: list[int]) -> list[int]:
    out: list[int] = []
    for i in range(0, len(addresses), CHUNK):
        out += mempolicy.move_pages(pid, addresses[i:i + CHUNK], None)
    return out


def place(pid: int, addresses: list[int], node: int) -> None:
    for i in range(0, len(addresses), CHUNK):
        chunk = addresses[i:i + CHUNK]
        mempolicy.move_pages(pid, chunk, [node] * len(chunk))


def mapping_facts(pid: int, start: int) -> dict[str, str]:
    """The smaps lines of one mapping that say what the kernel knows of its use."""
    facts: dict[str, str] = {}
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 1)[0]
        if "-" in head and not head.endswith(":"):
            inside = int(head.split("-")[0], 16) == start
        elif inside and head in ("Rss:", "Referenced:", "VmFlags:"):
            facts[head.rstrip(":")] = line.split(None, 1)[1].strip()
    return facts


def arm(name: str, balancing: int, binary: Path, args: argparse.Namespace, work: Path) -> dict:
    Path("/proc/sys/kernel/numa_balancing").write_text("0")  # while the harness places the pages
    # a second process busy on the workload's CPU, in every arm: under TCG a process alone on its
    # CPU keeps its whole working set in the emulator's TLB, never walks its page tables again, and
    # the accessed bits DAMON samples stay clear (tests/guest/access.py says more)
    contender = subprocess.Popen(["taskset", "-c", "0", "sh", "-c", "while :; do :; done"])
    child = subprocess.Popen(["taskset", "-c", "0", str(binary), str(args.hot), str(args.cold), "16"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    _, hot_at, cold_at = child.stdout.readline().split()
    hot = [int(hot_at, 16) + i * 4096 for i in range(args.hot)]
    cold = [int(cold_at, 16) + i * 4096 for i in range(args.cold)]
    place(child.pid, hot + cold, 2)
    on_slow = nodes_of(child.pid, hot + cold).count(2) / (args.hot + args.cold)
    # llamas starts once the pages are placed (its own judgement of the half-placed workload is
    # not the question), and before the workload does; its BPF compile is reported apart
    Path("/proc/sys/kernel/numa_balancing").write_text(str(balancing))
    llamas = None
    if name == "llamas":
        llamas = Llamas(work / name, args.decide_every, "/sys/fs/bpf/llamas-convergence")
    before_vm, before_busy = vmstat(), busy_seconds()
    before_llamas = cpu_seconds(llamas.proc.pid) if llamas else (0.0, 0.0)
    child.stdin.write("go\n")
    child.stdin.flush()
    started = time.monotonic()
    series = []
    while (elapsed := time.monotonic() - started) < args.seconds:
        hot_nodes, cold_nodes = nodes_of(child.pid, hot), nodes_of(child.pid, cold)
        series.append([round(elapsed, 1),
                       round(sum(n in FAST for n in hot_nodes) / args.hot, 3),
                       round(hot_nodes.count(0) / args.hot, 3),
                       round(sum(n in FAST for n in cold_nodes) / args.cold, 3)])
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started - elapsed)))
    elapsed = time.monotonic() - started
    after_vm, after_busy = vmstat(), busy_seconds()
    work_user, work_system = cpu_seconds(child.pid)
    after_llamas = cpu_seconds(llamas.proc.pid) if llamas else (0.0, 0.0)
    cold_mapping = mapping_facts(child.pid, int(cold_at, 16))
    child.stdin.write("stop\n")
    child.stdin.flush()
    child.wait(timeout=60)
    contender.kill()
    contender.wait()
    migrated = after_vm["pgmigrate_success"] - before_vm["pgmigrate_success"]
    result = {
        "arm": name, "numa_balancing": balancing, "seconds": round(elapsed, 1),
        "placed_on_node2_at_start": round(on_slow, 3),
        "hot_on_fast_tier_final": series[-1][1], "hot_on_node0_final": series[-1][2],
        "cold_on_fast_tier_final": series[-1][3],
        "t50_hot_on_fast_tier_s": next((t for t, fast, *_ in series if fast >= 0.5), None),
        "t90_hot_on_fast_tier_s": next((t for t, fast, *_ in series if fast >= 0.9), None),
        "cold_on_fast_tier_peak": max(row[3] for row in series),
        "cold_on_slow_tier_final": round(1 - series[-1][3], 3),
        # every hot page had to move (all started on node2); no cold one did
        "pages_migrated_over_minimum": round(migrated / args.hot, 3),
        "cold_mapping_at_end": cold_mapping,
        "vmstat": {k: after_vm[k] - before_vm[k] for k in VMSTAT},
        "workload_cpu_s": {"user": round(work_user, 2), "system": round(work_system, 2)},
        "llamas_cpu_s": round(sum(after_llamas) - sum(before_llamas), 2),
        "guest_busy_cpu_s": round(after_busy - before_busy, 2),
        "series": series,  # [seconds, hot on fast tier, hot on node0, cold on fast tier]
    }
    if llamas is not None:
        result["llamas_startup_s"] = round(llamas.startup_s, 1)
        said = [[round(t - started, 1), line[:300]] for t, line in llamas.lines if t >= started]
        result["llamas_said"] = said
        audit = work / name / "state" / "audit.jsonl"
        log = [json.loads(line) for line in audit.read_text().splitlines()]
        result["llamas_rules"] = [rule for entry in log if entry.get("event") == "apply"
                                  for rule in entry["document"]["rules"]]
        # when each rule, judgement and placement came, on the arm's clock
        wall = time.time() - (time.monotonic() - started)
        result["llamas_events"] = [
            {"at_s": round(e["time"] - wall, 1), "event": e["event"],
             **{k: e[k] for k in ("generation", "bound_mib", "home_free_mib", "served_by") if k in e}}
            for e in log if e["event"] in ("apply", "judged", "placed")]
        llamas.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--hot", type=int, default=8192, help="pages read all the time (32 MiB)")
    parser.add_argument("--cold", type=int, default=8192, help="pages written once (32 MiB)")
    parser.add_argument("--decide-every", type=float, default=5)
    parser.add_argument("--arms", default="kernel-1,kernel-2,llamas,none")
    args = parser.parse_args()
    # the harness keeps to node1 (CPU 1, its pages there too), off the workload's CPU, and gives
    # the heuristic no reason to take it
    os.sched_setaffinity(0, {1})
    subprocess.run(["migratepages", str(os.getpid()), "0,2", "1"], check=True)
    work = Path(tempfile.mkdtemp())
    binary = work / "hotcold"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(ROOT / "benchmarks/hotcold.c")], check=True)
    modes = {"kernel-1": 1, "kernel-2": 2, "llamas": 0, "none": 0}
    results = [arm(name, modes[name], binary, args, work) for name in args.arms.split(",")]
    Path("/proc/sys/kernel/numa_balancing").write_text("0")
    print(json.dumps({"hot_pages": args.hot, "cold_pages": args.cold, "arms": results}))


if __name__ == "__main__":
    main()
