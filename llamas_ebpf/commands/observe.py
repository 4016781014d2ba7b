"""`llamas observe [interval [count]]`: per-process counts each interval, as a table or JSON lines;
`--save` appends the snapshots to a file that later commands load."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from llamas_ebpf.commands.common import EbpfFlag, JsonFlag, check_pids, devices_dir, seconds
from llamas_ebpf.errors import LlamasError
from llamas_ebpf.metrics import KEEP_TOP


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
    fmt: Annotated[
        str, typer.Option("--format", help="table, json (as --json) or openmetrics (Prometheus text).")
    ] = "table",
    save: Annotated[
        Path | None, typer.Option("--save", help="Append each snapshot to FILE as a JSON line.")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Rows per interval in the table (0: all).")] = 20,
    busiest: Annotated[
        int,
        typer.Option("--busiest", help="Processes a snapshot keeps by each measure (faults, pages "
                                       "allocated, remote allocations, remote hinting faults, "
                                       "cross-node CPU moves): the K busiest of each; the rest are "
                                       "summed as `others` (0: keep every one; -p and --cgroup keep "
                                       "every one they name)."),
    ] = KEEP_TOP,
    bpf_stats: Annotated[
        bool,
        typer.Option("--bpf-stats", help="Measure BPF run time per event (BPF_ENABLE_STATS; adds cost)."),
    ] = False,
    probes: Annotated[
        str | None,
        typer.Option("--probes", help="Only these probes, comma-separated (default: all; `llamas doctor` "
                                      "lists them)."),
    ] = None,
    ebpf: EbpfFlag = False,
) -> None:
    """Show what the probes count, per process and per interval."""
    from llamas_ebpf.devices.recording import record
    from llamas_ebpf.faces.observe import render
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.sense import Sensor, paced
    from llamas_ebpf.snapshot import save as save_snapshots

    only = probe_names(probes)
    if ebpf:
        from llamas_ebpf.sense import program_text

        print(program_text(only, pid, cgroup, cuda_lib))
        return
    if fmt not in ("table", "json", "openmetrics"):
        raise LlamasError(f"unknown format '{fmt}': table, json or openmetrics")
    fmt = "json" if json_out else fmt
    seconds("interval", interval)
    check_pids("-p", pid)
    if count is not None and count < 1:
        raise LlamasError("count must be at least 1")
    if busiest < 0:
        raise LlamasError("--busiest must be at least 0")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    exporter = registry = None
    if fmt == "openmetrics":
        from prometheus_client import CollectorRegistry

        from llamas_ebpf.faces.metrics import Exporter

        registry = CollectorRegistry()
        exporter = Exporter()
        registry.register(exporter)
    with Sensor(pids=pid, cgroups=cgroup, cuda_lib=cuda_lib, bpf_stats=bpf_stats, only=only,
                keep_top=busiest or None) as sensor:
        if fmt == "table":
            print(f"Tracing faults, NUMA misses, migrations, GPU calls every {interval:g}s. Ctrl-C to end.",
                  file=sys.stderr)
        header = record(devices_dir(None, Paths.from_env())).to_json() if save is not None else None
        for _ in paced(interval, count=count):
            snap = sensor.collect()
            if save is not None:
                save_snapshots([snap], save, header)
                header = None  # once per run, before its first snapshot
            if exporter is not None and registry is not None:
                from prometheus_client.openmetrics.exposition import generate_latest

                exporter.observe(snap)
                sys.stdout.write(generate_latest(registry).decode())
                sys.stdout.flush()
            elif fmt == "json":
                print(snap.to_json(), flush=True)
            else:
                print(render(snap, top or None), flush=True)
                print(flush=True)


def probe_names(text: str | None) -> set[str] | None:
    """--probes: known probe names only, said in one line otherwise."""
    if text is None:
        return None
    from llamas_ebpf.sense import PROBES

    known = {cls.name for cls in PROBES}
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - known)
    if unknown or not names:
        from llamas_ebpf.faces.text import safe

        raise LlamasError(f"--probes: {safe(', '.join(unknown)) or 'none given'}: "
                          f"the probes are {', '.join(sorted(known))}")
    return names
