"""`llamas doctor` as text: the kernel, its headers, program types, and each probe's method."""

from __future__ import annotations

from typing import Any

from llamas_ebpf.faces.text import safe


def render(report: dict[str, Any]) -> str:
    lines = [f"kernel   {report['kernel']}", f"headers  {report['headers']['note']}"]
    lines += [f"mounted  {what}" for what in report["mounted_now"]]
    caps = report["capabilities"]
    lines.append("program types:")
    for name, feature in caps["program_types"].items():
        mark = "yes" if feature["available"] else "no "
        lines.append(f"  {name:<15} {mark} {feature['reason']}")
    for name in ("kprobes", "uprobes"):
        feature = caps[name]
        lines.append(f"  {name:<15} {'yes' if feature['available'] else 'no '} {feature['reason']}")
    lines.append("probes:")
    for name, probe in report["probes"].items():
        method = probe["method"] or "-"
        lines.append(f"  {name:<13} {probe['status']:<12} {method:<18} {safe(probe['reason'])}")
    build = report["build"]
    together = ", ".join(build["shared_object"]) or "none"
    lines.append(f"build    {build['seconds']} s; one BPF object for: {together}")
    if build["note"]:
        lines.append(f"         {safe(build['note'])}")
    return "\n".join(lines)
