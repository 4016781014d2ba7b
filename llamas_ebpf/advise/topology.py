"""The inventory as placement sees it: tiers, the fast nodes with CPUs, the slow nodes, and which
of them write slowly. The heuristic advisor and the audit's findings read the host through this
one class, so they agree on what is fast, slow and write-slow."""

from __future__ import annotations

from llamas_ebpf.advise.summary import ProcSummary
from llamas_ebpf.devices.inventory import GpuInfo, Inventory, NodeInfo
from llamas_ebpf.metrics import READS_NEAR_DRAM, WRITE_SLOW_RATIO


def write_slow(node: NodeInfo) -> bool:
    """Writes at least WRITE_SLOW_RATIO times slower than reads (latency or bandwidth), or
    described as pmem."""
    if node.type == "pmem":
        return True
    if (node.read_latency_ns and node.write_latency_ns
            and node.write_latency_ns >= WRITE_SLOW_RATIO * node.read_latency_ns):
        return True
    return bool(node.read_bandwidth_mbps and node.write_bandwidth_mbps
                and node.write_bandwidth_mbps * WRITE_SLOW_RATIO <= node.read_bandwidth_mbps)


class Topology:
    def __init__(self, inventory: Inventory) -> None:
        memory = [n for n in inventory.nodes if (n.memory_mb or 0) > 0 or n.memory_mb is None]
        tiers = sorted({n.tier for n in memory if n.tier is not None})
        self.fast_tier = tiers[0] if tiers else None
        self.nodes = {n.id: n for n in memory}
        self.fast = [n.id for n in memory if n.cpus and (n.tier is None or n.tier == self.fast_tier)]
        self.slow = sorted((n for n in memory if n.tier is not None and n.tier != self.fast_tier),
                           key=lambda n: (-(n.tier or 0), n.id))
        self.gpus: list[GpuInfo] = inventory.gpus
        self.fastest_read_ns = min(
            (n.read_latency_ns for n in memory if n.id in self.fast and n.read_latency_ns), default=None)

    def has_cpus(self, node: int) -> bool:
        info = self.nodes.get(node)
        return bool(info and info.cpus)

    def is_fast(self, node: int) -> bool:
        return node in self.fast

    def slow_ids(self) -> set[int]:
        return {n.id for n in self.slow}

    def write_slow_nodes(self) -> list[NodeInfo]:
        return [n for n in self.slow if write_slow(n)]

    def write_slow_ids(self) -> set[int]:
        return {n.id for n in self.write_slow_nodes()}

    def reads_near_dram(self) -> list[NodeInfo]:
        """Write-slow nodes that read within READS_NEAR_DRAM of the fastest DRAM: where
        read-mostly data can go."""
        fastest = self.fastest_read_ns
        return [n for n in self.write_slow_nodes()
                if fastest and n.read_latency_ns and n.read_latency_ns <= READS_NEAR_DRAM * fastest]

    def demote_target(self, writer: bool) -> int | None:
        """The slowest tier's node, skipping write-slow ones for a writer."""
        for node in self.slow:
            if writer and write_slow(node):
                continue
            return node.id
        return None

    def home_for(self, p: ProcSummary) -> int | None:
        if p.cpu_node is not None and self.is_fast(p.cpu_node):
            return p.cpu_node
        return self.fast[0] if self.fast else None
