"""PCI devices from /sys/bus/pci/devices: class, ids, NUMA node and the CPUs near them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llamas_ebpf.kernel import cpulist
from llamas_ebpf.kernel.nodes import read_int

# PCI base classes of compute devices: 0x03 display (VGA 0x0300, 3D 0x0302), 0x12 accelerators
GPU_BASE_CLASSES = (0x03, 0x12)
VENDORS = {0x10DE: "NVIDIA", 0x1002: "AMD", 0x8086: "Intel"}


@dataclass(frozen=True)
class PciDevice:
    address: str
    pci_class: int
    vendor: int
    device: int
    numa_node: int | None  # None where the firmware gives none (-1)
    local_cpus: list[int]

    @property
    def pci_id(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"


def read_device(path: Path) -> PciDevice:
    node = read_int(path / "numa_node")
    local = path / "local_cpulist"
    return PciDevice(
        address=path.name,
        pci_class=read_int(path / "class") or 0,
        vendor=read_int(path / "vendor") or 0,
        device=read_int(path / "device") or 0,
        numa_node=node if node is not None and node >= 0 else None,
        local_cpus=cpulist.parse(local.read_text()) if local.exists() else [],
    )


def devices(root: Path = Path("/")) -> list[PciDevice]:
    base = root / "sys/bus/pci/devices"
    if not base.is_dir():
        return []
    return [read_device(p) for p in sorted(base.iterdir())]


def gpus(root: Path = Path("/")) -> list[PciDevice]:
    return [d for d in devices(root) if d.pci_class >> 16 in GPU_BASE_CLASSES]
