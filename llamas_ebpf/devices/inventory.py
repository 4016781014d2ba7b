"""The Inventory: every memory node, GPU, NIC, CXL and DAX device of a host, the kernel's facts
merged with the administrator's descriptions. Advisors reason over it; `llamas devices` shows it.

Each merged value records its source in `sources` ("kernel", "rank" or "description:NAME").
A value the kernel reports wins; a description that disagrees by more than CONFLICT_RATIO is
listed in `conflicts`. Discovery reads below `root`, which stands for `/` (a captured tree
works the same way).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from llamas_ebpf.devices.descriptions import DescriptionError, LoadedDescription, load_dir
from llamas_ebpf.kernel import cxl, netdev, nodes, nvml, pci, tiers

CONFLICT_RATIO = 0.2
_NUMERIC = ("read_latency_ns", "write_latency_ns", "read_bandwidth_mbps", "write_bandwidth_mbps")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Conflict(_Model):
    device: str
    field: str
    kernel: float
    described: float
    description: str
    file: str


class NodeInfo(_Model):
    id: int
    cpus: list[int]
    cpu_less: bool
    memory_mb: int | None = None
    tier: int | None = None  # higher is slower: the kernel's memory_tierN id, else a rank
    distances: list[int] = Field(default_factory=list)
    initiators: list[int] = Field(default_factory=list)  # nodes with the best access (HMAT)
    read_latency_ns: int | None = None
    write_latency_ns: int | None = None
    read_bandwidth_mbps: int | None = None
    write_bandwidth_mbps: int | None = None
    description: str | None = None
    type: str | None = None
    persistent: bool | None = None
    endurance: str | None = None
    sources: dict[str, str] = Field(default_factory=dict)


class GpuInfo(_Model):
    pci_address: str
    pci_id: str
    vendor: str | None = None
    name: str | None = None
    numa_node: int | None = None
    local_cpus: list[int] = Field(default_factory=list)
    memory_mb: int | None = None
    memory_used_mb: int | None = None
    process_memory_mb: dict[int, int] = Field(default_factory=dict)
    nvml_index: int | None = None
    description: str | None = None
    sources: dict[str, str] = Field(default_factory=dict)


class NicInfo(_Model):
    name: str
    pci_address: str | None = None
    pci_id: str | None = None
    numa_node: int | None = None
    rx_queues: int = 0
    tx_queues: int = 0
    speed_mbps: int | None = None
    description: str | None = None
    sources: dict[str, str] = Field(default_factory=dict)


class CxlInfo(_Model):
    name: str
    ram_mb: int
    pmem_mb: int
    numa_node: int | None = None
    description: str | None = None


class DaxInfo(_Model):
    name: str
    size_mb: int
    target_node: int | None = None


class DescriptionInfo(_Model):
    name: str
    file: str
    kind: str
    type: str
    summary: str
    advice: str
    properties: dict[str, object]
    matched: list[str]  # what it matched: "node2", "gpu 0000:17:00.0", "nic eth0", "cxl mem0"


class Inventory(_Model):
    schema_: str = Field(default="llamas.inventory/v1", alias="schema")
    host: str
    kernel: str
    sysfs_root: str
    nodes: list[NodeInfo]
    gpus: list[GpuInfo] = Field(default_factory=list)
    nics: list[NicInfo] = Field(default_factory=list)
    cxl: list[CxlInfo] = Field(default_factory=list)
    dax: list[DaxInfo] = Field(default_factory=list)
    descriptions: list[DescriptionInfo] = Field(default_factory=list)
    conflicts: list[Conflict] = Field(default_factory=list)
    described_absent: list[str] = Field(default_factory=list)  # description names
    described_twice: list[str] = Field(default_factory=list)  # "node2: pmem-node2 (hbm-on-package applies)"
    undescribed: list[str] = Field(default_factory=list)  # "node2", "gpu ...", "nic ..."
    description_errors: list[str] = Field(default_factory=list)
    nvml: str = ""  # why NVML is unavailable, when it is

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def node(self, node_id: int) -> NodeInfo | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


# ---- discovery --------------------------------------------------------------------------------

def discover_nodes(root: Path) -> list[NodeInfo]:
    node_tier = tiers.node_tiers(root)
    result = []
    for node in nodes.node_ids(root):
        cpus = nodes.node_cpus(node, root)
        info = NodeInfo(id=node, cpus=cpus, cpu_less=not cpus, memory_mb=nodes.memory_mb(node, root),
                        distances=nodes.distances(node, root))
        info.sources["memory_mb"] = "kernel"
        best = nodes.access(node, 0, root)
        if best is not None:
            info.initiators = best.initiators
            for name in _NUMERIC:
                value = getattr(best, name)
                if value is not None:
                    setattr(info, name, value)
                    info.sources[name] = "kernel"
        if node in node_tier:
            info.tier = node_tier[node]
            info.sources["tier"] = "kernel"
        result.append(info)
    return result


def discover_gpus(root: Path, use_nvml: bool) -> tuple[list[GpuInfo], str]:
    found = {
        d.address: GpuInfo(pci_address=d.address, pci_id=d.pci_id, vendor=pci.VENDORS.get(d.vendor),
                           numa_node=d.numa_node, local_cpus=d.local_cpus,
                           sources={"numa_node": "kernel"} if d.numa_node is not None else {})
        for d in pci.gpus(root)
    }
    status = "not asked: the inventory is read from a captured tree" if not use_nvml else ""
    if use_nvml:
        nvml_gpus, status = nvml.gpus()
        for gpu in nvml_gpus:
            info = found.get(gpu.pci_address)
            if info is None:
                continue
            info.name, info.nvml_index = gpu.name, gpu.index
            info.memory_mb, info.memory_used_mb = gpu.memory_total_mb, gpu.memory_used_mb
            info.process_memory_mb = gpu.process_memory_mb
            info.sources.update(name="nvml", memory_mb="nvml")
            if info.numa_node is None and gpu.numa_node is not None:
                info.numa_node = gpu.numa_node
                info.sources["numa_node"] = "nvml"
    return list(found.values()), status


def discover_nics(root: Path) -> list[NicInfo]:
    return [
        NicInfo(name=n.name, pci_address=n.pci_address, pci_id=n.pci_id, numa_node=n.numa_node,
                rx_queues=n.rx_queues, tx_queues=n.tx_queues, speed_mbps=n.speed_mbps,
                sources={k: "kernel" for k in ("numa_node", "speed_mbps") if getattr(n, k) is not None})
        for n in netdev.nics(root)
    ]


# ---- merging ----------------------------------------------------------------------------------

def _differs(kernel: float, described: float) -> bool:
    return abs(kernel - described) > CONFLICT_RATIO * max(abs(kernel), abs(described))


def _apply(target: BaseModel, label: str, fields: dict[str, object], loaded: LoadedDescription,
           conflicts: list[Conflict]) -> None:
    """Fill a device's values from a description: kernel values stay, disagreements are listed."""
    name = loaded.description.name
    sources: dict[str, str] = target.sources  # type: ignore[attr-defined]
    for field, described in fields.items():
        if described is None:
            continue
        current = getattr(target, field)
        if current is None:
            setattr(target, field, described)
            sources[field] = f"description:{name}"
        elif (sources.get(field) in ("kernel", "nvml") and not isinstance(described, bool)
              and isinstance(described, int | float) and _differs(current, described)):
            conflicts.append(Conflict(device=label, field=field, kernel=current, described=described,
                                      description=name, file=str(loaded.path)))


