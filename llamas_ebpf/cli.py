"""The `llamas` command line. Every failure is one line on stderr and exit status 2."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from llamas_ebpf.errors import LlamasError

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Memory and CPU placement for tiered-memory hosts, from BPF telemetry.",
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print data as JSON.")]


def _doctor_report() -> dict:
    from llamas_ebpf.kernel import features, headers, mounts
    from llamas_ebpf.sense import Sensor, require_bpf

    mounted = mounts.ensure_mounted() if os.geteuid() == 0 else []
    caps = features.probe()
    require_bpf(caps)
    hdr = headers.discover()
    with Sensor(bpf_stats=False) as sensor:
        probes = {
            name: {"method": h.method, "status": h.status, "reason": h.reason}
            for name, h in sensor.health.items()
        }
        build = {
            "shared_object": list(sensor.bundle.health),
            "note": sensor.bundle.note,
            "seconds": round(sensor.build_s, 2),
        }
    return {
        "kernel": os.uname().release,
        "headers": {
            "path": str(hdr.path) if hdr.path else None,
            "release": hdr.release,
            "matches_running_kernel": hdr.matches,
            "note": hdr.describe(),
        },
        "mounted_now": mounted,
        "capabilities": caps.to_dict(),
        "probes": probes,
        "build": build,
    }


@app.command()
def doctor(json_out: JsonFlag = False) -> None:
    """What this kernel supports, and which attach method each probe uses and why."""
    report = _doctor_report()
    if json_out:
        print(json.dumps(report, indent=2))
        return
    from llamas_ebpf.faces.text import safe

    print(f"kernel   {report['kernel']}")
    print(f"headers  {report['headers']['note']}")
    for what in report["mounted_now"]:
        print(f"mounted  {what}")
    caps = report["capabilities"]
    print("program types:")
    for name, feature in caps["program_types"].items():
        mark = "yes" if feature["available"] else "no "
        print(f"  {name:<15} {mark} {feature['reason']}")
    for name in ("kprobes", "uprobes"):
        feature = caps[name]
        print(f"  {name:<15} {'yes' if feature['available'] else 'no '} {feature['reason']}")
    print("probes:")
    for name, probe in report["probes"].items():
        method = probe["method"] or "-"
        print(f"  {name:<13} {probe['status']:<12} {method:<18} {safe(probe['reason'])}")
    build = report["build"]
    together = ", ".join(build["shared_object"]) or "none"
    print(f"build    {build['seconds']} s; one BPF object for: {together}")
    if build["note"]:
        print(f"         {safe(build['note'])}")


@app.command()
def observe(
    interval: Annotated[float, typer.Argument(help="Seconds between outputs.")] = 1.0,
    count: Annotated[int | None, typer.Argument(help="Number of outputs (default: until Ctrl-C).")] = None,
    pid: Annotated[
        list[int] | None,
        typer.Option("-p", "--pid", help="Only this process (repeatable); also counts its 2 MiB regions."),
    ] = None,
    cgroup: Annotated[
        list[Path] | None,
        typer.Option("--cgroup", help="Only processes in this cgroup v2 path (repeatable)."),
    ] = None,
    cuda_lib: Annotated[
        Path | None,
        typer.Option("--cuda-lib", help="The CUDA driver library (default: libcuda.so.1 via ldconfig)."),
    ] = None,
    json_out: JsonFlag = False,
    save: Annotated[
        Path | None, typer.Option("--save", help="Append each snapshot to FILE as a JSON line.")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Rows per interval in the table (0: all).")] = 20,
    bpf_stats: Annotated[
        bool,
        typer.Option("--bpf-stats", help="Measure BPF run time per event (BPF_ENABLE_STATS; adds cost)."),
    ] = False,
) -> None:
    """Show what the probes count, per process and per interval."""
    from llamas_ebpf.faces.observe import render
    from llamas_ebpf.sense import Sensor
    from llamas_ebpf.snapshot import save as save_snapshots

    if interval <= 0:
        raise LlamasError("interval must be a positive number of seconds")
    if count is not None and count < 1:
        raise LlamasError("count must be at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Sensor(pids=pid, cgroups=cgroup, cuda_lib=cuda_lib, bpf_stats=bpf_stats) as sensor:
        if not json_out:
            print(f"Tracing faults, NUMA misses, migrations, GPU calls every {interval:g}s. Ctrl-C to end.",
                  file=sys.stderr)
        emitted = 0
        deadline = time.monotonic() + interval
        while count is None or emitted < count:
            time.sleep(max(deadline - time.monotonic(), 0))
            deadline += interval
            snap = sensor.collect()
            if save is not None:
                save_snapshots([snap], save)
            if json_out:
                print(snap.to_json(), flush=True)
            else:
                print(render(snap, top or None), flush=True)
                print(flush=True)
            emitted += 1


@app.command()
def devices(
    devices_dir: Annotated[
        Path | None,
        typer.Option("--devices", help="Device descriptions (*.toml); default $LLAMAS_CONFIG_DIR/devices."),
    ] = None,
    sysfs_root: Annotated[
        Path, typer.Option("--sysfs-root", help="Read DIR/sys/... instead of /sys (a captured tree).")
    ] = Path("/"),
    capture_dir: Annotated[
        Path | None, typer.Option("--capture", help="Write this host's sysfs facts as a tree under DIR.")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Every memory node, GPU and NIC: the kernel's facts merged with the device descriptions."""
    from llamas_ebpf.devices.capture import capture
    from llamas_ebpf.devices.inventory import discover
    from llamas_ebpf.faces.devices import render
    from llamas_ebpf.paths import Paths

    if capture_dir is not None:
        if capture_dir.exists() and any(capture_dir.iterdir()):
            raise LlamasError(f"{capture_dir} is not empty: capture into a new directory")
        count = capture(capture_dir, sysfs_root)
        print(f"captured {count} files under {capture_dir}; read them with --sysfs-root {capture_dir}")
        return
    if not (sysfs_root / "sys/devices/system").is_dir():
        raise LlamasError(f"{sysfs_root} holds no sys/devices/system: not a sysfs root")
    directory = devices_dir if devices_dir is not None else Paths.from_env().config_dir / "devices"
    if devices_dir is not None and not devices_dir.is_dir():
        raise LlamasError(f"{devices_dir}: no such directory")
    inventory = discover(sysfs_root, directory)
    for error in inventory.description_errors:
        print(f"llamas: {error}", file=sys.stderr)
    print(inventory.to_json() if json_out else render(inventory))
    if inventory.description_errors:
        raise typer.Exit(1)


