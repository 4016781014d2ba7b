"""Which capabilities llamas really needs, measured: every operation the daemon performs is run
with one capability at a time taken out of the bounding set (capsh --drop; for root, exec then
leaves the process only what the bounding set holds, as systemd's CapabilityBoundingSet does),
and then with nothing but the set the shipped unit keeps (llamas_ebpf/units/llamas.service).

    .venv/bin/python benchmarks/capabilities.py            # the table, for benchmarks/README.md
    .venv/bin/python benchmarks/capabilities.py --json

As root. The operations act on a child that runs as another user (nobody), as the daemon's
targets do: pinning its threads, asking where its pages are and moving them, marking its memory
cold, reading its numa_maps; plus loading the probes, pinning the policy maps and loading
bpf/enforce.c on them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CANDIDATES = ("cap_bpf", "cap_perfmon", "cap_sys_admin", "cap_sys_nice", "cap_sys_ptrace", "cap_dac_override",
              "cap_dac_read_search", "cap_sys_resource", "cap_ipc_lock", "cap_net_admin", "cap_fowner",
              "cap_kill", "cap_setuid", "cap_setgid", "cap_chown")
UNIT = ROOT / "llamas_ebpf/units/llamas.service"
CHILD = ("import ctypes, mmap, time\nm = mmap.mmap(-1, 64 * 4096)\nfor i in range(64): m[i * 4096] = 1\n"
         "print(hex(ctypes.addressof(ctypes.c_char.from_buffer(m))), flush=True)\ntime.sleep(600)\n")
PROBES = {"faults", "numa_alloc", "numa_hint", "page_migrate", "cpu_migrate", "taskstats"}


def checks(pid: int, address: int) -> dict[str, str]:
    """Each operation: 'ok' or why it failed."""
    from llamas_ebpf.actuator.cold import ColdTracker
    from llamas_ebpf.kernel import bpfsys, mempolicy
    from llamas_ebpf.policy.maps import PolicyMaps
    from llamas_ebpf.probes.base import compile_bpf
    from llamas_ebpf.resources import bpf_dir
    from llamas_ebpf.sense import Sensor

    out: dict[str, str] = {}

    def attempt(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        try:
            result = fn()
            out[name] = "ok" if result in (None, True) else str(result)
        except Exception as exc:  # the point is to see every failure
            out[name] = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]

    def probes() -> str | bool:
        with Sensor(only=PROBES) as s:
            lost = sorted(n for n, h in s.health.items() if h.method is None)
            return f"unavailable: {', '.join(lost)}" if lost else True

    attempt("load the probes", probes)
    attempt("BPF run-time stats", lambda: os.close(bpfsys.enable_stats()))
    pin = Path(tempfile.mkdtemp(prefix="llamas-caps-", dir="/sys/fs/bpf"))

    def maps() -> None:
        PolicyMaps.open(pin / "maps", create=True).close()

    attempt("pin the policy maps", maps)
    attempt("load enforce.c on them",
            lambda: compile_bpf(bpf_dir(), "enforce.c", [f'-DPIN_DIR="{pin / "maps"}"']).cleanup())
    subprocess.run(["rm", "-rf", str(pin)], check=False)
    attempt("pin another user's threads", lambda: os.sched_setaffinity(pid, os.sched_getaffinity(pid)))
    attempt("ask where its pages are", lambda: mempolicy.move_pages(pid, [address], None)[0] >= 0 or "-")
    attempt("move its pages", lambda: mempolicy.move_pages(pid, [address], [0])[0] == 0 or "not moved")
    attempt("read its numa_maps", lambda: bool(mempolicy.pages_per_node(pid)) or "empty")
    attempt("mark its memory cold", lambda: ColdTracker().mark(pid) or "refused")
    return out


def _run(drop: list[str], pid: int, address: int) -> dict[str, str]:
    command = [sys.executable, __file__, "--probe", str(pid), hex(address)]
    wrapped = ["capsh", f"--drop={','.join(drop)}", "--", "-c", " ".join(command)] if drop else command
    result = subprocess.run(wrapped, capture_output=True, text=True, timeout=300)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"(all)": f"exit {result.returncode}: {result.stderr.strip()[-200:]}"}


def unit_set() -> list[str]:
    text = UNIT.read_text()
    line = next(line for line in text.splitlines() if line.startswith("CapabilityBoundingSet="))
    return sorted(c.lower() for c in line.split("=", 1)[1].split())


def all_caps() -> list[str]:
    text = subprocess.run(["capsh", "--print"], capture_output=True, text=True, check=True).stdout
    bounding = next(line for line in text.splitlines() if line.startswith("Bounding set"))
    return re.findall(r"cap_\w+", bounding)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(checks(int(args.probe[0]), int(args.probe[1], 16))))
        return
    child = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "/usr/bin/python3", "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        address = int(child.stdout.readline(), 16)
        present = all_caps()
        baseline = _run([], child.pid, address)
        rows = {}
        for cap in CANDIDATES:
            if cap not in present:
                rows[cap] = None  # not ours to drop: this machine never had it
                continue
            result = _run([cap], child.pid, address)
            rows[cap] = {k: v for k, v in result.items() if v != baseline.get(k)}
        kept = unit_set()
        only = _run([c for c in present if c not in kept], child.pid, address)
    finally:
        child.kill()
    report = {"baseline": baseline, "without": rows, "unit_set": kept,
              "with_only_the_unit_set": {k: v for k, v in only.items() if v != baseline.get(k)}}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print("| operation | with every capability |\n| --- | --- |")
    for name, result in baseline.items():
        print(f"| {name} | {result} |")
    print("\n| taken out | what breaks |\n| --- | --- |")
    for cap, broken in rows.items():
        text = ("not in this machine's bounding set" if broken is None
                else "; ".join(f"{k}: {v}" for k, v in broken.items()) or "nothing")
        print(f"| {cap} | {text} |")
    changed = report["with_only_the_unit_set"]
    broken = "; ".join(f"{k}: {v}" for k, v in changed.items()) or "everything works"
    print(f"\nonly {', '.join(kept)}: {broken}")


if __name__ == "__main__":
    main()