def _taken(inventory: Inventory, label: str, current: str | None, name: str) -> bool:
    """Whether another description already describes this device; the first one applies."""
    if current is None:
        return False
    inventory.described_twice.append(f"{label}: {name} ({current} applies)")
    return True


def merge(inventory: Inventory, loaded: list[LoadedDescription], errors: list[DescriptionError],
          cxl_devices: list[cxl.CxlMemdev]) -> Inventory:
    matched_labels: set[str] = set()
    for item in loaded:
        desc = item.description
        props = desc.properties
        matched: list[str] = []
        if desc.kind == "memory":
            node_ids = desc.match.numa_nodes
            if desc.match.cxl_memdev is not None:
                memdev = next((m for m in cxl_devices if m.name == desc.match.cxl_memdev), None)
                if memdev is not None:
                    matched.append(f"cxl {memdev.name}")
                    cxl_info = next(c for c in inventory.cxl if c.name == memdev.name)
                    cxl_info.description = desc.name
                    node_ids = [memdev.numa_node] if memdev.numa_node is not None else []
            for node_id in node_ids:
                node = inventory.node(node_id)
                if node is None:
                    continue
                matched.append(f"node{node_id}")
                if _taken(inventory, f"node{node_id}", node.description, desc.name):
                    continue
                node.description, node.type = desc.name, desc.type
                fields = {k: getattr(props, k) for k in _NUMERIC}
                fields.update(persistent=props.persistent, endurance=props.endurance)
                if props.capacity_gb is not None and len(node_ids) == 1:
                    fields["memory_mb"] = int(props.capacity_gb * 1024)
                _apply(node, f"node{node_id}", fields, item, inventory.conflicts)
        elif desc.kind == "gpu":
            for gpu in inventory.gpus:
                if (desc.match.pci_address in (None, gpu.pci_address)
                        and desc.match.pci_id in (None, gpu.pci_id)):
                    matched.append(f"gpu {gpu.pci_address}")
                    if _taken(inventory, f"gpu {gpu.pci_address}", gpu.description, desc.name):
                        continue
                    gpu.description = desc.name
                    memory = int(props.capacity_gb * 1024) if props.capacity_gb is not None else None
                    _apply(gpu, f"gpu {gpu.pci_address}", {"memory_mb": memory}, item, inventory.conflicts)
        else:
            for nic in inventory.nics:
                if (desc.match.nic in (None, nic.name) and desc.match.pci_address in (None, nic.pci_address)
                        and desc.match.pci_id in (None, nic.pci_id)):
                    matched.append(f"nic {nic.name}")
                    if _taken(inventory, f"nic {nic.name}", nic.description, desc.name):
                        continue
                    nic.description = desc.name
                    fields = {"speed_mbps": props.speed_mbps}
                    _apply(nic, f"nic {nic.name}", fields, item, inventory.conflicts)
        matched_labels.update(matched)
        if not matched:
            inventory.described_absent.append(desc.name)
        inventory.descriptions.append(DescriptionInfo(
            name=desc.name, file=str(item.path), kind=desc.kind, type=desc.type, summary=desc.summary,
            advice=desc.advice.strip(), properties=props.model_dump(exclude_none=True), matched=matched))
    present = ([f"node{n.id}" for n in inventory.nodes] + [f"gpu {g.pci_address}" for g in inventory.gpus]
               + [f"nic {n.name}" for n in inventory.nics])
    inventory.undescribed = [label for label in present if label not in matched_labels]
    inventory.description_errors = [str(e) for e in errors]
    _rank_tiers(inventory.nodes)
    return inventory