policy_app = typer.Typer(no_args_is_help=True, help="Show, apply and roll back placement policy.")
app.add_typer(policy_app, name="policy")


def _enforcer():  # type: ignore[no-untyped-def]
    from llamas_ebpf import config
    from llamas_ebpf.enforce import Enforcer
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.policy.validate import HostFacts

    if os.geteuid() != 0:
        raise LlamasError("not root: policy maps and affinity changes need root")
    paths = Paths.from_env()
    return Enforcer(paths, config.load(paths).guardrails, HostFacts.from_host())


@policy_app.command("show")
def policy_show(json_out: JsonFlag = False) -> None:
    """The policy in force, with its generation."""
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.policy.state import PolicyState

    state = PolicyState.load(Paths.from_env().state_dir)
    if json_out:
        doc = json.loads(state.document.to_json()) if state.document else None
        report = {"generation": state.generation, "in_force": doc is not None, "digest": state.digest,
                  "advisor": state.advisor, "applied_at": state.applied_at, "document": doc}
        print(json.dumps(report, indent=2))
        return
    if state.document is None:
        print(f"no policy in force (last generation {state.generation})")
        return
    from llamas_ebpf.faces.text import safe

    print(f"generation {state.generation}, applied {time.ctime(state.applied_at or 0)} by {state.advisor}")
    print(f"rationale: {safe(state.document.rationale)}")
    for rule in state.document.rules:
        print(f"  {rule.model_dump_json(exclude_none=True)}")


