"""The inventory from sysfs trees captured in the lab guests (`llamas devices --capture`), and from
trees built on them for devices the lab has none of (a GPU on node 1, a CXL expander)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llamas_ebpf.devices.inventory import discover

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/sysfs"
EXAMPLES = Path(__file__).resolve().parents[2] / "devices"


def describe(tmp_path: Path, *names: str) -> Path:
    directory = tmp_path / "devices"
    directory.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(EXAMPLES / name, directory / name)
    return directory


def test_tiered_lab_host_has_a_slow_cpu_less_node():
    inv = discover(FIXTURES / "lab-tiered")
    assert [n.id for n in inv.nodes] == [0, 1, 2]
    node0, node1, node2 = inv.nodes
    assert (node0.cpus, node1.cpus, node2.cpus) == ([0], [1], [])
    assert node2.cpu_less and not node0.cpu_less
    assert (node0.read_latency_ns, node2.read_latency_ns) == (80, 300)
    assert (node0.read_bandwidth_mbps, node2.read_bandwidth_mbps) == (20000, 5000)
    assert node2.initiators == [0, 1]
    assert node2.sources["read_latency_ns"] == "kernel"
    assert (node0.tier, node1.tier, node2.tier) == (4, 4, 67)  # the kernel's ids: higher is slower
    assert node0.distances == [10, 20, 20]
    assert 800 <= node2.memory_mb <= 1024
    assert inv.undescribed == ["node0", "node1", "node2"]


def test_description_that_disagrees_with_hmat_is_a_conflict(tmp_path):
    # pmem.toml says node2 reads in 100 ns; the tiered lab's HMAT says 300 ns
    inv = discover(FIXTURES / "lab-tiered", describe(tmp_path, "pmem.toml", "dram-socket.toml"))
    conflicts = {(c.device, c.field): c for c in inv.conflicts}
    read = conflicts[("node2", "read_latency_ns")]
    assert (read.kernel, read.described, read.description) == (300, 100, "pmem-node2")
    assert read.file.endswith("pmem.toml")
    node2 = inv.node(2)
    assert node2.read_latency_ns == 300  # the kernel's value stands
    assert node2.persistent is True and node2.sources["persistent"] == "description:pmem-node2"
    assert ("node0", "read_latency_ns") not in conflicts  # the DRAM description agrees
    assert ("node2", "persistent") not in conflicts  # the kernel says nothing of persistence
    assert inv.undescribed == []


def test_two_descriptions_of_one_node(tmp_path):
    inv = discover(FIXTURES / "lab-tiered", describe(tmp_path, "hbm.toml", "pmem.toml"))
    assert inv.node(2).description == "hbm-on-package"  # files load in name order; the first applies
    assert inv.described_twice == ["node2: pmem-node2 (hbm-on-package applies)"]
    assert {c.description for c in inv.conflicts} == {"hbm-on-package"}  # pmem's values are not applied


def test_pmem_lab_host_reads_fast_writes_slow(tmp_path):
    inv = discover(FIXTURES / "lab-pmem", describe(tmp_path, "pmem.toml"))
    node2 = inv.node(2)
    assert (node2.read_latency_ns, node2.write_latency_ns) == (100, 500)
    assert (node2.read_bandwidth_mbps, node2.write_bandwidth_mbps) == (15000, 3000)
    assert node2.description == "pmem-node2" and node2.type == "pmem"
    assert inv.conflicts == []
    assert inv.node(2).tier > inv.node(0).tier


def test_two_socket_host_has_one_tier():
    inv = discover(FIXTURES / "lab-2socket")
    assert [n.cpus for n in inv.nodes] == [[0], [1]]
    assert inv.node(0).tier == inv.node(1).tier
    assert [n.distances for n in inv.nodes] == [[10, 20], [20, 10]]


def _with_gpu_and_cxl(tmp_path: Path) -> Path:
    """The 2socket capture plus an H100 on node 1 and a CXL memdev, per the sysfs ABI
    (Documentation/ABI/testing/sysfs-bus-pci, sysfs-bus-cxl)."""
    root = tmp_path / "host"
    shutil.copytree(FIXTURES / "lab-2socket", root, symlinks=True)
    gpu = root / "sys/bus/pci/devices/0000:17:00.0"
    gpu.mkdir(parents=True)
    for name, value in (("class", "0x030200"), ("vendor", "0x10de"), ("device", "0x2331"),
                        ("numa_node", "1"), ("local_cpulist", "1")):
        (gpu / name).write_text(value + "\n")
    memdev = root / "sys/bus/cxl/devices/mem0"
    (memdev / "ram").mkdir(parents=True)
    (memdev / "ram/size").write_text(hex(256 << 30) + "\n")
    (memdev / "numa_node").write_text("1\n")
    return root


def test_gpu_on_node1_and_cxl_expander(tmp_path):
    root = _with_gpu_and_cxl(tmp_path)
    inv = discover(root, describe(tmp_path, "nvidia-h100-pcie.toml", "cxl-type3.toml", "nic-100gbe.toml"))
    (gpu,) = inv.gpus
    facts = (gpu.pci_address, gpu.pci_id, gpu.vendor, gpu.numa_node)
    assert facts == ("0000:17:00.0", "10de:2331", "NVIDIA", 1)
    assert gpu.local_cpus == [1]
    assert gpu.description == "h100-pcie"
    assert gpu.memory_mb == 80 * 1024 and gpu.sources["memory_mb"] == "description:h100-pcie"
    (memdev,) = inv.cxl
    assert (memdev.ram_mb, memdev.numa_node, memdev.description) == (256 * 1024, 1, "cxl-expander-0")
    assert inv.node(1).description == "cxl-expander-0"
    assert inv.described_absent == ["nic-100gbe"]
    assert "gpu 0000:17:00.0" not in inv.undescribed


@pytest.mark.parametrize("fixture", ["lab-tiered", "lab-pmem", "lab-2socket"])
def test_inventory_json_shape(fixture):
    import json

    data = json.loads(discover(FIXTURES / fixture).to_json())
    for node in data["nodes"]:
        assert {"id", "cpus", "read_latency_ns", "write_latency_ns", "read_bandwidth_mbps",
                "memory_mb", "tier"} <= set(node)
        assert all(isinstance(c, int) for c in node["cpus"])
    assert {"gpus", "nics", "descriptions", "conflicts"} <= set(data)
