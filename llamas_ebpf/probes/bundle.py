"""One BPF object for all the sensor's probes: their sources compiled as one text.

BCC runs clang once per object, and most of a compile is the fixed cost of parsing BCC's helpers
and the kernel headers: on the host five probes take 3.0 s compiled apart and 0.75 s as one text,
and under TCG in the lab each compile costs 12 to 15 s. So the sensor compiles every probe that
has a source, each under its first method the capabilities allow, as one text. Each part keeps
its own macros (defined before it, undefined after), its own maps and its own programs; the
names are unique across bpf/ (bpf/llamas.h).

The bundle is an optimisation, never a change in what loads: when it fails to compile, load or
bind, it is torn down whole and every probe goes through its own chain alone, as before, with
the bundle's error added to its reasons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamas_ebpf.kernel.features import Capabilities
from llamas_ebpf.probes.base import (
    Probe,
    ProgramSource,
    bpf_source,
    compile_bpf,
    one_line,
    plan,
    program_name,
)
from llamas_ebpf.snapshot import ProbeHealth

# The programs BCC loads and attaches by itself, named by its macros (helpers.h); the kfunc
# prefix gained "vmlinux__" in later BCC releases.
_AUTOLOADED = (
    (re.compile(r"\bRAW_TRACEPOINT_PROBE\(\s*(\w+)\s*\)"), ("raw_tracepoint__{0}",)),
    (re.compile(r"\bTRACEPOINT_PROBE\(\s*(\w+)\s*,\s*(\w+)\s*\)"), ("tracepoint__{0}__{1}",)),
    (re.compile(r"\bKFUNC_PROBE\(\s*(\w+)"), ("kfunc__{0}", "kfunc__vmlinux__{0}")),
    (re.compile(r"\bKRETFUNC_PROBE\(\s*(\w+)"), ("kretfunc__{0}", "kretfunc__vmlinux__{0}")),
)


def autoloaded_names(text: str) -> set[str]:
    """The names of the programs BCC loads and attaches by itself from this source text."""
    names: set[str] = set()
    for pattern, forms in _AUTOLOADED:
        for match in pattern.finditer(text):
            names.update(form.format(*match.groups()) for form in forms)
    return names


@dataclass
class Part:
    probe: Probe
    method: str
    position: int  # of the method in the probe's chain
    reasons: list[str]  # why the methods before it were not tried
    source: ProgramSource
    text: str = ""


@dataclass
class Bundle:
    """What the sensor's shared build did: the object (None when it was not built), the health
    of each probe it carries, and, when it was not used, why."""

    bpf: Any = None
    health: dict[str, ProbeHealth] = field(default_factory=dict)
    tried: list[str] = field(default_factory=list)  # the probes it was built for
    note: str = ""

    def close(self) -> None:
        if self.bpf is not None:
            try:
                self.bpf.cleanup()
            finally:
                self.bpf = None


def part_text(bpf_dir: Path, part: Part) -> str:
    macros = [d.split("=", 1) for d in part.source.defines]
    lines = [f"/* ---- {part.source.file}: the {part.probe.name} probe, {part.method} ---- */"]
    lines += [f"#define {name} {value[0] if value else ''}".rstrip() for name, *value in macros]
    lines.append(bpf_source(bpf_dir, part.source.file))
    lines += [f"#undef {name}" for name, *_ in macros]
    return "\n".join(lines)


def _parts(probes: list[Probe], caps: Capabilities) -> list[Part]:
    """Each probe's first allowed method and its source, for the probes that have one."""
    parts = []
    for probe in probes:
        probe.prepare(caps)
        reasons: list[str] = []
        for position, (method, blocker) in enumerate(plan(probe.chain, caps)):
            if blocker is not None:
                reasons.append(f"{method.name}: {blocker}")
                continue
            try:
                source = probe.source(method.name)
            except Exception:  # a precondition: the probe's own attach says it in its health
                source = None
            if source is not None:
                parts.append(Part(probe, method.name, position, reasons, source))
            break
    return parts


def source_text(probes: list[Probe], caps: Capabilities, bpf_dir: Path) -> str:
    """The BPF C the sensor would compile for these probes, as one text (--ebpf)."""
    parts = _parts(probes, caps)
    return "\n\n".join(part_text(bpf_dir, part) for part in parts)


def build(probes: list[Probe], caps: Capabilities, bpf_dir: Path) -> Bundle:
    """Compile, load and bind the probes that can share one object. A probe the bundle does not
    carry is left untouched, for its own attach()."""
    parts = _parts(probes, caps)
    if len(parts) < 2:
        return Bundle()
    for part in parts:
        part.text = part_text(bpf_dir, part)
    tried = [part.probe.name for part in parts]
    names = ", ".join(tried)
    try:
        bpf = compile_bpf(bpf_dir, None, text="\n\n".join(part.text for part in parts))
    except Exception as exc:
        return Bundle(tried=tried, note=f"one object for {names} did not load: {one_line(exc)}")
    bundle = Bundle(bpf=bpf, tried=tried)
    loaded = {program_name(name) for name in bpf.funcs}
    try:
        for part in parts:
            probe = part.probe
            probe.bpf, probe.owns_bpf = bpf, False
            before = set(bpf.funcs)
            probe.bind(part.method)
            added = {program_name(name) for name in set(bpf.funcs) - before}
            probe.programs = (autoloaded_names(part.text) & loaded) | added
            bundle.health[probe.name] = probe.loaded(part.method, part.position, part.reasons)
    except Exception as exc:
        failed = part.probe.name
        for each in parts:
            each.probe.close()
            each.probe.method = None
        bundle.close()
        return Bundle(tried=tried, note=f"one object for {names} did not bind {failed}: {one_line(exc)}")
    return bundle