@policy_app.command("apply")
def policy_apply(
    file: Annotated[Path, typer.Argument(help="A llamas.policy/v1 JSON document ('-': standard input).")],
    json_out: JsonFlag = False,
) -> None:
    """Validate a document and put it in force; a refused one changes nothing."""
    from llamas_ebpf.policy.state import digest
    from llamas_ebpf.policy.validate import validate

    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise LlamasError(f"{file}: {exc.strerror}") from None
    enforcer = _enforcer()
    try:
        checked = validate(raw, enforcer.host, enforcer.guard)
        if not checked.ok:
            enforcer.refuse(digest(raw), "file", checked.errors, source=str(file))
            count = len(checked.errors)
            print(f"llamas: {file} refused, nothing changed ({count} problems):", file=sys.stderr)
            for error in checked.errors:
                print(f"  {error}", file=sys.stderr)
            raise typer.Exit(2)
        assert checked.document is not None
        applied = enforcer.apply(checked.document, digest(raw), "file", source=str(file))
    finally:
        enforcer.close()
    if json_out:
        print(json.dumps({"generation": applied.generation, "processes": applied.processes,
                          "threads_pinned": applied.threads_pinned, "diff": applied.diff}))
    else:
        print(f"generation {applied.generation} in force: {applied.processes} running processes taken, "
              f"{applied.threads_pinned} threads pinned; added {applied.diff['added']}, "
              f"removed {applied.diff['removed']}, changed {applied.diff['changed']}")


@policy_app.command("rollback")
def policy_rollback(json_out: JsonFlag = False) -> None:
    """Take the policy out of force and put back every original affinity mask."""
    enforcer = _enforcer()
    try:
        restored = enforcer.rollback("llamas policy rollback")
        generation = enforcer.state.generation
    finally:
        enforcer.close()
    if json_out:
        print(json.dumps({"generation": generation, "threads_restored": restored}))
    else:
        print(f"no policy in force; {restored} threads back on their original CPUs")


@policy_app.command("history")
def policy_history(json_out: JsonFlag = False) -> None:
    """Every applied generation, refusal and rollback, from the audit log."""
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.policy.state import AuditLog

    entries = AuditLog(Paths.from_env().state_dir).entries()
    if json_out:
        print(json.dumps(entries, indent=2))
        return
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["time"]))
        detail = entry.get("diff") or entry.get("validation")
        generation = entry.get("generation", "-")
        print(f"{when} {entry['event']:<8} gen {generation} {entry.get('advisor', '')} {detail}")


def _stop(_signum: int, _frame: object) -> None:
    """SIGTERM ends `llamas run` the way Ctrl-C does: through its rollback."""
    raise KeyboardInterrupt


@app.command()
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
    from llamas_ebpf.faces import top as top_face
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.sense import Sensor

    if os.geteuid() != 0:
        raise LlamasError("not root: llamas top loads BPF programs (run it with sudo)")
    if interval <= 0:
        raise LlamasError("--interval must be positive")
    state_dir = Paths.from_env().state_dir
    tiers = {n.id: n.tier for n in discover_nodes(Path("/"))}

    def make_context(pids: list[int]) -> top_face.Context:
        return top_face.context(state_dir, tiers, pids)

    console = Console()
    with Sensor(bpf_stats=bpf_stats, detail_top=40) as sensor:
        if once:
            time.sleep(interval)
            snap = sensor.collect()
            state = top_face.TopState()
            state.remember(snap)
            height = console.size.height if console.is_terminal else 10_000
            ctx = make_context([p.pid for p in snap.processes[:height]])
            console.print(top_face.render(snap, ctx, state, console.size.width, height))
            return
        top_face.run_live(sensor, interval, make_context, console)


