"""`llamas audit`: a one-shot placement report to hand to a colleague.

The report (a dict[str, Any], the JSON format as is) holds: the host and its kernel capabilities, the
device inventory with its conflicts, findings ranked by estimated impact with the evidence for
each, the advisor's recommended policy (validated here, not applied) with the command that
applies it, and the advisor's usage. Markdown and HTML are renderings of it; the HTML is one
self-contained file, its charts inline SVG, nothing fetched from anywhere.

The findings themselves are analysis, not rendering: llamas_ebpf.advise.findings. This module
only shapes and renders the report; it does no kernel I/O.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from typing import Any

from llamas_ebpf import metrics
from llamas_ebpf.advise.base import Advice
from llamas_ebpf.advise.findings import findings, kernel_alternative
from llamas_ebpf.advise.summary import WindowSummary
from llamas_ebpf.devices.inventory import Inventory
from llamas_ebpf.faces.text import mib, safe
from llamas_ebpf.snapshot import Snapshot

SECTION_COLORS = {  # each section's marker; tests find these colours in the rendered page
    "host": "#1f77b4", "inventory": "#2ca02c", "findings": "#d62728", "policy": "#9467bd", "usage": "#ff7f0e",
}
NODE_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"]


def locality_series(snaps: list[Snapshot]) -> list[dict[str, Any]]:
    series = []
    for snap in snaps:
        local = sum(p.numa.alloc_local for p in snap.counted)
        remote = sum(p.numa.alloc_remote for p in snap.counted)
        hl = sum(p.numa.hint_local or 0 for p in snap.counted)
        hr = sum(p.numa.hint_remote or 0 for p in snap.counted)
        series.append({"time": snap.time,
                       "alloc_local_pct": round(100 * (1 - metrics.remote_alloc_fraction(local, remote)), 1)
                       if local + remote else None,
                       "hint_local_pct": round(100 * (1 - metrics.remote_hint_fraction(hl, hr)), 1)
                       if hl + hr else None})
    return series


def build(window: WindowSummary, snaps: list[Snapshot], inventory: Inventory, capabilities: dict[str, Any],
          advice: Advice, checked_errors: list[str], policy: dict[str, Any] | None,
          policy_path: str | None, balancing_now: int | None = None) -> dict[str, Any]:
    apply = (f"llamas policy apply {policy_path}" if policy_path
             else "save `policy` to a file, then: llamas policy apply FILE")
    top = [p for p in window.processes[:12] if p.pages_by_node]
    return {
        "schema": "llamas.audit/v1",
        "host": {"name": inventory.host, "kernel": inventory.kernel, "capabilities": capabilities,
                 "window_seconds": window.seconds, "snapshots": len(snaps),
                 "processes_seen": window.process_count, "processes_left_out": window.left_out,
                 "probes": window.probes},
        "inventory": json.loads(inventory.model_dump_json(by_alias=True)),
        "findings": findings(window, inventory, policy),
        "policy": policy,
        "kernel_alternative": kernel_alternative(inventory, policy, balancing_now),
        "policy_valid": not checked_errors and policy is not None,
        "policy_errors": checked_errors,
        "apply_command": apply if policy and not checked_errors else None,
        "advisor": {"name": advice.advisor, "rationale": advice.rationale, "explanations": advice.explanations,
                    "usage": advice.usage.to_dict(), "unavailable": advice.unavailable},
        "charts": {
            "pages_by_node": [{"pid": p.pid, "comm": safe(p.comm, 16),
                               "pages": p.pages_by_node} for p in top],
            "locality": locality_series(snaps),
            "heatmap": heatmap(snaps, window),
            "access": access_charts(snaps),
        },
    }


ACCESS_HEATMAPS = 4  # processes with an access heatmap: the most hot bytes first
HEAT_ROWS, HEAT_COLUMNS = 32, 60


def access_charts(snaps: list[Snapshot]) -> dict[str, Any]:
    """How access was seen, hot/warm/cold bytes per node at the end of the window, and for the
    processes with the most hot bytes a damo-style heatmap: address (their resident ranges, gaps
    left out) by time, shaded by DAMON's accesses per aggregation."""
    info = next((s.access for s in reversed(snaps) if s.access is not None), None)
    last = next((s for s in reversed(snaps) if any(n.hot_bytes is not None for n in s.nodes)), None)
    nodes = ([{"node": n.id, "hot": n.hot_bytes, "warm": n.warm_bytes, "cold": n.cold_bytes, "free_mb": n.free_mb}
              for n in last.nodes] if last is not None else [])
    hottest: dict[int, int] = {}
    comms: dict[int, str] = {}
    for snap in snaps:
        for p in snap.processes:
            if p.access is not None:
                hottest[p.pid] = max(hottest.get(p.pid, 0), p.access.hot_bytes)
                comms[p.pid] = p.comm
    processes = []
    for pid in sorted(hottest, key=lambda q: -hottest[q])[:ACCESS_HEATMAPS]:
        processes.append(_process_heatmap(pid, safe(comms[pid], 16), snaps))
    return {"method": info.method if info else None, "scope": info.scope if info else None,
            "reason": info.reason if info else None,
            "hot_min_accesses": info.hot_min_accesses if info else None,
            "cold_min_age_s": info.cold_min_age_s if info else None,
            "nodes": nodes, "processes": processes}