def _rank_tiers(node_infos: list[NodeInfo]) -> None:
    """Without kernel memory tiers, rank nodes by read latency (unknown counts as fastest)."""
    if any(n.sources.get("tier") == "kernel" for n in node_infos):
        return
    latencies = sorted({n.read_latency_ns or 0 for n in node_infos})
    for node in node_infos:
        node.tier = latencies.index(node.read_latency_ns or 0)
        node.sources["tier"] = "rank"


def discover(root: Path = Path("/"), devices_dir: Path | None = None) -> Inventory:
    live = root == Path("/")
    gpus, nvml_status = discover_gpus(root, use_nvml=live)
    cxl_devices = cxl.memdevs(root)
    inventory = Inventory(
        host=socket.gethostname() if live else f"captured:{root}",
        kernel=os.uname().release if live else _captured_release(root),
        sysfs_root=str(root),
        nodes=discover_nodes(root),
        gpus=gpus,
        nics=discover_nics(root),
        cxl=[CxlInfo(name=m.name, ram_mb=m.ram_bytes >> 20, pmem_mb=m.pmem_bytes >> 20, numa_node=m.numa_node)
             for m in cxl_devices],
        dax=[DaxInfo(name=d.name, size_mb=d.size_bytes >> 20, target_node=d.target_node)
             for d in cxl.dax_devices(root)],
        nvml=nvml_status,
    )
    loaded, errors = load_dir(devices_dir)
    return merge(inventory, loaded, errors, cxl_devices)


def _captured_release(root: Path) -> str:
    release = root / "proc/sys/kernel/osrelease"
    return release.read_text().strip() if release.exists() else "unknown"