@app.command()
def audit(
    duration: Annotated[float, typer.Option("--duration", help="Seconds to observe.")] = 30.0,
    snapshot: Annotated[
        list[Path] | None, typer.Option("--snapshot", help="Audit saved snapshots (observe --save) instead.")
    ] = None,
    advisor: Annotated[str, typer.Option("--advisor", help="heuristic (default) or claude.")] = "heuristic",
    fmt: Annotated[str, typer.Option("--format", help="md, html or json.")] = "md",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the report here.")] = None,
    devices_dir: Annotated[
        Path | None,
        typer.Option("--devices", help="Device descriptions (*.toml); default $LLAMAS_CONFIG_DIR/devices."),
    ] = None,
    pids: Annotated[
        list[int] | None, typer.Option("-p", "--pid", help="Also count this process's 2 MiB regions.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", envvar="LLAMAS_MODEL", help="Claude model.")] = None,
    save: Annotated[Path | None, typer.Option("--save", help="Also append the snapshots to FILE.")] = None,
) -> None:
    """A one-shot report: observe, inventory, ask the advisor, write findings and a recommended
    policy (validated, not applied)."""
    from llamas_ebpf import config
    from llamas_ebpf import snapshot as snapshot_mod
    from llamas_ebpf.advise.base import AdvisorInput
    from llamas_ebpf.advise.heuristic import HeuristicAdvisor
    from llamas_ebpf.advise.summary import summarize
    from llamas_ebpf.devices.inventory import discover
    from llamas_ebpf.faces import audit as audit_face
    from llamas_ebpf.kernel import features, nodes
    from llamas_ebpf.loop import description_texts
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.policy.validate import HostFacts, validate

    if fmt not in ("md", "html", "json"):
        raise LlamasError(f"unknown format '{fmt}': md, html or json")
    if advisor not in ("heuristic", "claude"):
        raise LlamasError(f"unknown advisor '{advisor}': heuristic or claude")
    if duration <= 0:
        raise LlamasError("--duration must be positive")
    paths = Paths.from_env()
    settings = config.load(paths)
    devices_dir = devices_dir or paths.config_dir / "devices"
    live = not snapshot
    inventory = discover(devices_dir=devices_dir)
    if advisor == "claude":  # the SDK's import is slow on a slow machine: beside the observation
        _require_key()
        claude = _in_background(_advisor, "claude", settings.llm, paths, model, None)
    if live:
        snaps = _observe_with_progress(duration, pids or [], _advisor_probes(inventory))
        if save is not None:
            try:
                snapshot_mod.save(snaps, save)
            except OSError as exc:
                raise LlamasError(f"{save}: {exc.strerror}") from None
    else:
        snaps = [snap for path in snapshot or [] for snap in snapshot_mod.load(path)]
        if not snaps:
            raise LlamasError("the snapshot files hold no snapshots")
    window = summarize(snaps, cpu_to_node=nodes.cpu_to_node(), read_proc=live)
    host = HostFacts.from_host()
    texts = description_texts(devices_dir)
    given = AdvisorInput(inventory, window, None, [], settings.guardrails, host, texts)
    if advisor == "claude":
        chosen = claude()
    else:
        # live: rules by pid for the processes seen; saved snapshots: by name, for processes to come
        chosen = HeuristicAdvisor() if live else HeuristicAdvisor(touchable=lambda pid: pid > 1,
                                                                  alive=lambda pid: False, match_by="comm")
    advice = chosen.advise(given)
    policy, errors = None, []
    if advice.raw is not None and not advice.keep_current:
        checked = validate(advice.raw, host, settings.guardrails)
        shown = advice.raw if checked.document is None else checked.document.to_json().encode()
        policy = json.loads(shown)
        errors = checked.errors
    policy_path = None
    if output is not None and policy is not None:
        policy_path = output.with_name(output.stem + ".policy.json")
    caps = features.probe().to_dict()
    flat = {k: v for k, v in caps.items() if isinstance(v, dict) and "available" in v}
    flat.update({f"program type {k}": v for k, v in caps.get("program_types", {}).items()})
    report = audit_face.build(window, snaps, inventory, flat, advice, errors, policy,
                              str(policy_path) if policy_path else None)
    text = {"md": audit_face.to_markdown, "html": audit_face.to_html, "json": audit_face.as_json}[fmt](report)
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        try:
            output.write_text(text if text.endswith("\n") else text + "\n")
            if policy_path is not None:
                policy_path.write_text(json.dumps(policy, indent=2) + "\n")
        except OSError as exc:
            raise LlamasError(f"{output}: {exc.strerror}") from None
        where = f" and {policy_path}" if policy_path else ""
        print(f"llamas: wrote {output}{where}: {len(report['findings'])} findings", file=sys.stderr)
    if advice.unavailable:
        print(f"llamas: {advice.unavailable}; the report has no recommended policy", file=sys.stderr)


