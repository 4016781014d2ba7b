"""Each lab topology is what scripts/lab promises: nodes, CPUs, HMAT figures, memory tiers."""

from __future__ import annotations

from pathlib import Path

from llamas_ebpf.kernel import cpulist, nodes

NODE = Path("/sys/devices/system/node")


def test_nodes_and_cpus(topology):
    assert nodes.node_ids() == list(range(len(topology.memory_mb)))
    for node, cpu in enumerate(topology.cpus):
        assert nodes.node_cpus(node) == ([] if cpu is None else [cpu])
        total_kb = int((NODE / f"node{node}/meminfo").read_text().split("MemTotal:")[1].split()[0])
        # the kernel keeps some of each node for itself; at least 80% is visible
        assert 0.8 * topology.memory_mb[node] * 1024 <= total_kb <= topology.memory_mb[node] * 1024


def test_hmat_figures(topology):
    for node in range(len(topology.memory_mb)):
        initiators = NODE / f"node{node}/access0/initiators"
        best = min((link for (i, t), link in topology.links.items() if t == node),
                   key=lambda link: link.read_latency_ns)
        assert int((initiators / "read_latency").read_text()) == best.read_latency_ns
        assert int((initiators / "write_latency").read_text()) == best.write_latency_ns
        assert int((initiators / "read_bandwidth").read_text()) == best.read_bandwidth_mbps
        assert int((initiators / "write_bandwidth").read_text()) == best.write_bandwidth_mbps
        # access0 lists the initiators with the best access to this node
        owners = sorted(int(p.name.removeprefix("node")) for p in initiators.glob("node*"))
        assert owners == sorted(i for (i, t), link in topology.links.items() if t == node and link == best)


def test_memory_tiers(topology):
    tiers = {}
    for tier in Path("/sys/devices/virtual/memory_tiering").glob("memory_tier*"):
        tiers[int(tier.name.removeprefix("memory_tier"))] = cpulist.parse((tier / "nodelist").read_text())
    slow_nodes = [n for n, cpu in enumerate(topology.cpus) if cpu is None]
    if not slow_nodes:
        assert list(tiers.values()) == [[0, 1]]
        return
    assert len(tiers) == 2
    fast_id, slow_id = sorted(tiers)
    assert tiers[fast_id] == [n for n, cpu in enumerate(topology.cpus) if cpu is not None]
    assert tiers[slow_id] == slow_nodes  # a higher tier id is slower
