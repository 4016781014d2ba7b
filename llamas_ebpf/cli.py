"""The `llamas` command line. Every failure is one line on stderr and exit status 2."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from llamas_ebpf.errors import LlamasError

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