def _observe_with_progress(duration: float, pids: list[int], probes: set[str]) -> list:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from llamas_ebpf.sense import Sensor

    if os.geteuid() != 0:
        raise LlamasError("not root: observing loads BPF programs (or audit saved ones with --snapshot FILE)")
    snaps = []
    with Sensor(pids=pids, detail_top=32, only=probes) as sensor, Progress(
        TextColumn("observing"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(), transient=True, console=_stderr_console(),
    ) as progress:
        task = progress.add_task("observe", total=duration)
        start = time.monotonic()
        while (left := duration - (time.monotonic() - start)) > 0:
            time.sleep(min(1.0, left))
            snaps.append(sensor.collect())
            progress.update(task, completed=min(time.monotonic() - start, duration))
    return snaps


def _stderr_console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=True)


ADVISORS = ("heuristic", "claude", "replay", "none")


@app.command()
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
    once: Annotated[
        bool, typer.Option("--once", help="One cycle, then exit; the policy stays.")
    ] = False,
    devices_dir: Annotated[
        Path | None,
        typer.Option("--devices", help="Device descriptions (*.toml); default $LLAMAS_CONFIG_DIR/devices."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", envvar="LLAMAS_MODEL", help="Claude model (default: a current Sonnet).")
    ] = None,
    replay: Annotated[
        Path | None, typer.Option("--replay", help="Audit log for --advisor replay.")
    ] = None,
    fallback: Annotated[
        str | None, typer.Option("--fallback", help="When the LLM fails: keep or heuristic.")
    ] = None,
    revert_threshold: Annotated[
        float, typer.Option("--revert-threshold", help="Remote-fraction rise that reverts a generation.")
    ] = 0.2,
) -> None:
    """Keep placement policy in force: observe, ask the advisor every window, validate, apply,
    measure, revert what made things worse. SIGINT/SIGTERM roll back unless --keep (or --once)."""
    from llamas_ebpf import config
    from llamas_ebpf.enforce import Controller
    from llamas_ebpf.paths import Paths

    if advisor not in ADVISORS:
        raise LlamasError(f"unknown advisor '{advisor}': choose one of {', '.join(ADVISORS)}")
    if advisor == "replay" and replay is None:
        raise LlamasError("--advisor replay needs --replay AUDIT_LOG")
    if fallback not in (None, "keep", "heuristic"):
        raise LlamasError(f"unknown fallback '{fallback}': keep or heuristic")
    if interval <= 0 or (decide_every is not None and decide_every < interval):
        raise LlamasError("--interval must be positive and --decide-every at least one interval")
    if advisor == "none":
        if dry_run or once:
            raise LlamasError("--dry-run and --once need an advisor: heuristic, claude or replay")
        _run_without_advisor(policy, keep, interval)
        return
    paths = Paths.from_env()
    settings = config.load(paths)
    if policy is not None:
        policy_apply(policy, json_out=False)
    # built beside the BPF compiles: importing the anthropic SDK takes as long as they do on a
    # slow machine (minutes under the lab's TCG)
    if advisor == "claude":
        _require_key()  # before minutes of compiling, not after
    prepared = _in_background(_advisor, advisor, settings.llm, paths, model, replay)
    fallback = fallback or settings.llm.fallback
    from llamas_ebpf.advise.heuristic import HeuristicAdvisor
    from llamas_ebpf.devices.inventory import discover
    from llamas_ebpf.loop import Options, RunLoop, description_texts
    from llamas_ebpf.sense import Sensor

    devices_dir = devices_dir or paths.config_dir / "devices"
    inventory = discover(devices_dir=devices_dir)
    for error in inventory.description_errors:
        print(f"llamas: {error} (description ignored)", file=sys.stderr)
    options = Options(decide_every=decide_every or (60.0 if advisor == "claude" else 10.0), interval=interval,
                      dry_run=dry_run, once=once, revert_threshold=revert_threshold)
    enforcer = _enforcer()
    sensor = controller = None
    failed = False
    signal.signal(signal.SIGTERM, _stop)
    try:
        sensor = Sensor(only=_advisor_probes(inventory))
        controller = Controller(enforcer, paths.bpf_dir)
        chosen = prepared()
        texts = description_texts(devices_dir)
        backup = HeuristicAdvisor() if fallback == "heuristic" and advisor != "heuristic" else None
        loop = RunLoop(enforcer, sensor, controller, chosen, inventory, options, texts, fallback=backup)
        mode = "dry run, " if dry_run else ""
        print(f"llamas: {mode}{advisor} advisor deciding every {options.decide_every:g} s"
              f"{' (once)' if once else ' (Ctrl-C to stop)'}", file=sys.stderr)
        enforcer.sweep()
        last = loop.run()
        if once and (last.get("event") == "refused" or last.get("outcome") == "unavailable"):
            failed = True  # nothing changed; a script should know
    except KeyboardInterrupt:
        pass
    finally:
        if controller is not None:
            controller.close()
        if sensor is not None:
            sensor.close()
        if not (keep or once or dry_run) and enforcer.state.document is not None:
            _roll_back_on_stop(enforcer)
        enforcer.close()
    if failed:
        raise typer.Exit(1)


