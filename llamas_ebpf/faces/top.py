"""`llamas top`: a live, full-screen view of placement, one row per process.

Keys: s cycles the sort column, / filters by name or pid (Enter ends, Esc clears), p pauses,
up/down (or k/j) select a process for the sparklines, q quits. Fits 80x24: columns are
sized for it and rows are cut to the terminal's height.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections import deque
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from llamas_ebpf.faces.text import human, safe
from llamas_ebpf.kernel import nodes as kernel_nodes
from llamas_ebpf.kernel import procfs
from llamas_ebpf.snapshot import ProcessSample, Snapshot

SORTS = ("faults", "remote", "xnode", "gpu", "pid")
SHORT = {"faults": "flt", "numa_alloc": "alloc", "numa_hint": "hint", "page_migrate": "pmig",
         "cpu_migrate": "cmig", "cuda": "cuda", "gpu_fence": "fence", "taskstats": "delay"}
METHODS = {"raw_tracepoint": "raw", "tracepoint": "tp", "tracepoint+vmstat": "tp+vm", "netlink": "nl",
           "uprobe": "up"}


def _short_method(method: str | None) -> str:
    return "-" if method is None else METHODS.get(method, method)
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
    history: dict[int, deque] = field(default_factory=dict)  # pid -> faults/s
    locality: dict[int, deque] = field(default_factory=dict)  # pid -> alloc-local %

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
            allocs = p.numa.alloc_local + p.numa.alloc_remote
            if allocs:
                local = 100 * p.numa.alloc_local / allocs
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


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}" if whole else "-"


def _sort_key(sort: str):  # noqa: ANN202
    if sort == "remote":
        return lambda p: (-(p.numa.alloc_remote + (p.numa.hint_remote or 0)), p.pid)
    if sort == "xnode":
        return lambda p: (-p.cpu_migrations.cross_node, p.pid)
    if sort == "gpu":
        return lambda p: (-sum(p.gpu.calls.values()), p.pid)
    if sort == "pid":
        return lambda p: p.pid
    return lambda p: (-p.total_faults, p.pid)


@dataclass
class Context:
    """What the header shows besides the snapshot."""

    generation: int | None = None
    advisor: str | None = None
    rules: dict[int, str] = field(default_factory=dict)  # pid -> rule name
    rule_cpus: dict[int, set[int]] = field(default_factory=dict)  # pid -> the rule's CPUs
    tiers: dict[int, int | None] = field(default_factory=dict)


def violations(pid: int, cpus: set[int] | None) -> int:
    """Threads of a process whose CPU mask lets them run outside their rule's CPUs."""
    if not cpus:
        return 0
    count = 0
    for tid in procfs.thread_ids(pid):
        with contextlib.suppress(OSError):
            if not os.sched_getaffinity(tid) <= cpus:
                count += 1
    return count


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
        free = kernel_nodes.memory_mb(node.id, key="MemFree")
        tier = ctx.tiers.get(node.id)
        parts.append(f"n{node.id}{'' if node.cpus else '*'} t{tier if tier is not None else '-'} "
                     f"{human((free or 0) * 1024 * 1024)}B free")
    legend = "   (* no CPUs)" if any(not node.cpus for node in snap.nodes) else ""
    text.append("nodes " + " | ".join(parts) + legend + "\n")
    policy = f"gen {ctx.generation} by {ctx.advisor}" if ctx.advisor else "no policy in force"
    methods = " ".join(f"{SHORT.get(n, n)}:{_short_method(h.method)}" for n, h in snap.probes.items())
    text.append(f"policy {policy}\nprobes {methods}\n")
    events = sum(h.events or 0 for h in snap.probes.values())
    run_ns = sum(h.run_time_ns or 0 for h in snap.probes.values())
    drops = sum(h.map_full + h.drops for h in snap.probes.values())
    faults = sum(p.total_faults for p in snap.processes)
    if events:
        cost = f"{run_ns / events:.0f} ns/event, BPF {100 * run_ns / 1e9 / seconds:.2f}% CPU"
    else:
        cost = "BPF cost: stats off (--bpf-stats)"
    text.append(f"events {human(events / seconds) if events else human(faults / seconds)}/s  {cost}  "
                f"drops {drops}", style="red" if drops else "")
    return text


