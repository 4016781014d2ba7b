"""What several commands share: their common options, opening the enforcer, choosing and
building an advisor, and running slow set-up beside the BPF compiles.

Imports of the layers below are made where they are used: every command module is imported
at start-up, and under the lab's TCG an import costs seconds."""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from llamas_ebpf.errors import LlamasError
from llamas_ebpf.faces.text import safe
from llamas_ebpf.paths import Paths

if TYPE_CHECKING:
    from prometheus_client.registry import Collector
    from rich.console import Console

    from llamas_ebpf.advise.base import Advisor
    from llamas_ebpf.config import LlmConfig
    from llamas_ebpf.devices.inventory import Inventory
    from llamas_ebpf.enforce import Enforcer

T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print data as JSON.")]
EbpfFlag = Annotated[bool, typer.Option("--ebpf", help="Print the BPF C that would be loaded, and exit.")]
DevicesOption = Annotated[
    Path | None,
    typer.Option("--devices", help="Device descriptions (*.toml); default $LLAMAS_CONFIG_DIR/devices."),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", envvar="LLAMAS_MODEL", help="Claude model (default: a current Sonnet)."),
]


MAX_SECONDS = 7 * 24 * 3600  # a week; time.sleep() overflows near 1e12 s


def seconds(name: str, value: float | None) -> None:
    """A duration given on the command line: a finite, positive number, at most a week (nan and
    inf are floats too, and would make a loop spin or never end; 1e308 overflows sleep)."""
    if value is not None and not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise LlamasError(f"{name} must be a positive number of seconds up to {MAX_SECONDS}, not {value}")


def check_pids(name: str, values: list[int] | None) -> None:
    bad = [p for p in values or [] if p < 1]
    if bad:
        raise LlamasError(f"{name} {bad[0]}: a process id is a positive number")


def listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) as (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LlamasError(f"--metrics {text!r}: give HOST:PORT, e.g. 127.0.0.1:9464")
    return host, int(port)


def serve_metrics(address: tuple[str, int], exporter: Collector) -> None:
    """Serve the exporter's metrics (and this process's own CPU and memory) over HTTP, from a
    thread of prometheus_client's."""
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    registry = CollectorRegistry()
    registry.register(exporter)
    ProcessCollector(registry=registry)
    try:
        start_http_server(address[1], addr=address[0], registry=registry)
    except OSError as exc:
        raise LlamasError(f"--metrics {address[0]}:{address[1]}: {exc.strerror}") from None


def devices_dir(given: Path | None, paths: Paths) -> Path:
    return given if given is not None else paths.config_dir / "devices"


def open_enforcer(paths: Paths | None = None) -> Enforcer:
    from llamas_ebpf import config
    from llamas_ebpf.enforce import Enforcer
    from llamas_ebpf.policy.validate import HostFacts

    if os.geteuid() != 0:
        raise LlamasError("not root: policy maps and affinity changes need root")
    paths = paths or Paths.from_env()
    enforcer = Enforcer(paths, config.load(paths).guardrails, HostFacts.from_host())
    say_notes(enforcer)
    return enforcer


def say_notes(enforcer: Enforcer) -> None:
    """What the enforcer found damaged or cut short, and what it did about it: a line each."""
    for note in enforcer.notes:
        print(f"llamas: {safe(note)}", file=sys.stderr)
    enforcer.notes.clear()


def advisor_probes(inventory: Inventory) -> set[str]:
    """The probes whose counts the advisors and the audit read; the GPU ones only where there is a
    GPU (each probe adds to the BPF object compiled at start-up: seconds on a slow machine)."""
    probes = {"faults", "numa_alloc", "numa_hint", "cpu_migrate", "taskstats", "access"}
    return probes | {"cuda", "gpu_fence"} if inventory.gpus else probes


def require_key() -> None:
    from llamas_ebpf.advise.claude import check_key

    check_key(os.environ.get("ANTHROPIC_API_KEY"))


def in_background(fn: Callable[[], T]) -> Callable[[], T]:
    """Start fn() in a daemon thread; the returned callable waits for it and returns its result
    or raises its exception. For slow pure-Python work (imports) beside BPF compiles, which
    release the GIL."""
    box: list[T] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=work, name="llamas-prepare", daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        if errors:
            raise errors[0]
        return box[0]

    return result


def build_advisor(name: str, llm: LlmConfig, paths: Paths, model: str | None, replay: Path | None) -> Advisor:
    if name == "heuristic":
        from llamas_ebpf.advise.heuristic import HeuristicAdvisor

        return HeuristicAdvisor()
    if name == "replay":
        from llamas_ebpf.advise.replay import ReplayAdvisor

        if replay is None:
            raise LlamasError("--advisor replay needs --replay AUDIT_LOG")
        return ReplayAdvisor(replay)
    from llamas_ebpf.advise.claude import ClaudeAdvisor
    from llamas_ebpf.policy.state import AuditLog

    env = os.environ.get
    return ClaudeAdvisor(llm, AuditLog(paths.state_dir), model=model, api_key=env("ANTHROPIC_API_KEY"),
                         base_url=env("ANTHROPIC_BASE_URL"))


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)