def _advisor_probes(inventory) -> set[str]:  # type: ignore[no-untyped-def]
    """The probes whose counts the advisors and the audit read; the GPU ones only where there is a
    GPU (each probe adds to the BPF object compiled at start-up: seconds on a slow machine)."""
    probes = {"faults", "numa_alloc", "numa_hint", "cpu_migrate", "taskstats"}
    return probes | {"cuda", "gpu_fence"} if inventory.gpus else probes


def _require_key() -> None:
    from llamas_ebpf.advise.claude import check_key

    check_key(os.environ.get("ANTHROPIC_API_KEY"))


def _in_background(fn: Callable[..., T], *args: object) -> Callable[[], T]:
    """Start fn(*args) in a daemon thread; the returned callable waits for it and returns its
    result or raises its exception. For slow pure-Python work (imports) beside BPF compiles,
    which release the GIL."""
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=work, name="llamas-prepare", daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

    return result


def _advisor(name: str, llm, paths, model: str | None, replay: Path | None):  # type: ignore[no-untyped-def]
    if name == "heuristic":
        from llamas_ebpf.advise.heuristic import HeuristicAdvisor

        return HeuristicAdvisor()
    if name == "replay":
        from llamas_ebpf.advise.replay import ReplayAdvisor

        assert replay is not None
        return ReplayAdvisor(replay)
    from llamas_ebpf.advise.claude import ClaudeAdvisor
    from llamas_ebpf.policy.state import AuditLog

    env = os.environ.get
    return ClaudeAdvisor(llm, AuditLog(paths.state_dir), model=model, api_key=env("ANTHROPIC_API_KEY"),
                         base_url=env("ANTHROPIC_BASE_URL"))


def _run_without_advisor(policy: Path | None, keep: bool, interval: float) -> None:
    from llamas_ebpf.enforce import Controller
    from llamas_ebpf.paths import Paths

    if policy is not None:
        policy_apply(policy, json_out=False)
    enforcer = _enforcer()
    if enforcer.state.document is None:
        enforcer.close()
        raise LlamasError("no policy in force: give --policy FILE or run llamas policy apply first")
    signal.signal(signal.SIGTERM, _stop)
    controller = Controller(enforcer, Paths.from_env().bpf_dir)
    generation = enforcer.state.generation
    print(f"llamas: keeping generation {generation} in force (Ctrl-C to stop)", file=sys.stderr)
    try:
        enforcer.sweep()
        while True:
            controller.serve(interval)
            controller.tick()
    except KeyboardInterrupt:
        pass
    finally:
        controller.close()
        if not keep:
            _roll_back_on_stop(enforcer)
        enforcer.close()


def _roll_back_on_stop(enforcer) -> None:  # type: ignore[no-untyped-def]
    """A controller that stops takes its policy with it unless told to --keep it."""
    restored = enforcer.rollback("controller stopped")
    print(f"llamas: rolled back; {restored} threads restored", file=sys.stderr)


def main() -> None:
    try:
        app()
    except LlamasError as exc:
        print(f"llamas: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
