"""`llamas devices` as text: nodes, GPUs, NICs, then what disagrees and what is missing."""

from __future__ import annotations

from llamas_ebpf.devices.inventory import Inventory
from llamas_ebpf.faces.text import safe
from llamas_ebpf.kernel import cpulist


def _value(value: object, source: str | None) -> str:
    if value is None:
        return "-"
    mark = "" if source in (None, "kernel", "rank", "nvml") else "*"
    return f"{value}{mark}"


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


def render(inv: Inventory) -> str:
    lines = [f"host {safe(inv.host)}  kernel {safe(inv.kernel)}  (values marked * come from a description)"]
    lines.append(f"{'NODE':>4} {'CPUS':<10} {'MEM_MB':>8} {'TIER':>5} {'RD_NS':>6} {'WR_NS':>6} "
                 f"{'RD_MBPS':>8} {'WR_MBPS':>8}  DESCRIPTION")
    for n in inv.nodes:
        cpus = cpulist.format(n.cpus) or "(none)"
        src = n.sources
        lines.append(
            f"{n.id:>4} {cpus:<10} {_value(n.memory_mb, src.get('memory_mb')):>8} "
            f"{_value(n.tier, src.get('tier')):>5} "
            f"{_value(n.read_latency_ns, src.get('read_latency_ns')):>6} "
            f"{_value(n.write_latency_ns, src.get('write_latency_ns')):>6} "
            f"{_value(n.read_bandwidth_mbps, src.get('read_bandwidth_mbps')):>8} "
            f"{_value(n.write_bandwidth_mbps, src.get('write_bandwidth_mbps')):>8}  "
            f"{safe(n.description or '-')}{' (' + n.type + ')' if n.type else ''}"
        )
    for g in inv.gpus:
        lines.append(f"gpu {g.pci_address} {g.pci_id} {safe(g.name or g.vendor or '?')} node "
                     f"{_value(g.numa_node, g.sources.get('numa_node'))} memory "
                     f"{_value(g.memory_mb, g.sources.get('memory_mb'))} MB  {safe(g.description or '-')}")
    if inv.nvml:
        lines.append(f"nvml: {safe(inv.nvml)}")
    for nic in inv.nics:
        lines.append(f"nic {safe(nic.name)} {nic.pci_address or '-'} node {_value(nic.numa_node, 'kernel')} "
                     f"queues {nic.rx_queues}rx/{nic.tx_queues}tx speed "
                     f"{_value(nic.speed_mbps, nic.sources.get('speed_mbps'))} Mb/s  "
                     f"{safe(nic.description or '-')}")
    for c in inv.cxl:
        lines.append(f"cxl {c.name} ram {c.ram_mb} MB pmem {c.pmem_mb} MB "
                     f"node {_value(c.numa_node, 'kernel')}  {safe(c.description or '-')}")
    for d in inv.dax:
        lines.append(f"dax {d.name} {d.size_mb} MB target node {_value(d.target_node, 'kernel')}")
    for conflict in inv.conflicts:
        lines.append(f"CONFLICT {conflict.device} {conflict.field}: kernel says {_number(conflict.kernel)}, "
                     f"{conflict.description} ({conflict.file}) says {_number(conflict.described)}")
    for clash in inv.described_twice:
        lines.append(f"described twice: {clash}")
    if inv.described_absent:
        lines.append("described but absent: " + ", ".join(inv.described_absent))
    if inv.undescribed:
        lines.append("present but undescribed: " + ", ".join(inv.undescribed))
    return "\n".join(lines)
