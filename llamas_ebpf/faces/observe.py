"""`llamas observe` as text: one block per interval, busiest processes first (bcc-tool style)."""

from __future__ import annotations

import time

from llamas_ebpf.faces.text import safe
from llamas_ebpf.snapshot import Snapshot

HEADER = (
    f"{'PID':>7} {'COMM':<16} {'FLT_USER':>9} {'FLT_KERN':>8} {'READ':>8} {'WRITE':>8} "
    f"{'ALLOC_LOC':>9} {'ALLOC_REM':>9} {'HINT_LOC':>8} {'HINT_REM':>8} "
    f"{'MIG_NODE':>8} {'MIG_XNODE':>9} {'GPU_CALLS':>9}"
)


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def render(snap: Snapshot, top: int | None) -> str:
    events = sum(p.events or 0 for p in snap.probes.values())
    run_ns = sum(p.run_time_ns or 0 for p in snap.probes.values())
    lost = sum(p.map_full + p.drops for p in snap.probes.values())
    stats = any(p.events is not None for p in snap.probes.values())
    rate = events / snap.interval_s if snap.interval_s else 0
    cost = f"  bpf events/s {rate:.0f}  {run_ns / events:.0f} ns/event" if stats and events else ""
    lines = [
        f"{time.strftime('%H:%M:%S', time.localtime(snap.time))}  interval {snap.interval_s:.2f}s{cost}  "
        f"lost {lost}",
        HEADER,
    ]
    rows = snap.processes if top is None else snap.processes[:top]
    for p in rows:
        lines.append(
            f"{p.pid:>7} {safe(p.comm, 16):<16} {p.faults.user:>9} {p.faults.kernel:>8} "
            f"{p.faults.read:>8} {p.faults.write:>8} {p.numa.alloc_local:>9} "
            f"{p.numa.alloc_remote:>9} {_opt(p.numa.hint_local):>8} {_opt(p.numa.hint_remote):>8} "
            f"{p.cpu_migrations.same_node:>8} {p.cpu_migrations.cross_node:>9} "
            f"{sum(p.gpu.calls.values()):>9}"
        )
    return "\n".join(lines)
