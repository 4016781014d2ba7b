"""The steady-state misplaced reader against the kernel's NUMA balancing, in one run. Inside the
`2socket` guest, as root:

    scripts/lab --topology 2socket --timeout 1500 -- python benchmarks/steady_lab.py [--seconds 60]

The reader (tests/helpers/toucher.c) runs on node 0's CPU (numactl --cpunodebind=0, the default
memory policy) and re-reads 64 MiB that the harness moved to node 1;
once they are in it takes no faults at all, so nothing that counts faults sees it. A shell loop
spins on node 0's CPU beside it (under TCG a process alone on its CPU never refills the
emulator's TLB, so no accessed bit would be set again for DAMON or the kernel's scanner to see).
Four arms, one after the other, each with a fresh reader that is placed and reading before the
arm's clock starts, for --seconds:
  - none       numa_balancing=0 and nothing else: the floor;
  - kernel-1   numa_balancing=1: hinting faults move pages towards the CPU that touches them (or
               the task towards its memory);
  - kernel-2   numa_balancing=2: tiering only (this host has one tier: it should do nothing);
  - llamas     numa_balancing=0 and `llamas run --advisor heuristic --decide-every 5`, started
               once the reader is reading; the clock starts when it is ready (its BPF compile
               is reported apart, and the reader has run for that long by then).
Reported per arm: the seconds until 90% of the reader's pages are local to the CPUs it may run
on (numa_maps against sched_getaffinity), the share local at the end, and pages migrated
(/proc/vmstat pgmigrate_success). The target for llamas is one decision window plus 10 s.
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

from llamas_ebpf.kernel import mempolicy, nodes, procfs

ROOT = Path(__file__).resolve().parent.parent
PAGES = 16384
DECIDE_EVERY = 5


class Reader:
    def __init__(self, binary: Path) -> None:
        # the default memory policy, so that the kernel's balancing may move its pages (a
        # --membind=1 would forbid it); the pages are put on node 1 after they are touched
        self.proc = subprocess.Popen(["numactl", "--cpunodebind=0", str(binary)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"write {PAGES}\n")
        self.proc.stdin.flush()
        self.start = int(self.proc.stdout.readline().split()[1], 16)  # "done ADDRESS"
        addresses = [self.start + i * 4096 for i in range(PAGES)]
        for i in range(0, PAGES, 4096):
            mempolicy.move_pages(self.proc.pid, addresses[i:i + 4096], [1] * len(addresses[i:i + 4096]))
        self.proc.stdin.write("spin 3600\n")
        self.proc.stdin.flush()

    def local(self) -> float:
        cpus = os.sched_getaffinity(self.proc.pid)
        near = {n for n in nodes.node_ids() if set(nodes.node_cpus(n)) & cpus}
        by_node = mempolicy.pages_per_node(self.proc.pid, ranges=[(self.start, self.start + PAGES * 4096)])
        return sum(v for n, v in by_node.items() if n in near) / max(sum(by_node.values()), 1)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def arm(name: str, binary: Path, seconds: float, work: Path) -> dict[str, object]:
    """One arm: the reader placed on node 1 and reading first (its start-up faults are over, as
    in a steady state), then the kernel's balancing switched on, or llamas started; the clock
    starts then (for llamas: once it is ready, its BPF compile reported apart)."""
    Path("/proc/sys/kernel/numa_balancing").write_text("0")
    reader = Reader(binary)
    daemon = None
    startup = None
    if name == "llamas":
        daemon = Llamas(work, DECIDE_EVERY, "/sys/fs/bpf/llamas-steady")
        startup = round(daemon.startup_s, 1)
    else:
        Path("/proc/sys/kernel/numa_balancing").write_text({"kernel-1": "1", "kernel-2": "2"}.get(name, "0"))
    migrated = procfs.vmstat()["pgmigrate_success"]
    started = time.monotonic()
    t90 = None
    share = reader.local()
    while time.monotonic() - started < seconds:
        share = reader.local()
        if t90 is None and share >= 0.9:
            t90 = round(time.monotonic() - started, 1)
        time.sleep(0.5)
    result: dict[str, object] = {"arm": name, "t90_s": t90, "local_at_end": round(share, 3),
                                 "pages_migrated": procfs.vmstat()["pgmigrate_success"] - migrated,
                                 "llamas_startup_s": startup}
    if name == "llamas":  # what it did for the reader, and when (s after the clock started)
        log = [json.loads(line) for line in daemon.audit.read_text().splitlines()]
        wall = time.time() - (time.monotonic() - started)
        applied = [(e, r) for e in log if e["event"] == "apply" for r in e["document"]["rules"]
                   if r["match"] == {"pid": reader.proc.pid}]
        result["rules"] = [{"at_s": round(e["time"] - wall, 1), "rule": r,
                            "why": e["explanations"].get(r["name"])} for e, r in applied]
    reader.close()
    if daemon is not None:
        daemon.stop()
    Path("/proc/sys/kernel/numa_balancing").write_text("0")
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--arms", default="none,kernel-1,kernel-2,llamas")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llamas-steady-"))
    binary = work / "lt-steady"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(ROOT / "tests/helpers/toucher.c")], check=True)
    spinner = subprocess.Popen(["numactl", "--cpunodebind=0", "sh", "-c", "while :; do :; done"])
    try:
        results = [arm(name, binary, args.seconds, work) for name in args.arms.split(",")]
    finally:
        spinner.kill()
    best = min((r["t90_s"] for r in results if str(r["arm"]).startswith("kernel") and r["t90_s"] is not None),
               default=None)
    ours = next((r["t90_s"] for r in results if r["arm"] == "llamas"), None)
    print(json.dumps({"best_kernel_t90_s": best, "llamas_t90_s": ours,
                      "ratio_llamas_over_best_kernel": round(ours / best, 2) if ours and best else None,
                      "target_llamas_t90_s": DECIDE_EVERY + 10}))


if __name__ == "__main__":
    main()