def _process_heatmap(pid: int, comm: str, snaps: list[Snapshot]) -> dict[str, Any]:
    frames = [(s.time, s.process(pid)) for s in snaps]
    seen = [(t, p.access) for t, p in frames if p is not None and p.access is not None]
    ranges = sorted({(r.start, r.end) for _t, a in seen for r in a.regions if sum(r.bytes_by_node.values())})
    segments: list[list[int]] = []
    for start, end in ranges:
        if segments and start <= segments[-1][1]:
            segments[-1][1] = max(segments[-1][1], end)
        else:
            segments.append([start, end])
    total = sum(end - start for start, end in segments)
    addresses: list[int] = []
    for row in range(HEAT_ROWS if total else 0):
        offset = (row + 0.5) * total / HEAT_ROWS
        for start, end in segments:
            if offset < end - start:
                addresses.append(int(start + offset))
                break
            offset -= end - start
    step = max(1, -(-len(seen) // HEAT_COLUMNS))
    columns = seen[::step]
    cells = [[next((r.accesses for r in a.regions if r.start <= address < r.end), 0.0) for _t, a in columns]
             for address in addresses]
    last = seen[-1][1] if seen else None
    return {"pid": pid, "comm": comm, "times": [t for t, _a in columns], "addresses": [hex(a) for a in addresses],
            "cells": cells,
            "hot_bytes_by_node": last.hot_bytes_by_node if last else {},
            "cold_bytes_by_node": last.cold_bytes_by_node if last else {}}


def heatmap(snaps: list[Snapshot], window: WindowSummary) -> dict[str, Any]:
    """Faults per 2 MiB region for processes whose regions were counted; else faults per node per
    interval (the probes count regions only for watched or managed processes)."""
    regions: dict[tuple[int, int], int] = {}
    for snap in snaps:
        for p in snap.processes:
            for r in p.regions:
                regions[(p.pid, r.start)] = regions.get((p.pid, r.start), 0) + r.reads + r.writes
    if regions:
        pids = sorted({pid for pid, _ in regions}, key=lambda pid: -sum(v for (q, _), v in regions.items()
                                                                           if q == pid))[:8]
        rows = []
        for pid in pids:
            mine = sorted(((start, v) for (q, start), v in regions.items() if q == pid), key=lambda x: -x[1])[:48]
            mine.sort()
            rows.append({"label": f"pid {pid}", "cells": [v for _, v in mine],
                         "columns": [hex(start) for start, _ in mine]})
        return {"kind": "regions", "rows": rows}
    nodes = sorted({n.id for snap in snaps for n in snap.nodes})
    rows = [{"label": f"node {n}", "cells": [next((x.faults for x in s.nodes if x.id == n), 0) for s in snaps]}
            for n in nodes]
    return {"kind": "nodes-over-time", "rows": rows}


def _by_node_mib(by_node: dict[Any, int]) -> str:
    return ", ".join(f"{node}: {size / (1 << 20):.0f}" for node, size in sorted(by_node.items())) or "none"


# ---- Markdown ----
def _md(text: object) -> str:
    return safe(str(text)).replace("|", "\\|").replace("<", "&lt;")


def _left_out(host: dict[str, Any]) -> str:
    left = host.get("processes_left_out") or 0
    return f" (and up to {left} a snapshot, not among the busiest, counted only as a sum)" if left else ""


def to_markdown(report: dict[str, Any]) -> str:
    host = report["host"]
    lines = [f"# Placement audit: {_md(host['name'])}", "",
             "## Host and kernel", "",
             f"- kernel {_md(host['kernel'])}; observed {host['window_seconds']:g} s in {host['snapshots']} "
             f"snapshots, {host['processes_seen']} processes{_left_out(host)}",
             "- probes: " + ", ".join(f"{k} ({_md(v)})" for k, v in sorted(host["probes"].items())),
             "- capabilities: " + ", ".join(f"{k}: {'yes' if v.get('available') else 'no'}"
                                            for k, v in sorted(report["host"]["capabilities"].items())
                                            if isinstance(v, dict) and "available" in v), "",
             "## Devices", "", "| node | CPUs | MiB | tier | read ns | write ns | description |",
             "|---|---|---|---|---|---|---|"]
    inv = report["inventory"]
    for n in inv["nodes"]:
        lines.append(f"| {n['id']} | {_md(','.join(map(str, n['cpus'])) or '-')} | {n.get('memory_mb') or '-'} | "
                     f"{n.get('tier') if n.get('tier') is not None else '-'} | {n.get('read_latency_ns') or '-'} | "
                     f"{n.get('write_latency_ns') or '-'} | {_md(n.get('description') or '')} |")
    for g in inv.get("gpus", []):
        lines.append(f"- GPU {_md(g['pci_address'])} {_md(g.get('name') or '')} on node {g.get('numa_node')}")
    if inv.get("conflicts"):
        lines += ["", "Conflicts between descriptions and the kernel:"]
        lines += [f"- {_md(c['device'])} {_md(c['field'])}: kernel {c['kernel']:g}, described {c['described']:g} "
                  f"({_md(c['file'])})" for c in inv["conflicts"]]
    lines += ["", "## Findings", ""]
    if not report["findings"]:
        lines.append("No placement problem stood out in this window.")
    for f in report["findings"]:
        rule = f" → rule `{_md(f['rule'])}`" if f.get("rule") else ""
        lines.append(f"{f['rank']}. **{f['kind']}** pid {f['pid']} `{_md(f['comm'])}`: {_md(f['summary'])} "
                     f"(impact {f['impact']:g}/s){rule}")
        evidence = ", ".join(f"{k}={_md(json.dumps(v))}" for k, v in f["evidence"].items() if v not in (None, 0, {}))
        lines.append(f"   - evidence: {evidence}")
    access = report["charts"].get("access") or {}
    lines += ["", "## Memory access", ""]
    if not access.get("method"):
        lines.append("No access information in these snapshots.")
    else:
        lines.append(f"- seen through {_md(access['method'])} ({_md(access['scope'])})"
                     + (f"; {_md(access['reason'])}" if access.get("reason") else ""))
        if access.get("hot_min_accesses") is not None:
            lines.append(f"- hot: at least {access['hot_min_accesses']:g} accesses per aggregation; cold: none for "
                         f"{access['cold_min_age_s']:g} s; warm: the rest")
        if access["nodes"]:
            lines += ["", "| node | hot MiB | warm MiB | cold MiB | free MiB |", "|---|---|---|---|---|"]
            lines += [f"| {n['node']} | {mib(n['hot'])} | {mib(n['warm'])} | {mib(n['cold'])} | "
                      f"{n['free_mb'] if n['free_mb'] is not None else '-'} |" for n in access["nodes"]]
        for p in access["processes"]:
            lines.append(f"- pid {p['pid']} `{_md(p['comm'])}`: hot MiB by node {_by_node_mib(p['hot_bytes_by_node'])}, "
                         f"cold MiB by node {_by_node_mib(p['cold_bytes_by_node'])}")
    lines += ["", "## Recommended policy", ""]
    kernel = report.get("kernel_alternative")
    if kernel and kernel["enough"]:
        lines += [f"**Recommended: `sysctl kernel.numa_balancing={kernel['setting']}`, no rules.** "
                  f"{_md(kernel['say'])[0].upper()}{_md(kernel['say'])[1:]}. The policy below is what llamas "
                  "would do instead, if those are needed.", ""]
    elif kernel and kernel["say"]:
        lines += [f"{_md(kernel['say'])[0].upper()}{_md(kernel['say'])[1:]}.", ""]
    if report["policy"] is None:
        lines.append("The advisor recommends no change.")
    else:
        state = "validated on this host, not applied" if report["policy_valid"] else "refused by validation"
        lines += [f"{state}.", "", "```json", json.dumps(report["policy"], indent=2), "```", ""]
        if report["apply_command"]:
            lines.append(f"Apply it with: `{report['apply_command']}`")
        for error in report["policy_errors"]:
            lines.append(f"- {_md(error)}")
    advisor = report["advisor"]
    usage = advisor["usage"]
    lines += ["", "## Advisor", "",
              f"- {advisor['name']}" + (f", model {usage['model']}" if usage.get("model") else "")
              + f": {usage['calls']} calls, {usage['input_tokens']} input and {usage['output_tokens']} output "
              f"tokens, about ${usage['cost_usd']:.4f}"]
    if advisor.get("unavailable"):
        lines.append(f"- unavailable: {_md(advisor['unavailable'])}")
    for name, why in advisor["explanations"].items():
        lines.append(f"- `{_md(name)}`: {_md(why)}")
    return "\n".join(lines) + "\n"


# ---- HTML ----
def _e(text: object) -> str:
    return html.escape(safe(str(text)), quote=True)


def _svg_pages(rows: list[dict[str, Any]]) -> str:
    width, bar, gap, label = 640, 18, 6, 170
    height = max(len(rows), 1) * (bar + gap) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="pages per node per process">']
    for i, row in enumerate(rows):
        y = i * (bar + gap)
        total = sum(row["pages"].values()) or 1
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{_e(row["comm"])} ({row["pid"]})</text>')
        x = float(label)
        for node, pages in sorted((int(k), v) for k, v in row["pages"].items()):
            w = (width - label - 10) * pages / total
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar}" '
                         f'fill="{NODE_COLORS[node % len(NODE_COLORS)]}"><title>node {node}: {pages} pages'
                         f'</title></rect>')
            x += w
    legend_y = height - 8
    nodes = sorted({int(k) for row in rows for k in row["pages"]})
    for j, node in enumerate(nodes):
        parts.append(f'<rect x="{label + 70 * j}" y="{legend_y - 10}" width="10" height="10" '
                     f'fill="{NODE_COLORS[node % len(NODE_COLORS)]}"/><text x="{label + 70 * j + 14}" '
                     f'y="{legend_y}" font-size="11">node {node}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_heatmap(heat: dict[str, Any]) -> str:
    rows = heat["rows"]
    cols = max((len(r["cells"]) for r in rows), default=0)
    if not rows or not cols:
        return "<p>No faults were counted.</p>"
    cell, label = max(min(460 // cols, 24), 6), 90
    top = max((v for r in rows for v in r["cells"]), default=1) or 1
    width, height = label + cols * cell + 10, len(rows) * cell + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="fault heatmap">']
    for i, row in enumerate(rows):
        parts.append(f'<text x="0" y="{i * cell + cell - 4}" font-size="11">{_e(row["label"])}</text>')
        for j, value in enumerate(row["cells"]):
            level = value / top
            shade = int(255 - 200 * level)
            parts.append(f'<rect x="{label + j * cell}" y="{i * cell}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="rgb(255,{shade},{shade})"><title>{value} faults</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_access(access: dict[str, Any]) -> str:
    """Hot/warm/cold per node as a table, and one address x time heatmap per process."""
    if not access.get("method"):
        return "<p>No access information in these snapshots.</p>"
    out = [f"<p>Seen through {_e(access['method'])} ({_e(access['scope'])})"
           + (f"; {_e(access['reason'])}" if access.get("reason") else "") + ".</p>"]
    if access["nodes"]:
        out.append("<table><tr><th>node</th><th>hot MiB</th><th>warm MiB</th><th>cold MiB</th><th>free MiB</th></tr>"
                   + "".join(f"<tr><td>{n['node']}</td><td>{mib(n['hot'])}</td><td>{mib(n['warm'])}</td>"
                             f"<td>{mib(n['cold'])}</td><td>{n['free_mb'] if n['free_mb'] is not None else '-'}</td></tr>"
                             for n in access["nodes"]) + "</table>")
    for p in access["processes"]:
        cells = p["cells"]
        cols = max((len(r) for r in cells), default=0)
        out.append(f"<h4>pid {p['pid']} {_e(p['comm'])}: address (resident ranges, gaps left out) by time</h4>")
        if not cols:
            out.append("<p>No regions with resident pages.</p>")
            continue
        cell_w, cell_h, label = max(min(540 // cols, 16), 4), 8, 110
        top = max((v for r in cells for v in r), default=0) or 1.0
        width, height = label + cols * cell_w + 10, len(cells) * cell_h + 24
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
                 f'aria-label="access heatmap of pid {p["pid"]}">']
        for i, row in enumerate(cells):
            if i % 8 == 0:
                parts.append(f'<text x="0" y="{i * cell_h + cell_h}" font-size="9">{_e(p["addresses"][i])}</text>')
            for j, value in enumerate(row):
                shade = int(255 - 220 * min(value / top, 1.0))
                parts.append(f'<rect x="{label + j * cell_w}" y="{i * cell_h}" width="{cell_w}" height="{cell_h}" '
                             f'fill="rgb({shade},{shade},255)"><title>{value:g} accesses</title></rect>')
        parts.append(f'<text x="{label}" y="{height - 6}" font-size="10">time →  (darker: more accesses per '
                     f'aggregation, at most {top:g})</text></svg>')
        out.append("".join(parts))
    return "".join(out)


def _svg_locality(series: list[dict[str, Any]]) -> str:
    width, height, pad = 640, 180, 30
    points = [(i, s["alloc_local_pct"]) for i, s in enumerate(series) if s["alloc_local_pct"] is not None]
    hints = [(i, s["hint_local_pct"]) for i, s in enumerate(series) if s["hint_local_pct"] is not None]
    n = max(len(series) - 1, 1)

    def path(pts: list[tuple[int, float]]) -> str:
        return " ".join(f"{pad + (width - 2 * pad) * i / n:.1f},{height - pad - (height - 2 * pad) * v / 100:.1f}"
                        for i, v in pts)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="locality over time">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
             f'<text x="2" y="{pad + 4}" font-size="10">100%</text>',
             f'<text x="8" y="{height - pad + 4}" font-size="10">0%</text>']
    if points:
        parts.append(f'<polyline fill="none" stroke="#4e79a7" stroke-width="2" points="{path(points)}"/>')
    if hints:
        parts.append(f'<polyline fill="none" stroke="#e15759" stroke-width="2" points="{path(hints)}"/>')
    parts.append(f'<text x="{pad}" y="{height - 6}" font-size="11" fill="#4e79a7">allocations local</text>'
                 f'<text x="{pad + 140}" y="{height - 6}" font-size="11" fill="#e15759">hinting faults local'
                 f'</text></svg>')
    return "".join(parts)


def to_html(report: dict[str, Any]) -> str:
    markdown_free = report  # one source of truth: the same dict the JSON format prints

    def section(key: str, title: str, body: str) -> str:
        color = SECTION_COLORS[key]
        return (f'<section id="{key}"><h2><span class="marker" style="background:{color}"></span>{_e(title)}'
                f'</h2>{body}</section>')

    host = markdown_free["host"]
    caps = "".join(f"<li>{_e(k)}: {'yes' if v.get('available') else 'no'}"
                   f"{(' — ' + _e(v.get('reason'))) if v.get('reason') and not v.get('available') else ''}</li>"
                   for k, v in sorted(host["capabilities"].items()) if isinstance(v, dict) and "available" in v)
    probes = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in sorted(host["probes"].items()))
    host_body = (f"<p>kernel {_e(host['kernel'])}; observed {host['window_seconds']:g} s in {host['snapshots']} "
                 f"snapshots, {host['processes_seen']} processes{_e(_left_out(host))}.</p>"
                 f"<h3>Capabilities</h3><ul>{caps}</ul>"
                 f"<h3>Probes</h3><ul>{probes}</ul>")
    inv = markdown_free["inventory"]
    rows = "".join(
        f"<tr><td>{n['id']}</td><td>{_e(','.join(map(str, n['cpus'])) or '-')}</td><td>{n.get('memory_mb') or '-'}</td>"
        f"<td>{n.get('tier') if n.get('tier') is not None else '-'}</td><td>{n.get('read_latency_ns') or '-'}</td>"
        f"<td>{n.get('write_latency_ns') or '-'}</td><td>{_e(n.get('description') or '')}</td></tr>"
        for n in inv["nodes"])
    conflicts = "".join(f"<li>{_e(c['device'])} {_e(c['field'])}: kernel {c['kernel']:g}, described "
                        f"{c['described']:g} ({_e(c['file'])})</li>" for c in inv.get("conflicts", []))
    gpus = "".join(f"<li>GPU {_e(g['pci_address'])} {_e(g.get('name') or '')} on node {g.get('numa_node')}</li>"
                   for g in inv.get("gpus", []))
    inv_body = (f"<table><tr><th>node</th><th>CPUs</th><th>MiB</th><th>tier</th><th>read ns</th><th>write ns</th>"
                f"<th>description</th></tr>{rows}</table><ul>{gpus}</ul>"
                + (f"<h3>Conflicts</h3><ul>{conflicts}</ul>" if conflicts else ""))
    items = "".join(
        f"<li><b>{_e(f['kind'])}</b> pid {f['pid']} <code>{_e(f['comm'])}</code>: {_e(f['summary'])} "
        f"(impact {f['impact']:g}/s){' → rule <code>' + _e(f['rule']) + '</code>' if f.get('rule') else ''}"
        f"<br><small>{_e(json.dumps({k: v for k, v in f['evidence'].items() if v not in (None, 0, {})}))}</small></li>"
        for f in markdown_free["findings"])
    charts = markdown_free["charts"]
    heat_title = ("Faults per 2 MiB region" if charts["heatmap"]["kind"] == "regions"
                  else "Faults per node per interval")
    findings_body = ((f"<ol>{items}</ol>" if items else "<p>No placement problem stood out in this window.</p>")
                     + "<h3>Pages per node, per process</h3>" + _svg_pages(charts["pages_by_node"])
                     + f"<h3>{heat_title}</h3>" + _svg_heatmap(charts["heatmap"])
                     + "<h3>Locality over time</h3>" + _svg_locality(charts["locality"])
                     + "<h3>Memory access</h3>" + _svg_access(charts.get("access") or {}))
    if markdown_free["policy"] is None:
        policy_body = "<p>The advisor recommends no change.</p>"
    else:
        state = "validated on this host, not applied" if markdown_free["policy_valid"] else "refused by validation"
        errors = "".join(f"<li>{_e(e)}</li>" for e in markdown_free["policy_errors"])
        apply = (f"<p>Apply it with: <code>{_e(markdown_free['apply_command'])}</code></p>"
                 if markdown_free["apply_command"] else "")
        policy_body = (f"<p>{state}.</p><pre>{_e(json.dumps(markdown_free['policy'], indent=2))}</pre>{apply}"
                       + (f"<ul>{errors}</ul>" if errors else ""))
    kernel = markdown_free.get("kernel_alternative")
    if kernel and kernel["enough"]:
        policy_body = (f"<p><strong>Recommended: <code>sysctl kernel.numa_balancing={kernel['setting']}</code>, "
                       f"no rules.</strong> {_e(kernel['say'])}. The policy below is what llamas would do "
                       "instead, if those are needed.</p>" + policy_body)
    elif kernel and kernel["say"]:
        policy_body = f"<p>{_e(kernel['say'])}.</p>" + policy_body
    advisor = markdown_free["advisor"]
    usage = advisor["usage"]
    explained = "".join(f"<li><code>{_e(k)}</code>: {_e(v)}</li>" for k, v in advisor["explanations"].items())
    usage_body = (f"<p>{_e(advisor['name'])}{(', model ' + _e(usage['model'])) if usage.get('model') else ''}: "
                  f"{usage['calls']} calls, {usage['input_tokens']} input and {usage['output_tokens']} output tokens, "
                  f"about ${usage['cost_usd']:.4f}.</p>"
                  + (f"<p>unavailable: {_e(advisor['unavailable'])}</p>" if advisor.get("unavailable") else "")
                  + f"<ul>{explained}</ul>")
    style = ("body{font-family:sans-serif;max-width:960px;margin:24px auto;padding:0 16px;color:#222}"
             "h2{border-bottom:1px solid #ddd;padding-bottom:4px}"
             ".marker{display:inline-block;width:28px;height:28px;margin-right:10px;vertical-align:middle}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
             "pre{background:#f6f6f6;padding:10px;font-size:12px;overflow:auto}li{margin:4px 0}")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Placement audit: {_e(host['name'])}</title><style>{style}</style></head><body>"
            f"<h1>Placement audit: {_e(host['name'])}</h1>"
            + section("host", "Host and kernel", host_body)
            + section("inventory", "Devices", inv_body)
            + section("findings", "Findings", findings_body)
            + section("policy", "Recommended policy", policy_body)
            + section("usage", "Advisor", usage_body)
            + "</body></html>\n")


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o))
