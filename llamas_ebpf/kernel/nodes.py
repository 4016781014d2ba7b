"""NUMA nodes from /sys/devices/system/node, and which physical pages each holds (/proc/zoneinfo).

Every function takes `root`, which stands for `/`, so tests and `--sysfs-root` read fixture trees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from llamas_ebpf.kernel import cpulist

_NODE_DIR = re.compile(r"node(\d+)$")


def node_root(root: Path) -> Path:
    return root / "sys/devices/system/node"


def node_ids(root: Path = Path("/")) -> list[int]:
    base = node_root(root)
    online = base / "online"
    if online.exists():
        return cpulist.parse(online.read_text())
    if not base.is_dir():
        return [0]
    return sorted(int(m.group(1)) for p in base.iterdir() if (m := _NODE_DIR.match(p.name)))


def node_cpus(node: int, root: Path = Path("/")) -> list[int]:
    path = node_root(root) / f"node{node}" / "cpulist"
    return cpulist.parse(path.read_text()) if path.exists() else []


def cpu_to_node(root: Path = Path("/")) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for node in node_ids(root):
        for cpu in node_cpus(node, root):
            mapping[cpu] = node
    return mapping


@dataclass(frozen=True)
class PfnRange:
    start: int  # first pfn
    end: int  # one past the last pfn
    node: int


def pfn_ranges(root: Path = Path("/")) -> list[PfnRange]:
    """Physical page ranges per node, from the zones in /proc/zoneinfo (start_pfn, spanned).

    Zones span holes too, which memory blocks leave out; adjacent zones of one node merge.
    """
    zones: list[tuple[int, int, int]] = []  # (start, end, node)
    node = start = spanned = None
    for line in (root / "proc/zoneinfo").read_text().splitlines():
        line = line.strip()
        if line.startswith("Node "):
            node, start, spanned = int(line.split()[1].rstrip(",")), None, None
        elif line.startswith("spanned"):
            spanned = int(line.split()[1])
        elif line.startswith("start_pfn:"):
            start = int(line.split()[1])
            if node is not None and spanned:
                zones.append((start, start + spanned, node))
    ranges: list[PfnRange] = []
    for first, end, owner in sorted(zones):
        if ranges and ranges[-1].node == owner and ranges[-1].end >= first:
            ranges[-1] = PfnRange(ranges[-1].start, max(end, ranges[-1].end), owner)
        else:
            ranges.append(PfnRange(first, end, owner))
    return ranges


def room_pages(node: int, root: Path = Path("/")) -> int | None:
    """Pages a node can take now without the kernel reclaiming: over its zones in
    /proc/zoneinfo, each zone's free pages above its high watermark and the most it keeps back
    from allocations meant for higher zones (lowmem_reserve, `protection`), as a user page may
    land in any zone of the node. A small node keeps much of its free memory that way (the lab's
    1 GiB node 0: a 45 MiB high watermark, 15 MiB of DMA zone). None where zoneinfo cannot be
    read."""
    try:
        text = (root / "proc/zoneinfo").read_text()
    except OSError:
        return None
    total = 0
    current = free = high = None
    reserve = 0

    def close() -> int:
        if current == node and free is not None and high is not None:
            return max(free - high - reserve, 0)
        return 0

    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "Node":
            total += close()
            current, free, high, reserve = int(words[1].rstrip(",")), None, None, 0
        elif words[:2] == ["pages", "free"]:
            free = int(words[2])
        elif words[0] == "high" and high is None and len(words) == 2:
            high = int(words[1])  # the zone's; the per-CPU pagesets' "high:" lines come later
        elif words[0] == "protection:":
            reserve = max(int(w.strip("(),")) for w in words[1:] if w.strip("(),"))
    return total + close()


def numastat(node: int, root: Path = Path("/")) -> dict[str, int]:
    path = node_root(root) / f"node{node}" / "numastat"
    result = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        result[key] = int(value)
    return result


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip(), 0)
    except (OSError, ValueError):
        return None


def memory_mb(node: int, root: Path = Path("/"), key: str = "MemTotal") -> int | None:
    """MemTotal (or another meminfo key, e.g. MemFree) of a node, in MiB."""
    try:
        text = (node_root(root) / f"node{node}" / "meminfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if f" {key}:" in line:
            return int(line.split(f"{key}:")[1].split()[0]) // 1024
    return None


def distances(node: int, root: Path = Path("/")) -> list[int]:
    """The node's row of the SLIT distance table (10 = local)."""
    try:
        return [int(v) for v in (node_root(root) / f"node{node}" / "distance").read_text().split()]
    except OSError:
        return []


@dataclass(frozen=True)
class Access:
    """What the best initiators see of a memory node (HMAT, /sys/.../nodeN/accessC/initiators):
    latencies in ns, bandwidths in MB/s. access0 counts any initiator, access1 only CPUs."""

    initiators: list[int]
    read_latency_ns: int | None
    write_latency_ns: int | None
    read_bandwidth_mbps: int | None
    write_bandwidth_mbps: int | None


def access(node: int, access_class: int = 0, root: Path = Path("/")) -> Access | None:
    base = node_root(root) / f"node{node}" / f"access{access_class}" / "initiators"
    if not base.is_dir():
        return None
    initiators = sorted(int(m.group(1)) for p in base.iterdir() if (m := _NODE_DIR.match(p.name)))
    return Access(
        initiators=initiators,
        read_latency_ns=read_int(base / "read_latency"),
        write_latency_ns=read_int(base / "write_latency"),
        read_bandwidth_mbps=read_int(base / "read_bandwidth"),
        write_bandwidth_mbps=read_int(base / "write_bandwidth"),
    )
