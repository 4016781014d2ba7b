"""`llamas devices`: every memory node, GPU, NIC, CXL and DAX device, the kernel's facts merged
with the administrator's descriptions; `--capture DIR` writes this host's sysfs facts as a tree."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from llamas_ebpf.commands.common import DevicesOption, JsonFlag, devices_dir
from llamas_ebpf.errors import LlamasError


def devices(
    given_dir: DevicesOption = None,
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
    if given_dir is not None and not given_dir.is_dir():
        raise LlamasError(f"{given_dir}: no such directory")
    inventory = discover(sysfs_root, devices_dir(given_dir, Paths.from_env()))
    for error in inventory.description_errors:
        print(f"llamas: {error}", file=sys.stderr)
    print(inventory.to_json() if json_out else render(inventory))
    if inventory.description_errors:
        raise typer.Exit(1)
