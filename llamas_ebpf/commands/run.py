"""`llamas run`: the daemon. It keeps the policy in force (processes started later, threads seen
off their CPUs, pages to their home node, cold mappings to `demote_node`) and, with an advisor,
observes, decides each window, validates, applies, measures the effect and reverts what made
placement worse (llamas_ebpf/controller.py). SIGINT and SIGTERM roll back unless --keep."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llamas_ebpf.commands.common import (
    DevicesOption,
    EbpfFlag,
    ModelOption,
    advisor_probes,
    build_advisor,
    devices_dir,
    in_background,
    listen_address,
    open_enforcer,
    require_key,
    say_notes,
    seconds,
    serve_metrics,
)
from llamas_ebpf.commands.policy import apply_file, say_applied
from llamas_ebpf.errors import LlamasError

if TYPE_CHECKING:
    from llamas_ebpf.controller import Controller
    from llamas_ebpf.enforce import RequestServer
    from llamas_ebpf.paths import Paths

ADVISORS = ("heuristic", "claude", "replay", "none")


class _Stop:
    """SIGTERM and SIGINT end `llamas run` through its rollback: a KeyboardInterrupt, raised at
    once, or, while the RequestServer is inside a request (where ctypes would drop it), as soon
    as the request is done."""

    def __init__(self) -> None:
        self.server: RequestServer | None = None

    def __call__(self, _signum: int, _frame: object) -> None:
        if self.server is not None and self.server.in_request:
            self.server.stop_requested = True
            return
        raise KeyboardInterrupt


def ask_to_decide(paths: Paths) -> str:
    """SIGUSR1 to the `llamas run` holding this state directory's run.lock: it ends its window
    and asks its advisor, whatever changed."""
    from llamas_ebpf.policy.lock import RunLock

    pid = RunLock.holder(paths.state_dir)
    if pid is None:
        raise LlamasError(f"no llamas run is using {paths.state_dir}: nothing to ask")
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        raise LlamasError(f"the llamas run that held {paths.state_dir} (pid {pid}) is gone") from None
    return f"asked llamas run (pid {pid}) to decide now"


def run(
    advisor: Annotated[
        str, typer.Option("--advisor", help="heuristic, claude, replay, or none (keep the given policy).")
    ] = "heuristic",
    policy: Annotated[Path | None, typer.Option("--policy", help="Apply this document first.")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the policy in force on exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds per observation interval.")] = 1.0,
    decide_every: Annotated[
        float | None, typer.Option("--decide-every", help="Seconds per decision (60 claude, 10 others).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and log, apply nothing.")] = False,
    once: Annotated[bool, typer.Option("--once", help="One cycle, then exit; the policy stays.")] = False,
    given_devices: DevicesOption = None,
    model: ModelOption = None,
    replay: Annotated[Path | None, typer.Option("--replay", help="Audit log for --advisor replay.")] = None,
    fallback: Annotated[
        str | None, typer.Option("--fallback", help="When the LLM fails: keep or heuristic.")
    ] = None,
    revert_threshold: Annotated[
        float, typer.Option("--revert-threshold", help="Remote-fraction rise that reverts a generation.")
    ] = 0.2,
    ebpf: EbpfFlag = False,
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help="Serve Prometheus metrics on HOST:PORT (e.g. 127.0.0.1:9464)."),
    ] = None,
    decide_now: Annotated[
        bool, typer.Option("--decide-now", help="Ask the running daemon to decide now (SIGUSR1), and exit.")
    ] = False,
) -> None:
    """Keep placement policy in force: observe, ask the advisor every window, validate, apply,
    measure, revert what made things worse. SIGINT/SIGTERM roll back unless --keep (or --once)."""
    from llamas_ebpf import config
    from llamas_ebpf.advise.heuristic import HeuristicAdvisor
    from llamas_ebpf.controller import Controller, Options
    from llamas_ebpf.devices.descriptions import texts
    from llamas_ebpf.devices.inventory import discover
    from llamas_ebpf.enforce import RequestServer
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.policy.lock import RunLock
    from llamas_ebpf.sense import Sensor
    from llamas_ebpf.systemd import notify

    if decide_now:
        print(ask_to_decide(Paths.from_env()))
        return
    if advisor not in ADVISORS:
        raise LlamasError(f"unknown advisor '{advisor}': choose one of {', '.join(ADVISORS)}")
    if advisor == "replay" and replay is None:
        raise LlamasError("--advisor replay needs --replay AUDIT_LOG")
    if fallback not in (None, "keep", "heuristic"):
        raise LlamasError(f"unknown fallback '{fallback}': keep or heuristic")
    seconds("--interval", interval)
    seconds("--decide-every", decide_every)
    if decide_every is not None and decide_every < interval:
        raise LlamasError("--interval must be positive and --decide-every at least one interval")
    if ebpf:
        _print_programs(advisor, devices_dir(given_devices, Paths.from_env()))
        return
    metrics_at = listen_address(metrics) if metrics is not None else None
    deciding = advisor != "none"
    if not deciding and (dry_run or once):
        raise LlamasError("--dry-run and --once need an advisor: heuristic, claude or replay")
    paths = Paths.from_env()
    settings = config.load(paths)
    # one daemon per state directory; a dry run changes nothing in force and needs no lock
    lock = RunLock(paths.state_dir) if not dry_run else None
    enforcer = None
    try:
        enforcer = open_enforcer(paths)
        if policy is not None:
            print(say_applied(apply_file(enforcer, policy)))
    except BaseException:
        if enforcer is not None:
            enforcer.close()
        if lock is not None:
            lock.close()
        raise
    if advisor == "claude":
        require_key()  # before minutes of compiling, not after
    # built beside the BPF compiles: importing the anthropic SDK takes as long as they do on a
    # slow machine (minutes under the lab's TCG)
    prepared = (in_background(lambda: build_advisor(advisor, settings.llm, paths, model, replay))
                if deciding else None)
    devices = devices_dir(given_devices, paths)
    fallback = fallback or settings.llm.fallback
    inventory = discover(devices_dir=devices)
    for error in inventory.description_errors:
        print(f"llamas: {error} (description ignored)", file=sys.stderr)
    options = Options(decide_every=decide_every or (60.0 if advisor == "claude" else 10.0), interval=interval,
                      dry_run=dry_run, once=once, revert_threshold=revert_threshold)
    sensor = server = None
    failed = False
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        sensor = Sensor(only=advisor_probes(inventory)) if prepared is not None else None
        server = stop.server = RequestServer(enforcer, paths.bpf_dir)
        chosen = prepared() if prepared is not None else None
        backup = HeuristicAdvisor() if fallback == "heuristic" and advisor not in ("heuristic", "none") \
            else None
        controller = Controller(enforcer, sensor, server, chosen, inventory, options, texts(devices),
                                fallback=backup)
        controller.on_reload = lambda c: _reload(c, paths, devices)
        if metrics_at is not None:
            from llamas_ebpf.faces.metrics import Exporter

            serve_metrics(metrics_at, Exporter(controller))
        signal.signal(signal.SIGHUP, lambda *_: setattr(controller, "reload_requested", True))
        signal.signal(signal.SIGUSR1, lambda *_: setattr(controller, "decide_requested", True))
        state = enforcer.state
        if chosen is None:
            doing = (f"keeping generation {state.generation} in force" if state.document is not None
                     else "no policy in force: waiting for llamas policy apply")
        else:
            mode = "dry run, " if dry_run else ""
            doing = f"{mode}{advisor} advisor deciding every {options.decide_every:g} s"
        print(f"llamas: {doing}{' (once)' if once else ' (Ctrl-C to stop)'}", file=sys.stderr)
        enforcer.sweep()
        notify("READY=1", f"STATUS={doing}")
        last = controller.run()
        if once and (last.get("event") == "refused" or last.get("outcome") == "unavailable"):
            failed = True  # nothing changed; a script should know
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.close()
        if sensor is not None:
            sensor.close()
        notify("STOPPING=1")
        enforcer.refresh()  # a generation applied from another shell a moment ago goes too
        if not (keep or once or dry_run) and enforcer.state.document is not None:
            restored = enforcer.rollback("controller stopped")
            print(f"llamas: rolled back; {restored} threads restored", file=sys.stderr)
            say_notes(enforcer)
        enforcer.close()
        if lock is not None:
            lock.close()
    if failed:
        raise typer.Exit(1)


def _print_programs(advisor: str, devices: Path) -> None:
    """What `run` would load: the sensor's probes (with an advisor) and bpf/enforce.c."""
    from llamas_ebpf.devices.inventory import discover
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.probes.base import bpf_source
    from llamas_ebpf.sense import program_text

    paths = Paths.from_env()
    if advisor != "none":
        print(program_text(advisor_probes(discover(devices_dir=devices))))
        print()
    print(f'#define PIN_DIR "{paths.pin_dir}"\n' + bpf_source(paths.bpf_dir, "enforce.c"))


def _reload(controller: Controller, paths: Paths, devices: Path) -> None:
    """SIGHUP: config.toml's guardrails and the device descriptions, read again. A file that no
    longer parses keeps what was in force, and says why."""
    from llamas_ebpf import config
    from llamas_ebpf.devices.descriptions import texts
    from llamas_ebpf.devices.inventory import discover

    try:
        settings = config.load(paths)
    except LlamasError as exc:
        controller.say(f"SIGHUP: {exc}; keeping the configuration in force")
        return
    inventory = discover(devices_dir=devices)
    for error in inventory.description_errors:
        controller.say(f"SIGHUP: {error} (description ignored)")
    controller.enforcer.guard = settings.guardrails
    controller.inventory, controller.description_texts = inventory, texts(devices)
    count = len(controller.description_texts)
    controller.say(f"SIGHUP: reloaded {paths.config_dir / 'config.toml'} and {count} device descriptions")
