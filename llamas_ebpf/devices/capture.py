"""`llamas devices --capture DIR`: copy the sysfs files the inventory reads into DIR, laid out as
under `/`, so that `llamas devices --sysfs-root DIR` shows the same host elsewhere (to share,
diff, or test against). Symbolic links become plain files and directories, except a network
interface's `device` (a relative link to its PCI function). A node's HMAT initiators become empty
files named after them. Nothing is left as an empty directory, which git would drop."""

from __future__ import annotations

import os
from pathlib import Path

from llamas_ebpf.kernel import netdev

_NODE_FILES = ("cpulist", "meminfo", "distance", "numastat")
_ACCESS_FILES = ("read_latency", "write_latency", "read_bandwidth", "write_bandwidth")
_PCI_FILES = ("class", "vendor", "device", "numa_node", "local_cpulist")


def _copy(root: Path, dest: Path, relative: str) -> bool:
    source = root / relative
    try:
        data = source.read_bytes()
    except OSError:
        return False
    target = dest / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return True


def capture(dest: Path, root: Path = Path("/")) -> int:
    """Write the tree; returns how many files were copied."""
    copied = 0
    nodes_dir = "sys/devices/system/node"
    for name in ("online", "possible", "has_cpu", "has_memory"):
        copied += _copy(root, dest, f"{nodes_dir}/{name}")
    for node_dir in sorted((root / nodes_dir).glob("node[0-9]*")):
        rel = f"{nodes_dir}/{node_dir.name}"
        copied += sum(_copy(root, dest, f"{rel}/{f}") for f in _NODE_FILES)
        for access in sorted(node_dir.glob("access[0-9]")):
            initiators = access / "initiators"
            target = dest / rel / access.name / "initiators"
            target.mkdir(parents=True, exist_ok=True)
            copied += sum(_copy(root, dest, f"{rel}/{access.name}/initiators/{f}") for f in _ACCESS_FILES)
            for initiator in initiators.glob("node[0-9]*"):
                # Only the name is read. An empty file, not sysfs's link to the node: git drops
                # empty directories, and a link back up the tree is a cycle for anything that
                # walks it following links (setuptools' file listing does).
                (target / initiator.name).touch()
    for tier in sorted((root / "sys/devices/virtual/memory_tiering").glob("memory_tier*")):
        copied += _copy(root, dest, f"sys/devices/virtual/memory_tiering/{tier.name}/nodelist")
    for device in sorted((root / "sys/bus/pci/devices").glob("*")):
        copied += sum(_copy(root, dest, f"sys/bus/pci/devices/{device.name}/{f}") for f in _PCI_FILES)
    for nic in netdev.nics(root):
        rel = f"sys/class/net/{nic.name}"
        copied += sum(_copy(root, dest, f"{rel}/{f}") for f in ("address", "speed", "operstate"))
        for queue in sorted((root / rel / "queues").glob("[rt]x-*")):
            mask = "rps_cpus" if queue.name.startswith("rx-") else "xps_cpus"
            if not _copy(root, dest, f"{rel}/queues/{queue.name}/{mask}"):
                # An unreadable mask still leaves a file, so the queue is counted after a git clone.
                (dest / rel / "queues" / queue.name).mkdir(parents=True, exist_ok=True)
                (dest / rel / "queues" / queue.name / mask).write_text("")
        link = dest / rel / "device"
        if nic.pci_address is not None and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f"../../../bus/pci/devices/{nic.pci_address}", link)
    for memdev in sorted((root / "sys/bus/cxl/devices").glob("mem[0-9]*")):
        rel = f"sys/bus/cxl/devices/{memdev.name}"
        files = ("ram/size", "pmem/size", "numa_node", "serial")
        copied += sum(_copy(root, dest, f"{rel}/{f}") for f in files)
    for dax in sorted((root / "sys/bus/dax/devices").glob("dax*")):
        rel = f"sys/bus/dax/devices/{dax.name}"
        copied += sum(_copy(root, dest, f"{rel}/{f}") for f in ("size", "target_node"))
    copied += _copy(root, dest, "proc/sys/kernel/osrelease")
    return copied
