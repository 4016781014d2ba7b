"""What this kernel lets us attach, found by trying (bpfsys.try_load) rather than by reading
the config: a program type is available when the kernel loads a program of that type."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamas_ebpf.kernel import bpfsys, btf, damon, headers, pagemap, tracefs

# Attach targets whose presence in BTF we check for tracing/LSM programs.
FENTRY_TARGET = "task_numa_fault"
LSM_TARGET = "bpf_lsm_file_open"


@dataclass(frozen=True)
class Feature:
    available: bool
    reason: str = ""  # why not, when not; how, when it matters


@dataclass
class Capabilities:
    root: Feature
    bpf: Feature
    btf: Feature
    headers: Feature
    program_types: dict[str, Feature] = field(default_factory=dict)
    kprobes: Feature = Feature(False, "not probed")
    uprobes: Feature = Feature(False, "not probed")
    tracepoints: set[str] = field(default_factory=set)  # "category:event" present in tracefs
    damon: damon.Survey = field(default_factory=lambda: damon.Survey(False, "not probed"))  # and who uses it
    soft_dirty: Feature = Feature(False, "not probed")  # /proc/PID/clear_refs 4 and pagemap bit 55

    def has_tracepoint(self, name: str) -> bool:
        return name in self.tracepoints

    def program(self, prog_type: str) -> Feature:
        return self.program_types.get(prog_type, Feature(False, "not probed"))

    def to_dict(self) -> dict[str, Any]:
        def f(feature: Feature) -> dict[str, Any]:
            return {"available": feature.available, "reason": feature.reason}

        return {
            "root": f(self.root),
            "bpf": f(self.bpf),
            "btf": f(self.btf),
            "headers": f(self.headers),
            "program_types": {k: f(v) for k, v in sorted(self.program_types.items())},
            "kprobes": f(self.kprobes),
            "uprobes": f(self.uprobes),
            "damon": {"available": self.damon.available, "reason": self.damon.reason,
                      "operations": sorted(self.damon.operations), "auto_tune": self.damon.auto_tune,
                      "kdamonds": [{"index": k.index, "state": k.state, "pid": k.pid,
                                    "operations": list(k.operations)} for k in self.damon.kdamonds]},
            "soft_dirty": f(self.soft_dirty),
        }


WATCHED_CATEGORIES = ("exceptions", "kmem", "migrate", "sched", "dma_fence", "gpu_scheduler", "damon")


def probe(tracing_root: Path = tracefs.TRACEFS) -> Capabilities:
    """Probe the running kernel. Needs root for the program loads; reports not-root otherwise."""
    is_root = os.geteuid() == 0
    root = Feature(is_root, "" if is_root else "not root: BPF programs need CAP_BPF and CAP_PERFMON")
    hdr = headers.discover()
    caps = Capabilities(
        root=root,
        bpf=Feature(False, "not probed"),
        btf=Feature(btf.VMLINUX.exists(), "" if btf.VMLINUX.exists() else f"{btf.VMLINUX} missing"),
        headers=Feature(hdr.path is not None, hdr.describe()),
    )
    if not is_root:
        caps.bpf = Feature(False, root.reason)
        return caps
    for category in WATCHED_CATEGORIES:
        caps.tracepoints.update(f"{category}:{e}" for e in tracefs.list_events(category, tracing_root))
    caps.kprobes = _tracefs_feature(tracing_root / "kprobe_events", "kprobes (CONFIG_KPROBES)")
    caps.uprobes = _tracefs_feature(tracing_root / "uprobe_events", "uprobes (CONFIG_UPROBE_EVENTS)")
    caps.damon = damon.survey()
    caps.soft_dirty = Feature(*pagemap.soft_dirty_supported())
    socket = bpfsys.try_load("socket_filter")
    caps.bpf = Feature(socket.ok, socket.reason or "bpf(2) loads programs")
    if not socket.ok:
        return caps
    for prog_type in ("tracepoint", "raw_tracepoint", "perf_event", "kprobe"):
        result = bpfsys.try_load(prog_type)
        caps.program_types[prog_type] = Feature(result.ok, result.reason)
    ids = btf.function_ids({FENTRY_TARGET, LSM_TARGET}) if caps.btf.available else {}
    caps.program_types["tracing"] = _btf_program(
        "tracing", bpfsys.BPF_TRACE_FENTRY, ids.get(FENTRY_TARGET), FENTRY_TARGET, caps.btf
    )
    caps.program_types["lsm"] = _btf_program(
        "lsm", bpfsys.BPF_LSM_MAC, ids.get(LSM_TARGET), LSM_TARGET, caps.btf
    )
    return caps


def _tracefs_feature(control: Path, what: str) -> Feature:
    if control.exists():
        return Feature(True, "")
    return Feature(False, f"{what} not in this kernel: {control} is missing")


def _btf_program(
    prog_type: str, attach_type: int, btf_id: int | None, target: str, btf_feature: Feature
) -> Feature:
    if not btf_feature.available:
        return Feature(False, f"{prog_type} programs need kernel BTF: {btf_feature.reason}")
    if btf_id is None:
        return Feature(False, f"{target} is not in the kernel's BTF")
    result = bpfsys.try_load(prog_type, attach_type, btf_id)
    if result.ok:
        return Feature(True, f"loaded a {prog_type} program on {target}")
    return Feature(False, f"the kernel refuses {prog_type} programs on {target} ({result.reason})")
