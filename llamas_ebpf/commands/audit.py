"""`llamas audit`: a one-shot report. Observe (or load saved snapshots), take the inventory, ask
the advisor, and write the findings and a recommended policy, validated and not applied; the
report is rendered by llamas_ebpf/faces/audit.py."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llamas_ebpf.commands.common import (
    DevicesOption,
    ModelOption,
    advisor_probes,
    build_advisor,
    check_pids,
    devices_dir,
    in_background,
    require_key,
    seconds,
    stderr_console,
)
from llamas_ebpf.errors import LlamasError

if TYPE_CHECKING:
    from llamas_ebpf.snapshot import Snapshot


def observe_for(duration: float, pids: list[int], probes: set[str]) -> list[Snapshot]:
    """A snapshot a second for `duration` seconds, with a progress bar on stderr."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from llamas_ebpf.sense import Sensor, paced

    if os.geteuid() != 0:
        raise LlamasError("not root: observing loads BPF programs (or audit saved ones with --snapshot FILE)")
    snaps = []
    with Sensor(pids=pids, detail_top=32, only=probes) as sensor, Progress(
        TextColumn("observing"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(), transient=True, console=stderr_console(),
    ) as progress:
        task = progress.add_task("observe", total=duration)
        start = time.monotonic()
        for _ in paced(1.0, duration=duration):
            snaps.append(sensor.collect())
            progress.update(task, completed=min(time.monotonic() - start, duration))
    return snaps


def _judged_host(sysfs_root: Path | None, hosts: list[dict[str, Any]], tmp: Path, devices: Path,
                 files: list[str]) -> tuple[Path, str | None]:
    """The sysfs root to judge against, and how to name it: a captured tree given with
    --sysfs-root, else the host the recording names (restored into `tmp`), else this one."""
    from llamas_ebpf.devices.recording import HostRecord, changed_descriptions

    if sysfs_root is not None:
        if not (sysfs_root / "sys/devices/system").is_dir():
            raise LlamasError(f"{sysfs_root} holds no sys/devices/system: not a sysfs root")
        return sysfs_root, f"the captured host in {sysfs_root}"
    if not hosts:
        return Path("/"), None  # live, or a recording from before hosts were recorded: this host
    recorded = [HostRecord.from_dict(h, ", ".join(files)) for h in hosts]
    first = recorded[0]
    names = sorted({r.host for r in recorded})
    if len(names) > 1:
        print(f"llamas: the snapshots come from {len(names)} hosts ({', '.join(names)}); judging against the "
              f"first, {first.host}", file=sys.stderr)
    changed = changed_descriptions(first, devices)
    if changed:
        print(f"llamas: device descriptions differ from those {first.host} had: {', '.join(changed)}",
              file=sys.stderr)
    kernel = first.kernel
    return first.restore(tmp), f"{first.host} (kernel {kernel}, as recorded)"


def audit(
    duration: Annotated[float, typer.Option("--duration", help="Seconds to observe.")] = 30.0,
    snapshot: Annotated[
        list[Path] | None, typer.Option("--snapshot", help="Audit saved snapshots (observe --save) instead.")
    ] = None,
    advisor: Annotated[str, typer.Option("--advisor", help="heuristic (default) or claude.")] = "heuristic",
    fmt: Annotated[str, typer.Option("--format", help="md, html or json.")] = "md",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the report here.")] = None,
    given_devices: DevicesOption = None,
    pids: Annotated[
        list[int] | None, typer.Option("-p", "--pid", help="Also count this process's 2 MiB regions.")
    ] = None,
    model: ModelOption = None,
    save: Annotated[Path | None, typer.Option("--save", help="Also append the snapshots to FILE.")] = None,
    sysfs_root: Annotated[
        Path | None,
        typer.Option("--sysfs-root", help="Judge against this captured host (devices --capture) instead of "
                     "the one the snapshots recorded."),
    ] = None,
) -> None:
    """A one-shot report: observe, inventory, ask the advisor, write findings and a recommended
    policy (validated, not applied)."""
    from llamas_ebpf import config
    from llamas_ebpf import snapshot as snapshot_mod
    from llamas_ebpf.advise.base import AdvisorInput
    from llamas_ebpf.advise.heuristic import HeuristicAdvisor
    from llamas_ebpf.advise.summary import summarize
    from llamas_ebpf.devices.descriptions import texts
    from llamas_ebpf.devices.inventory import discover
    from llamas_ebpf.devices.recording import record
    from llamas_ebpf.faces import audit as face
    from llamas_ebpf.kernel import features
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.policy.validate import HostFacts, validate

    if fmt not in ("md", "html", "json"):
        raise LlamasError(f"unknown format '{fmt}': md, html or json")
    if advisor not in ("heuristic", "claude"):
        raise LlamasError(f"unknown advisor '{advisor}': heuristic or claude")
    seconds("--duration", duration)
    check_pids("-p", pids)
    paths = Paths.from_env()
    settings = config.load(paths)
    devices = devices_dir(given_devices, paths)
    live = not snapshot
    hosts: list[dict[str, Any]] = []
    if not live:
        snaps = [snap for path in snapshot or [] for snap in snapshot_mod.load(path, hosts)]
        if not snaps:
            raise LlamasError("the snapshot files hold no snapshots")
    with tempfile.TemporaryDirectory(prefix="llamas-recorded-") as tmp:
        root, judged = _judged_host(sysfs_root, hosts, Path(tmp), devices, [str(p) for p in snapshot or []])
        inventory = discover(root, devices)
        host = HostFacts.from_host(root)
    if judged:
        inventory.host = judged
        print(f"llamas: judging against {judged}", file=sys.stderr)
    if advisor == "claude":  # the SDK's import is slow on a slow machine: beside the observation
        require_key()
        claude = in_background(lambda: build_advisor("claude", settings.llm, paths, model, None))
    if live:
        snaps = observe_for(duration, pids or [], advisor_probes(inventory))
        if save is not None:
            snapshot_mod.save(snaps, save, record(devices).to_json())
    window = summarize(snaps)
    given = AdvisorInput(inventory, window, None, [], settings.guardrails, host, texts(devices))
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
    balancing = None
    if live:  # what the kernel's NUMA balancing is set to now (recordings do not carry it)
        try:
            balancing = int(Path("/proc/sys/kernel/numa_balancing").read_text())
        except (OSError, ValueError):
            balancing = None
    report = face.build(window, snaps, inventory, flat, advice, errors, policy,
                        str(policy_path) if policy_path else None, balancing)
    text = {"md": face.to_markdown, "html": face.to_html, "json": face.as_json}[fmt](report)
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