def render(snap: Snapshot, ctx: Context, state: TopState, width: int = 80, height: int = 24) -> Group:
    seconds = max(snap.interval_s, 1e-3)
    rows = [p for p in snap.processes
            if not state.filter or state.filter in p.comm or state.filter == str(p.pid)]
    rows.sort(key=_sort_key(state.sort))
    room = max(height - 5 - 1 - 3, 1)  # header, table head, sparklines and keys
    rows = rows[:room]
    state.selected = min(state.selected, max(len(rows) - 1, 0))
    state.selected_pid = rows[state.selected].pid if rows else None
    table = Table(box=None, padding=(0, 1), pad_edge=False, expand=False, header_style="bold reverse")
    bar = max(min(width - 68, 20), 6)
    for name, justify in (("PID", "right"), ("COMM", "left"), ("RULE", "left"), ("FLT/s R/W", "right"),
                          ("AL%", "right"), ("HL%", "right"), ("PAGES/node", "left"), ("XN/s", "right"),
                          ("GPU/s", "right"), ("VIO", "right")):
        table.add_column(name, justify=justify, no_wrap=True, overflow="crop")
    for index, p in enumerate(rows):
        allocs = p.numa.alloc_local + p.numa.alloc_remote
        hints = (p.numa.hint_local or 0) + (p.numa.hint_remote or 0)
        gpu_calls = sum(p.gpu.calls.values())
        gpu_bytes = sum(p.gpu.bytes.values())
        table.add_row(
            str(p.pid), safe(p.comm, 12), safe(ctx.rules.get(p.pid, "-"), 10),
            f"{human(p.faults.read / seconds)}/{human(p.faults.write / seconds)}",
            _pct(p.numa.alloc_local, allocs),
            _pct(p.numa.hint_local or 0, hints) if p.numa.hint_local is not None else "-",
            pages_bar(p.resident_by_node, bar), human(p.cpu_migrations.cross_node / seconds),
            f"{human(gpu_calls / seconds)}" + (f" {human(gpu_bytes / seconds)}B" if gpu_bytes else ""),
            str(violations(p.pid, ctx.rule_cpus.get(p.pid))),
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


def context(state_dir, inventory_tiers: dict[int, int | None], pids: list[int]) -> Context:  # noqa: ANN001
    from llamas_ebpf.policy import compile as policy_compile
    from llamas_ebpf.policy.state import PolicyState

    ctx = Context(tiers=inventory_tiers)
    with contextlib.suppress(Exception):
        state = PolicyState.load(state_dir)
        ctx.generation, ctx.advisor = state.generation, state.advisor
        doc = state.document
        if doc is not None:
            for pid in pids:
                index = policy_compile.rule_for(doc, pid)
                if index is not None:
                    rule = doc.rules[index]
                    ctx.rules[pid] = rule.name
                    if rule.cpu is not None:
                        cpus = rule.cpu.cpus if rule.cpu.cpus is not None else [
                            c for n in rule.cpu.nodes or [] for c in kernel_nodes.node_cpus(n)]
                        ctx.rule_cpus[pid] = set(cpus)  # type: ignore[arg-type]
    return ctx


class Keys:
    """Single keys from the terminal, without echo, while the view runs."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self.saved = None

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


def run_live(sensor, interval: float, make_context, console: Console) -> None:  # noqa: ANN001
    state = TopState()
    snap = sensor.collect()
    with Keys() as keys, Live(console=console, screen=True, auto_refresh=False) as live:
        deadline = time.monotonic() + interval
        while not state.quit:
            for key in keys.read(max(deadline - time.monotonic(), 0.0) if not state.typing_filter else 0.2):
                state.key(key)
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + interval
                fresh = sensor.collect()
                if not state.paused:
                    snap = fresh
                    state.remember(snap)
            size = console.size
            ctx = make_context([p.pid for p in snap.processes[:size.height]])
            live.update(render(snap, ctx, state, size.width, size.height), refresh=True)


def first_rows(processes: list[ProcessSample], n: int) -> list[int]:
    return [p.pid for p in processes[:n]]
