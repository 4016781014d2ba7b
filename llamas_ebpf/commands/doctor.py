"""`llamas doctor`: what this kernel supports (found by loading real programs), the headers BCC
uses, and which attach method each probe took and why."""

from __future__ import annotations

import json
import os
from typing import Any

from llamas_ebpf.commands.common import EbpfFlag, JsonFlag


def report() -> dict[str, Any]:
    from llamas_ebpf.kernel import features, headers, mounts
    from llamas_ebpf.sense import Sensor, require_bpf

    mounted = mounts.ensure_mounted() if os.geteuid() == 0 else []
    caps = features.probe()
    require_bpf(caps)
    hdr = headers.discover()
    with Sensor(bpf_stats=False) as sensor:
        probes = {
            name: {"method": h.method, "status": h.status, "reason": h.reason}
            for name, h in sensor.health.items()
        }
        health = sensor.health.get("access")
        fallback = sensor._access_fallback() if health is not None and health.method is None else None
        access = {
            "method": health.method if health is not None and health.method else
                      (fallback.method if fallback else None),
            "scope": ("per process" if health is not None and health.method == "damon-vaddr"
                      else "host-wide" if health is not None and health.method else
                      (fallback.scope if fallback else None)),
            "why": health.reason if health is not None else "",
            "written": "soft-dirty" if caps.soft_dirty.available else
                       f"write faults (soft-dirty unavailable: {caps.soft_dirty.reason})",
        }
        build = {
            "shared_object": list(sensor.bundle.health),
            "note": sensor.bundle.note,
            "seconds": round(sensor.build_s, 2),
        }
    return {
        "kernel": os.uname().release,
        "headers": {
            "path": str(hdr.path) if hdr.path else None,
            "release": hdr.release,
            "matches_running_kernel": hdr.matches,
            "note": hdr.describe(),
        },
        "mounted_now": mounted,
        "capabilities": caps.to_dict(),
        "probes": probes,
        "access": access,
        "build": build,
        "placement": placement(),
    }


def placement() -> dict[str, Any]:
    """The page placement back ends this kernel offers, and which of them served each rule of
    the generation in force (the audit log's latest `placed` line for it)."""
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.policy.state import AuditLog, PolicyState

    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    damos = ("in this kernel (6.11+), not used: it moves physical pages and records no page's "
             "former node, so llamas could neither journal nor roll back its moves"
             if release >= (6, 11) else "not in this kernel (6.11+)")
    back_ends = {
        "migrate_pages": "a whole process's pages home in one call, where its rule's budget covers them",
        "move_pages": "regions by heat (DAMON), mappings (smaps), cold mappings down; in budgeted batches",
        "damos_migrate_hot_cold": damos,
    }
    served: dict[str, dict[str, int]] = {}
    generation = None
    state_dir = Paths.from_env().state_dir
    if os.access(state_dir, os.R_OK):
        state = PolicyState.load(state_dir)
        generation = state.generation if state.document is not None else None
        placed = [e for e in AuditLog(state_dir).entries()
                  if e.get("event") == "placed" and e.get("generation") == generation]
        if placed and isinstance(placed[-1].get("served_by"), dict):
            served = placed[-1]["served_by"]
    return {"back_ends": back_ends, "generation": generation, "served_by": served}


def doctor(json_out: JsonFlag = False, ebpf: EbpfFlag = False) -> None:
    """What this kernel supports, and which attach method each probe uses and why."""
    from llamas_ebpf.faces import doctor as face
    from llamas_ebpf.sense import program_text

    if ebpf:
        print(program_text())
        return
    data = report()
    print(json.dumps(data, indent=2) if json_out else face.render(data))
