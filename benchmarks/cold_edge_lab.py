"""How soon an idle range reads cold when a hot one sits right next to it in the same mapping, in
the lab (DAMON vaddr exists only there). Inside the `tiered` guest, as root:

    scripts/lab --timeout 1200 -- python benchmarks/cold_edge_lab.py [--rounds 8] [--seconds 20]

The workload is the access check's (tests/guest/test_access_lab.py, one mapping): tests/helpers/
toucher writes 128 MiB in one mapping and then reads its upper half over and over on node0's CPU,
with a second process busy on that CPU (under TCG a process alone on its CPU keeps its TLB and
DAMON sees no access). A snapshot every 0.5 s, as the check takes them.

Two judgements of the same regions, side by side in every round:
- `llamas`: what the snapshot says (the longer of DAMON's age and the time llamas has seen the
  range quiet, `quiet` in llamas_ebpf/probes/access.py);
- `damon-age`: DAMON's age alone (cold: no access at the last aggregation and an age of at least
  COLD_AGE_S), as llamas judged before.
Two ways to start a process new to its DAMON slot, in alternate rounds (a warm-up round first,
not counted): `spans` (what llamas gives: damon.initial_regions, one region per span, close to
the one region over the whole span it gave before) and `pieces` (ten even pieces over the
spans, as DAMON starts a process itself; with a dozen targets they fill DAMON's region budget).

Reported per arm (a table, then the same as JSON): seconds until at least 90% of the idle half
reads cold while at least 90% of the read half reads hot (the check's bar: 15 s), median and
worst, and how many rounds never got there within --seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PAGE = 4096
PAGES = 16384  # 64 MiB a half
SIZE = PAGES * PAGE


def share(rows, heat: str, start: int, end: int) -> float:
    """The share of [start, end) in `heat` rows, each row's bytes by overlap."""
    total = 0
    for row_start, row_end, row_heat in rows:
        if row_heat == heat:
            total += max(0, min(end, row_end) - max(start, row_start))
    return total / (end - start)


def one_round(sensor, probe, binary: Path, seconds: float) -> dict[str, float | None]:
    from llamas_ebpf import metrics
    from tests.helpers.children import Toucher

    child = Toucher(binary, ("numactl", "--cpunodebind=0", "--membind=0"))
    try:
        idle = child.touch("write", 2 * PAGES)
        hot = idle + SIZE
        child.begin(f"spinhalf {int(seconds) + 5}")
        sensor.detail_pids = {child.pid}
        started = time.monotonic()
        found: dict[str, float | None] = {"llamas": None, "damon-age": None}
        while time.monotonic() - started < seconds and None in found.values():
            time.sleep(0.5)
            sensor.collect()
            took = time.monotonic() - started
            ours = [(r.start, r.end, r.heat) for r in probe.regions(child.pid) or []]
            samples = probe.intervals.samples_per_aggregation
            aggr_s = probe.intervals.aggr_us / 1e6
            damons = [(f.start, f.end, metrics.heat(f.accesses, f.age * aggr_s, samples))
                      for f in probe.current or [] if f.pid == child.pid]
            for arm, rows in (("llamas", ours), ("damon-age", damons)):
                if (found[arm] is None and share(rows, "cold", idle, hot) >= 0.9
                        and share(rows, "hot", hot, hot + SIZE) >= 0.9):
                    found[arm] = round(took, 1)
        return found
    finally:
        child.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    from llamas_ebpf.kernel import damon, mounts
    from llamas_ebpf.probes import access
    from llamas_ebpf.sense import Sensor
    from tests.helpers.children import build_helper

    mounts.ensure_mounted()
    Path("/proc/sys/kernel/numa_balancing").write_text("0")
    real = damon.initial_regions

    def pieces(vmas, pieces=1, page=PAGE):
        return real(vmas, pieces=damon.MIN_REGIONS, page=page)

    def spans(vmas, pieces=1, page=PAGE):
        return real(vmas, pieces=1, page=page)

    results: dict[str, list[float | None]] = {}
    busy = subprocess.Popen(["numactl", "--cpunodebind=0", "sh", "-c", "while :; do :; done"])
    try:
        with tempfile.TemporaryDirectory() as scratch, Sensor(only={"access"}, access_targets=4) as sensor:
            binary = build_helper("toucher", Path(scratch))
            probe = next(p for p in sensor.probes if p.name == "access")
            if probe.method != "damon-vaddr":
                sys.exit(f"cold_edge_lab: needs DAMON vaddr, the access probe has {probe.method!r}")
            for index in range(args.rounds + 1):
                way = "pieces" if index % 2 else "spans"
                access.damon.initial_regions = pieces if way == "pieces" else spans  # type: ignore[assignment]
                found = one_round(sensor, probe, binary, args.seconds)
                label = "warm-up" if index == 0 else f"round {index}"
                print(f"{label} ({way}): " + ", ".join(f"{arm} {t if t is not None else 'never'} s"
                                                       for arm, t in found.items()), flush=True)
                if index:
                    for arm, t in found.items():
                        results.setdefault(f"{way}/{arm}", []).append(t)
    finally:
        access.damon.initial_regions = real  # type: ignore[assignment]
        busy.kill()
        busy.wait()
    print("\narm                 rounds  median s  worst s  never")
    for arm, times in sorted(results.items()):
        got = [t for t in times if t is not None]
        median = f"{statistics.median(got):8.1f}" if got else "       -"
        worst = f"{max(got):7.1f}" if got else "      -"
        print(f"{arm:<20}{len(times):6d}  {median}  {worst}  {len(times) - len(got):5d}")
    print(json.dumps({"rounds": args.rounds, "seconds": args.seconds, "took_s": results}))


if __name__ == "__main__":
    main()
