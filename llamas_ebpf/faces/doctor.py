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
        lines.append(f"  {name:<13} {probe['status']:<12} {method:<20} {safe(probe['reason'])}")
    access = report.get("access")
    if access:
        lines.append(f"access   {access['method'] or 'none'}"
                     + (f" ({safe(access['scope'])})" if access.get("scope") else ""))
        if access.get("why"):
            lines.append(f"         not better because: {safe(access['why'])}")
        damon = caps.get("damon", {})
        for k in damon.get("kdamonds", []):
            lines.append(f"         kdamond {k['index']} {k['state']} {'/'.join(k['operations']) or '-'}"
                         + (f" pid {k['pid']}" if k.get("pid") else ""))
        lines.append(f"written  {safe(access['written'])}")
    build = report["build"]
    together = ", ".join(build["shared_object"]) or "none"
    lines.append(f"build    {build['seconds']} s; one BPF object for: {together}")
    if build["note"]:
        lines.append(f"         {safe(build['note'])}")
    placed = report.get("placement")
    if placed:
        lines.append("placement back ends:")
        for name, what in placed["back_ends"].items():
            lines.append(f"  {name:<23} {what}")
        if placed["generation"] is not None:
            lines.append(f"  generation {placed['generation']}, pages moved by rule:"
                         + ("" if placed["served_by"] else " none yet"))
        for rule, by in sorted(placed["served_by"].items()):
            moved = ", ".join(f"{safe(backend)} {pages:,}" for backend, pages in sorted(by.items()))
            lines.append(f"  {safe(rule):<23} {moved}")
    return "\n".join(lines)
