"""`llamas top`: a live view of placement, one row per process. The sampling and the policy
lookups are here; llamas_ebpf/faces/top.py only draws what it is given."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llamas_ebpf.commands.common import seconds
from llamas_ebpf.errors import LlamasError

if TYPE_CHECKING:
    from rich.console import Console

    from llamas_ebpf.faces.top import Context
    from llamas_ebpf.policy.state import PolicyState
    from llamas_ebpf.sense import Sensor


class PolicyView:
    """Which rule takes which process, from the state directory (read again when it changes)."""

    def __init__(self, state_dir: Path, tiers: dict[int, int | None]) -> None:
        from llamas_ebpf.policy.validate import HostFacts

        self.state_dir, self.tiers = state_dir, tiers
        self.host = HostFacts.from_host()
        self._stamp: float | None = None
        self._state: PolicyState | None = None

    def state(self) -> PolicyState | None:
        """The policy state, None where it cannot be read (a view with no policy line beats no
        view)."""
        from llamas_ebpf.policy.state import PolicyState

        try:
            stamp = (self.state_dir / "policy.json").stat().st_mtime
        except OSError:
            stamp = None
        if stamp != self._stamp or self._state is None:
            try:
                self._state = PolicyState.load(self.state_dir)
            except (OSError, ValueError, KeyError):
                self._state = None
            self._stamp = stamp
        return self._state

    def context(self, pids: list[int]) -> Context:
        from llamas_ebpf.faces.top import Context
        from llamas_ebpf.policy import compile as policy_compile

        ctx = Context(tiers=self.tiers)
        state = self.state()
        if state is None:
            return ctx
        ctx.generation, ctx.advisor = state.generation, state.advisor
        if state.document is not None:
            for pid in pids:
                index = policy_compile.rule_for(state.document, pid)
                if index is not None:
                    ctx.rules[pid] = state.document.rules[index].name
        return ctx

    def rule_cpus(self, pid: int) -> set[int] | None:
        """The CPUs of the rule that takes `pid`, for the Sensor's threads_off_rule."""
        from llamas_ebpf.policy import compile as policy_compile

        state = self.state()
        doc = state.document if state is not None else None
        index = policy_compile.rule_for(doc, pid) if doc is not None else None
        if doc is None or index is None:
            return None
        return set(policy_compile.compile_rule(doc.rules[index], self.host).cpus) or None


def top(
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame after one interval, exit.")] = False,
    bpf_stats: Annotated[
        bool, typer.Option("--bpf-stats/--no-bpf-stats", help="Show BPF cost per event (BPF_ENABLE_STATS).")
    ] = True,
) -> None:
    """A live view of placement: nodes, policy, probes, and one row per process."""
    from rich.console import Console

    from llamas_ebpf.devices.inventory import discover_nodes
    from llamas_ebpf.faces import top as face
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.sense import Sensor

    if os.geteuid() != 0:
        raise LlamasError("not root: llamas top loads BPF programs (run it with sudo)")
    seconds("--interval", interval)
    view = PolicyView(Paths.from_env().state_dir, {n.id: n.tier for n in discover_nodes(Path("/"))})
    console = Console()
    with Sensor(bpf_stats=bpf_stats, detail_top=40, rule_cpus=view.rule_cpus) as sensor:
        if once:
            time.sleep(interval)
            snap = sensor.collect()
            state = face.TopState()
            state.remember(snap)
            height = console.size.height if console.is_terminal else 10_000
            ctx = view.context([p.pid for p in snap.processes[:height]])
            console.print(face.render(snap, ctx, state, console.size.width, height))
            return
        _live(sensor, interval, view, console)


def _live(sensor: Sensor, interval: float, view: PolicyView, console: Console) -> None:
    """Keys between frames, a snapshot every interval (kept while paused), a frame after each."""
    from rich.live import Live

    from llamas_ebpf.faces import top as face

    state = face.TopState()
    snap = sensor.collect()
    with face.Keys() as keys, Live(console=console, screen=True, auto_refresh=False) as live:
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
            ctx = view.context([p.pid for p in snap.processes[:size.height]])
            live.update(face.render(snap, ctx, state, size.width, size.height), refresh=True)
