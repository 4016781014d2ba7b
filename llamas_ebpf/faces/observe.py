"""`llamas observe` as text: one block per interval, busiest processes first (bcc-tool style)."""

from __future__ import annotations

import time

from llamas_ebpf.faces.text import human, mib, safe
from llamas_ebpf.snapshot import OtherProcesses, Snapshot

HEADER = (
    f"{'PID':>7} {'COMM':<16} {'FLT_USER':>9} {'FLT_KERN':>8} {'READ':>8} {'WRITE':>8} "
    f"{'ALLOC_LOC':>9} {'ALLOC_REM':>9} {'HINT_LOC':>8} {'HINT_REM':>8} "
    f"{'MIG_NODE':>8} {'MIG_XNODE':>9} {'GPU_CALLS':>9} {'HOT_MIB':>8} {'COLD_MIB':>8} {'HOT_NODES':<12}"
)


def _nodes(by_node: dict[int, int]) -> str:
    """Where the hot bytes are: node:MiB, most first."""
    ranked = sorted(by_node.items(), key=lambda kv: -kv[1])
    parts = [f"{node}:{mib(size)}" for node, size in ranked if size]
    return ",".join(parts) or "-"


def access_lines(snap: Snapshot) -> list[str]:
    """How access was seen, and hot/warm/cold per node."""
    access = snap.access
    if access is None:
        return []
    how = f"access: {access.method} ({access.scope})"
    if access.sample_us is not None and access.aggr_us is not None:
        how += (f", sample {access.sample_us / 1000:g} ms, aggregation {access.aggr_us / 1000:g} ms: hot "
                f">= {access.hot_min_accesses:g} accesses/aggregation, "
                f"cold = none for {access.cold_min_age_s:g} s")
    if access.written_method:
        how += f", written: {access.written_method}"
    lines = [how]
    if access.reason:
        lines.append(f"  note: {safe(access.reason, 300)}")
    heat = [f"node{n.id} hot {mib(n.hot_bytes)} warm {mib(n.warm_bytes)} cold {mib(n.cold_bytes)} MiB"
            + (f" free {n.free_mb} MiB" if n.free_mb is not None else "")
            for n in snap.nodes if n.hot_bytes is not None]
    if heat:
        lines.append("  " + "; ".join(heat))
    return lines


def estimated_note(snap: Snapshot) -> str:
    """Which probes counted part of the interval by sample (a storm), and how much."""
    parts = [f"{name} {human(h.estimated)} of its events 1 in {h.sample_every}"
             for name, h in snap.probes.items() if h.estimated and h.sample_every]
    return f"  estimated: {'; '.join(parts)}" if parts else ""


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
        f"lost {lost}{estimated_note(snap)}",
        *access_lines(snap),
        HEADER,
    ]
    # busiest first: pages faulted, and pages accessed (a steady reader faults on nothing)
    ordered = sorted(snap.processes,
                     key=lambda p: -(p.total_faults + (p.access.hot_bytes // 4096 if p.access else 0)))
    rows = ordered if top is None else ordered[:top]
    for p in rows:
        hot = p.access.hot_bytes if p.access else None
        cold = p.access.cold_bytes if p.access else None
        where = _nodes(p.access.hot_bytes_by_node) if p.access else "-"
        lines.append(
            f"{p.pid:>7} {safe(p.comm, 16):<16} {p.faults.user:>9} {p.faults.kernel:>8} "
            f"{p.faults.read:>8} {p.faults.write:>8} {p.numa.alloc_local:>9} "
            f"{p.numa.alloc_remote:>9} {_opt(p.numa.hint_local):>8} {_opt(p.numa.hint_remote):>8} "
            f"{p.cpu_migrations.same_node:>8} {p.cpu_migrations.cross_node:>9} "
            f"{sum(p.gpu.calls.values()):>9} {mib(hot):>8} {mib(cold):>8} {where:<12}"
        )
    if snap.others is not None:
        lines.append(others_line(snap.others))
    return "\n".join(lines)


def others_line(others: OtherProcesses) -> str:
    """What the processes the snapshot left out counted, summed."""
    return (f"  others: {others.processes} processes, faults {others.total_faults}, allocations "
            f"local {others.numa.alloc_local} remote {others.numa.alloc_remote}, CPU moves cross-node "
            f"{others.cpu_migrations.cross_node} (not among the busiest; --busiest 0 keeps them all)")
