"""Memory tiers as the kernel built them (/sys/devices/virtual/memory_tiering/memory_tierN).

A tier's id grows with its abstract distance, so a higher id is a slower tier.
"""

from __future__ import annotations

import re
from pathlib import Path

from llamas_ebpf.kernel import cpulist

_TIER = re.compile(r"memory_tier(\d+)$")


def node_tiers(root: Path = Path("/")) -> dict[int, int]:
    """node -> memory tier id."""
    base = root / "sys/devices/virtual/memory_tiering"
    result: dict[int, int] = {}
    if not base.is_dir():
        return result
    for entry in base.iterdir():
        match = _TIER.match(entry.name)
        if match and (entry / "nodelist").exists():
            for node in cpulist.parse((entry / "nodelist").read_text()):
                result[node] = int(match.group(1))
    return result
