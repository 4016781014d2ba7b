"""Network interfaces: links through pyroute2 (rtnetlink) on the live host, sysfs under a fixture
root; the NUMA node of the device behind each, and its queue counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llamas_ebpf.kernel.nodes import read_int
from llamas_ebpf.kernel.pci import PciDevice, read_device


@dataclass(frozen=True)
class Nic:
    name: str
    numa_node: int | None
    pci_address: str | None
    pci_id: str | None  # vendor:device
    rx_queues: int
    tx_queues: int
    speed_mbps: int | None
    address: str | None


def _link_names(root: Path) -> list[str]:
    if root == Path("/"):
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
    base = root / "sys/class/net"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def _pci_function(device: Path, root: Path) -> PciDevice | None:
    """The PCI function behind an interface: the first directory up from its device with a
    numa_node (a virtio or USB device sits below the PCI function that has one)."""
    try:
        current = device.resolve()
    except OSError:
        return None
    stop = (root / "sys").resolve()
    while current != stop and current != current.parent:
        if (current / "numa_node").exists() and (current / "vendor").exists():
            return read_device(current)
        current = current.parent
    return None


def nics(root: Path = Path("/")) -> list[Nic]:
    """Interfaces backed by a device (loopback and virtual links have no `device`)."""
    result = []
    for name in _link_names(root):
        base = root / "sys/class/net" / name
        device = base / "device"
        if not device.exists():
            continue
        function = _pci_function(device, root)
        queues = base / "queues"
        names = [p.name for p in queues.iterdir()] if queues.is_dir() else []
        speed = read_int(base / "speed")
        address = (base / "address").read_text().strip() if (base / "address").exists() else None
        result.append(Nic(
            name=name,
            numa_node=function.numa_node if function else None,
            pci_address=function.address if function else None,
            pci_id=function.pci_id if function else None,
            rx_queues=sum(1 for n in names if n.startswith("rx-")),
            tx_queues=sum(1 for n in names if n.startswith("tx-")),
            speed_mbps=speed if speed is not None and speed > 0 else None,
            address=address,
        ))
    return result
