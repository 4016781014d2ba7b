"""Write-slow memory, with DRAM short, against the kernel's NUMA balancing and tiering, in one run.
Inside the `pmem` guest (node 0: DRAM and CPU 0; node 1: DRAM and CPU 1; node 2: no CPU, reads
about as fast as DRAM and writes five times slower, devices/pmem.toml and the guest's HMAT), as
root:

    scripts/lab --topology pmem --timeout 1500 -- python benchmarks/write_slow_lab.py [--seconds 60]
        [--layout both-slow|reads-in-dram] [--free-mib 96]

The workload (tests/helpers/toucher.c `mix`) runs on node 0's CPU with the default memory
policy (an explicit one, even --localalloc, takes its mappings out of NUMA balancing's scan)
and, over and over, writes every page of one 64 MiB range and reads every page of another; both
start on node 2. The page cache is dropped and a locked balloon (mlockall, bound to node 0)
takes node 0's DRAM but --free-mib of room (96 by default: one range and half the other; room is
free memory above the kernel's watermarks and zone reserves, which on this 1 GiB node keep about
60 MiB of the free memory back), so that the two ranges together do not fit in it, and no page
cache there can be reclaimed to make room.
llamas runs bound to node 1 (CPU and memory), so that its own 200 MB do not take node 0's. A
spinner shares node 0's CPU (under TCG a process alone on its CPU never walks its page tables
again: tests/guest/access.py).

With `--layout reads-in-dram` the read range starts in node 0's DRAM instead, and (with
`--free-mib 16`) the written range has no room there unless something makes way: what a host
looks like after its read-mostly data got to DRAM first.

Four arms, one after the other, each with a fresh workload placed and running before its clock
starts, for --seconds:
  - none       numa_balancing=0: the floor;
  - kernel-1   numa_balancing=1: hinting faults move pages towards the CPU that touches them;
  - kernel-2   numa_balancing=2 and demotion_enabled=1: the kernel's memory tiering, promoting
               hot pages from a lower tier and demoting cold ones (what a user of it sets);
  - llamas     numa_balancing=0 and `llamas run --advisor heuristic --decide-every 5`; the clock
               starts once it is ready (its BPF compile is reported apart).

Reported per arm, from where the pages are at the end (move_pages' answer for every page) and
the workload's own access pattern (each loop writes every page of the written range once and
reads every page of the read range once, so every page of a range is touched equally often):
  - writes_on_slow: the share of the written range's pages on node 2, that is the share of the
    writes that land on the write-slow node (target for llamas: at most 5%, and below both
    kernel arms);
  - reads_from_dram: the share of the read range's pages on node 0 or 1;
  - the seconds until 95% of the written range was in DRAM, and pages migrated (vmstat).
The memory tiers the kernel formed are printed first: tiering can only promote from node 2 if
the kernel put it in a lower tier.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab_daemon import Llamas

from llamas_ebpf.kernel import mempolicy, nodes, procfs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.helpers.balloon import NAME as BALLOON  # noqa: E402
from tests.helpers.balloon import Balloon, free_mib, room_mib  # noqa: E402

PAGES = 16384  # 64 MiB a range
PAGE = 4096
DECIDE_EVERY = 5
SLOW = 2


def tiers() -> dict[str, str]:
    base = Path("/sys/devices/virtual/memory_tiering")
    return {p.name: (p / "nodelist").read_text().strip() for p in sorted(base.glob("memory_tier*"))} \
        if base.exists() else {}


class Workload:
    def __init__(self, binary: Path, layout: str) -> None:
        self.proc = subprocess.Popen(["numactl", "--cpunodebind=0", str(binary)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.written = self._touch()
        self.read = self._touch()
        read_on = 0 if layout == "reads-in-dram" else SLOW
        for start, node in ((self.written, SLOW), (self.read, read_on)):
            for first in range(0, PAGES, 4096):
                batch = [start + i * PAGE for i in range(first, min(first + 4096, PAGES))]
                mempolicy.move_pages(self.proc.pid, batch, [node] * len(batch))
        assert self.proc.stdin is not None
        self.proc.stdin.write("mix 3600\n")  # writes `written`, reads `read`, over and over
        self.proc.stdin.flush()

    def _touch(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"write {PAGES}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline().split()[1], 16)  # "done ADDRESS"

    def where(self, start: int) -> list[int]:
        return mempolicy.move_pages(self.proc.pid, [start + i * PAGE for i in range(PAGES)], None)

    def shares(self) -> tuple[float, float]:
        """(writes on the slow node, reads from DRAM), from where the pages are now."""
        written, read = self.where(self.written), self.where(self.read)
        return written.count(SLOW) / PAGES, sum(1 for n in read if n in (0, 1)) / PAGES

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def arm(name: str, binary: Path, seconds: float, work: Path, keep: int, layout: str) -> dict[str, object]:
    Path("/proc/sys/kernel/numa_balancing").write_text("0")
    Path("/sys/kernel/mm/numa/demotion_enabled").write_text("0")
    daemon = None
    startup = None
    if name == "llamas":
        # started first, bound to node 1, so that its own 200 MB and its start-up (a BPF build)
        # do not take node 0's DRAM: every arm's clock starts with the same room there (a run
        # that started it after the balloon left 57 of 96 MiB free at its first judgement)
        daemon = Llamas(work, DECIDE_EVERY, "/sys/fs/bpf/llamas-write-slow", deny_comm=(BALLOON,),
                        prefix=("numactl", "--cpunodebind=1", "--membind=1"))
        startup = round(daemon.startup_s, 1)
    # the balloon, then the workload: a new process, which no arm can have judged before the
    # balloon holds node 0 (its pages pass through node 0's room on their way to where they start)
    # with the read range to start in DRAM, the balloon leaves room for it too
    balloon = Balloon(keep + (PAGES * PAGE >> 20 if layout == "reads-in-dram" else 0))
    workload = Workload(binary, layout)
    if name == "kernel-2":
        Path("/sys/kernel/mm/numa/demotion_enabled").write_text("1")
        Path("/proc/sys/kernel/numa_balancing").write_text("2")
    elif name == "kernel-1":
        Path("/proc/sys/kernel/numa_balancing").write_text("1")
    room_at_start = room_mib(0)
    vm_before = procfs.vmstat()
    started = time.monotonic()
    t95 = None
    slow_writes, dram_reads = workload.shares()
    series: list[tuple[float, float, float]] = []  # (s, writes on slow, reads from DRAM), every 5 s
    while time.monotonic() - started < seconds:
        slow_writes, dram_reads = workload.shares()
        at = round(time.monotonic() - started, 1)
        if t95 is None and slow_writes <= 0.05:
            t95 = at
        if not series or at - series[-1][0] >= 5:
            series.append((at, round(slow_writes, 3), round(dram_reads, 3)))
        time.sleep(1)
    vm = procfs.vmstat()
    result: dict[str, object] = {
        "arm": name, "writes_on_slow": round(slow_writes, 3), "reads_from_dram": round(dram_reads, 3),
        "written_95pct_in_dram_s": t95,
        "pages_migrated": vm["pgmigrate_success"] - vm_before["pgmigrate_success"],
        "promoted": vm.get("pgpromote_success", 0) - vm_before.get("pgpromote_success", 0),
        "demoted": sum(vm.get(k, 0) - vm_before.get(k, 0) for k in ("pgdemote_kswapd", "pgdemote_direct")),
        "node0_free_mib_at_end": free_mib(0), "node0_room_mib_at_start": room_at_start,
        "balloon_mib": balloon.size, "llamas_startup_s": startup,
        "series": series,
    }
    if name == "llamas":
        log = [json.loads(line) for line in daemon.audit.read_text().splitlines()]
        result["rules"] = [{"rule": r, "why": e["explanations"].get(r["name"])} for e in log
                           if e["event"] == "apply" for r in e["document"]["rules"]
                           if r["match"] == {"pid": workload.proc.pid}]
        wall = time.time() - (time.monotonic() - started)
        result["events"] = [{"at_s": round(e["time"] - wall, 1), "event": e["event"],
                             **{k: e[k] for k in ("generation", "reason", "outcome", "pages_moved",
                                                  "pages_restored", "served_by", "bound_mib", "home_free_mib",
                                                  "writes", "written_mib") if k in e}}
                            for e in log if e["event"] in ("apply", "revert", "effect", "rollback", "placed",
                                                           "judged")]
    workload.close()
    if daemon is not None:
        result["llamas_exited_early"] = daemon.proc.poll()
        daemon.stop()
        result["llamas_said_last"] = [line for _at, line in daemon.lines[-4:]]
    balloon.close()
    Path("/proc/sys/kernel/numa_balancing").write_text("0")
    Path("/sys/kernel/mm/numa/demotion_enabled").write_text("0")
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--free-mib", type=int, default=96, help="node 0 DRAM left free beside the balloon")
    parser.add_argument("--arms", default="none,kernel-1,kernel-2,llamas")
    parser.add_argument("--layout", choices=("both-slow", "reads-in-dram"), default="both-slow",
                        help="where the ranges start: both on node 2, or the read one in node 0's DRAM")
    args = parser.parse_args()
    print(json.dumps({"layout": args.layout, "memory_tiers": tiers(),
                      "node_free_mib": {n: free_mib(n) for n in nodes.node_ids()}}), flush=True)
    work = Path(tempfile.mkdtemp(prefix="llamas-write-slow-"))
    binary = work / "lt-mix"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(ROOT / "tests/helpers/toucher.c")], check=True)
    spinner = subprocess.Popen(["numactl", "--cpunodebind=0", "sh", "-c", "while :; do :; done"])
    try:
        results = [arm(name, binary, args.seconds, work, args.free_mib, args.layout)
                   for name in args.arms.split(",")]
    finally:
        spinner.kill()
    kernel = [r for r in results if str(r["arm"]).startswith("kernel")]
    ours = next((r for r in results if r["arm"] == "llamas"), None)
    best = min(kernel, key=lambda r: float(r["writes_on_slow"])) if kernel else None
    summary: dict[str, object] = {"target_llamas_writes_on_slow": 0.05}
    if ours is not None and best is not None:
        summary.update({
            "best_kernel_arm": best["arm"], "best_kernel_writes_on_slow": best["writes_on_slow"],
            "llamas_writes_on_slow": ours["writes_on_slow"],
            "llamas_reads_from_dram": ours["reads_from_dram"],
            "best_kernel_reads_from_dram": max(float(r["reads_from_dram"]) for r in kernel),
        })
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
