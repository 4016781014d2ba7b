"""CXL memory devices (/sys/bus/cxl/devices/memN) and DAX devices (/sys/bus/dax/devices/daxX.Y),
the two ways expander and persistent memory show up before (or instead of) a NUMA node."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from llamas_ebpf.kernel.nodes import read_int

_MEMDEV = re.compile(r"mem\d+$")
_DAX = re.compile(r"dax\d+\.\d+$")


@dataclass(frozen=True)
class CxlMemdev:
    name: str
    ram_bytes: int
    pmem_bytes: int
    numa_node: int | None
    serial: int | None


@dataclass(frozen=True)
class DaxDevice:
    name: str
    size_bytes: int
    target_node: int | None  # the node its memory joins when onlined as system RAM


def memdevs(root: Path = Path("/")) -> list[CxlMemdev]:
    base = root / "sys/bus/cxl/devices"
    if not base.is_dir():
        return []
    result = []
    for entry in sorted(base.iterdir()):
        if not _MEMDEV.match(entry.name):
            continue
        node = read_int(entry / "numa_node")
        result.append(CxlMemdev(
            name=entry.name,
            ram_bytes=read_int(entry / "ram/size") or 0,
            pmem_bytes=read_int(entry / "pmem/size") or 0,
            numa_node=node if node is not None and node >= 0 else None,
            serial=read_int(entry / "serial"),
        ))
    return result


def dax_devices(root: Path = Path("/")) -> list[DaxDevice]:
    base = root / "sys/bus/dax/devices"
    if not base.is_dir():
        return []
    result = []
    for entry in sorted(base.iterdir()):
        if not _DAX.match(entry.name):
            continue
        node = read_int(entry / "target_node")
        result.append(DaxDevice(
            name=entry.name,
            size_bytes=read_int(entry / "size") or 0,
            target_node=node if node is not None and node >= 0 else None,
        ))
    return result
