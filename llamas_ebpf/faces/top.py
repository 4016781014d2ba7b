"""`llamas top`: a live, full-screen view of placement, one row per process.

It renders the Snapshot and a Context the command gives it; it reads nothing from the kernel
(the Sensor puts free memory and threads outside their rule's CPUs into the snapshot).

Keys: s cycles the sort column, / filters by name or pid (Enter ends, Esc clears), p pauses,
up/down (or k/j) select a process for the sparklines, q quits. Fits 80x24: columns are
sized for it and rows are cut to the terminal's height.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from llamas_ebpf import metrics
from llamas_ebpf.faces.observe import estimated_note
from llamas_ebpf.faces.text import human, safe
from llamas_ebpf.snapshot import ProcessSample, Snapshot

SORTS = ("faults", "remote", "xnode", "gpu", "hot", "pid")
SHORT = {"faults": "flt", "numa_alloc": "alloc", "numa_hint": "hint", "page_migrate": "pmig",
         "cpu_migrate": "cmig", "cuda": "cuda", "gpu_fence": "fence", "taskstats": "delay",
         "access": "acc"}
METHODS = {"raw_tracepoint": "raw", "tracepoint": "tp", "tracepoint+vmstat": "tp+vm", "netlink": "nl",
           "uprobe": "up", "damon-vaddr": "vaddr", "damon-paddr": "paddr",
           "damon-paddr-passive": "paddr(theirs)"}


def _short_method(method: str | None) -> str:
    return "-" if method is None else METHODS.get(method, method)


# HOTX: hot bytes off the node of the CPU it runs on; COLDF: cold bytes on the fastest tier
COLUMNS = ("PID", "COMM", "RULE", "FLT/s R/W", "AL%", "HL%", "HOTX", "COLDF", "PAGES/node", "XN/s",
           "GPU/s", "VIO")
LEFT = {"COMM", "RULE", "PAGES/node"}
SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 60
NODE_MARKS = "0123456789abcdef"


@dataclass
class TopState:
    sort: str = "faults"
    filter: str = ""
    typing_filter: bool = False
    paused: bool = False
    selected: int = 0
    selected_pid: int | None = None
    quit: bool = False
    history: dict[int, deque[float]] = field(default_factory=dict)  # pid -> faults/s
    locality: dict[int, deque[float]] = field(default_factory=dict)  # pid -> alloc-local %

    def key(self, key: str) -> None:
        if self.typing_filter:
            if key in ("\r", "\n"):
                self.typing_filter = False
            elif key == "\x1b":
                self.typing_filter, self.filter = False, ""
            elif key in ("\x7f", "\b"):
                self.filter = self.filter[:-1]
            elif key.isprintable() and len(self.filter) < 15:
                self.filter += key
            return
        if key == "q":
            self.quit = True
        elif key == "s":
            self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        elif key == "/":
            self.typing_filter, self.filter = True, ""
        elif key == "p":
            self.paused = not self.paused
        elif key in ("j", "down"):
            self.selected += 1
        elif key in ("k", "up"):
            self.selected = max(self.selected - 1, 0)

    def remember(self, snap: Snapshot) -> None:
        seconds = max(snap.interval_s, 1e-3)
        seen = set()
        for p in snap.processes:
            seen.add(p.pid)
            self.history.setdefault(p.pid, deque(maxlen=HISTORY)).append(p.total_faults / seconds)
            if p.numa.alloc_local + p.numa.alloc_remote:
                local = 100 * (1 - metrics.remote_alloc_fraction(p.numa.alloc_local, p.numa.alloc_remote))
                self.locality.setdefault(p.pid, deque(maxlen=HISTORY)).append(local)
        for pid, values in self.history.items():
            if pid not in seen:
                values.append(0.0)


def sparkline(values: list[float], width: int) -> str:
    values = values[-width:]
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(int(v / top * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)] for v in values)


def pages_bar(by_node: dict[int, int] | None, width: int) -> str:
    """Pages per node as a bar of node digits: '000011' is two thirds on node0."""
    if not by_node:
        return ""
    total = sum(by_node.values())
    if total == 0:
        return ""
    out = ""
    for node in sorted(by_node):
        out += NODE_MARKS[node % 16] * round(width * by_node[node] / total)
    return out[:width].ljust(width, out[-1:] or " ")


def hot_off_node(p: ProcessSample) -> int | None:
    """Hot bytes not on the node of the CPU it last ran on."""
    if p.access is None or p.cpu_node is None:
        return None
    return sum(size for node, size in p.access.hot_bytes_by_node.items() if node != p.cpu_node)


def cold_on_fast(p: ProcessSample, tiers: dict[int, int | None]) -> int | None:
    """Cold bytes on the nodes of the fastest tier (all of them where tiers are unknown)."""
    if p.access is None:
        return None
    known = [t for t in tiers.values() if t is not None]
    fast = {n for n, t in tiers.items() if t == min(known)} if known else None
    return sum(size for node, size in p.access.cold_bytes_by_node.items() if fast is None or node in fast)


def _bytes(value: int | None) -> str:
    return "-" if value is None else f"{human(value)}B"


def _local_pct(remote_fraction: float, events: int) -> str:
    return f"{100 * (1 - remote_fraction):.0f}" if events else "-"


def _sort_key(sort: str) -> Callable[[ProcessSample], Any]:
    if sort == "remote":
        return lambda p: (-(p.numa.alloc_remote + (p.numa.hint_remote or 0)), p.pid)
    if sort == "xnode":
        return lambda p: (-p.cpu_migrations.cross_node, p.pid)
    if sort == "gpu":
        return lambda p: (-sum(p.gpu.calls.values()), p.pid)
    if sort == "pid":
        return lambda p: p.pid
    if sort == "hot":
        return lambda p: (-(p.access.hot_bytes if p.access else 0), p.pid)
    return lambda p: (-p.total_faults, p.pid)


@dataclass
class Context:
    """What the header shows besides the snapshot."""

    generation: int | None = None
    advisor: str | None = None
    rules: dict[int, str] = field(default_factory=dict)  # pid -> rule name
    tiers: dict[int, int | None] = field(default_factory=dict)


def header(snap: Snapshot, ctx: Context, state: TopState) -> Text:
    seconds = max(snap.interval_s, 1e-3)
    text = Text()
    text.append(f"llamas top  {safe(snap.host, 24)}  kernel {snap.kernel}", style="bold")
    flags = [f"sort:{state.sort}"]
    if state.filter or state.typing_filter:
        flags.append(f"filter:{safe(state.filter)}{'_' if state.typing_filter else ''}")
    if state.paused:
        flags.append("PAUSED")
    text.append("  " + " ".join(flags) + "\n", style="yellow" if state.paused else "")
    parts = []
    for node in snap.nodes:
        tier = ctx.tiers.get(node.id)
        free = f"{human(node.free_mb * 1024 * 1024)}B" if node.free_mb is not None else "?"
        parts.append(f"n{node.id}{'' if node.cpus else '*'} t{tier if tier is not None else '-'} {free} free")
    legend = "   (* no CPUs)" if any(not node.cpus for node in snap.nodes) else ""
    text.append("nodes " + " | ".join(parts) + legend + "\n")
    heat = [f"n{n.id} hot {human(n.hot_bytes)}B cold {human(n.cold_bytes or 0)}B"
            for n in snap.nodes if n.hot_bytes is not None]
    if snap.access is not None:
        figures = " | ".join(heat) or "no figures yet"
        text.append(f"access {_short_method(snap.access.method)}: {figures}\n")
    policy = f"gen {ctx.generation} by {ctx.advisor}" if ctx.advisor else "no policy in force"
    methods = " ".join(f"{SHORT.get(n, n)}:{_short_method(h.method)}" for n, h in snap.probes.items())
    text.append(f"policy {policy}\nprobes {methods}\n")
    events = sum(h.events or 0 for h in snap.probes.values())
    run_ns = sum(h.run_time_ns or 0 for h in snap.probes.values())
    drops = sum(h.map_full + h.drops for h in snap.probes.values())
    faults = sum(p.total_faults for p in snap.counted)
    if events:
        cost = f"{run_ns / events:.0f} ns/event, BPF {100 * run_ns / 1e9 / seconds:.2f}% CPU"
    else:
        cost = "BPF cost: stats off (--bpf-stats)"
    text.append(f"events {human(events / seconds) if events else human(faults / seconds)}/s  {cost}  "
                f"drops {drops}{estimated_note(snap)}", style="red" if drops else "")
    return text


def render(snap: Snapshot, ctx: Context, state: TopState, width: int = 80, height: int = 24) -> Group:
    seconds = max(snap.interval_s, 1e-3)
    rows = [p for p in snap.processes
            if not state.filter or state.filter in p.comm or state.filter == str(p.pid)]
    rows.sort(key=_sort_key(state.sort))
    room = max(height - 5 - (snap.access is not None) - 1 - 3, 1)  # header, table head, sparklines and keys
    rows = rows[:room]
    state.selected = min(state.selected, max(len(rows) - 1, 0))
    state.selected_pid = rows[state.selected].pid if rows else None
    table = Table(box=None, padding=(0, 1), pad_edge=False, expand=False, header_style="bold reverse")
    bar = max(min(width - 74, 20), 6)
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in LEFT else "right", no_wrap=True, overflow="crop",
                         min_width=7 if name == "PID" else None)
    for index, p in enumerate(rows):
        allocs = p.numa.alloc_local + p.numa.alloc_remote
        hints = (p.numa.hint_local or 0) + (p.numa.hint_remote or 0)
        hint_remote = metrics.remote_hint_fraction(p.numa.hint_local or 0, p.numa.hint_remote or 0)
        gpu_calls = sum(p.gpu.calls.values())
        gpu_bytes = sum(p.gpu.bytes.values())
        table.add_row(
            str(p.pid), safe(p.comm, 10), safe(ctx.rules.get(p.pid, "-"), 8),
            f"{human(p.faults.read / seconds)}/{human(p.faults.write / seconds)}",
            _local_pct(metrics.remote_alloc_fraction(p.numa.alloc_local, p.numa.alloc_remote), allocs),
            _local_pct(hint_remote, hints) if p.numa.hint_local is not None else "-",
            _bytes(hot_off_node(p)), _bytes(cold_on_fast(p, ctx.tiers)),
            pages_bar(p.resident_by_node, bar), human(p.cpu_migrations.cross_node / seconds),
            f"{human(gpu_calls / seconds)}" + (f" {human(gpu_bytes / seconds)}B" if gpu_bytes else ""),
            str(p.threads_off_rule or 0),
            style="reverse" if index == state.selected else "",
        )
    spark = Text()
    if state.selected_pid is not None:
        pid = state.selected_pid
        history = list(state.history.get(pid, []))
        locality = list(state.locality.get(pid, []))
        spark.append(f"pid {pid} faults/s ", style="bold")
        spark.append(sparkline(history, max(width - 40, 10)))
        spark.append(f" {human(history[-1]) if history else '-'}\n")
        spark.append(f"pid {pid} alloc-local% ", style="bold")
        spark.append(sparkline(locality, max(width - 40, 10)))
        spark.append(f" {locality[-1]:.0f}" if locality else " -")
    keys = Text("s sort  / filter  p pause  up/down select  q quit", style="dim")
    return Group(header(snap, ctx, state), table, spark, keys)


class Keys:
    """Single keys from the terminal, without echo, while the view runs."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self.saved: list[Any] | None = None

    def __enter__(self) -> Keys:
        if self.fd is not None:
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None and self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout: float) -> list[str]:
        if self.fd is None:
            time.sleep(timeout)
            return []
        ready = select.select([self.fd], [], [], timeout)[0]
        if not ready:
            return []
        data = os.read(self.fd, 64).decode("utf-8", "replace")
        keys, i = [], 0
        while i < len(data):
            if data.startswith("\x1b[A", i):
                keys.append("up")
                i += 3
            elif data.startswith("\x1b[B", i):
                keys.append("down")
                i += 3
            else:
                keys.append(data[i])
                i += 1
        return keys
