"""`llamas service show|install`: the systemd unit that runs `llamas run` as a service
(llamas_ebpf/units/llamas.service, Type=notify, hardened to the capabilities it was measured to
need), with ExecStart naming the llamas this command runs as."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from llamas_ebpf.errors import LlamasError

app = typer.Typer(no_args_is_help=True, help="The systemd unit for llamas run.")


def executable() -> Path:
    """The llamas entry point this process was started as (or the one on PATH)."""
    here = Path(sys.argv[0])
    if here.name == "llamas" and here.exists():
        return here.resolve()
    found = shutil.which("llamas")
    if found is None:
        raise LlamasError("cannot tell where the llamas command is installed: run it by its path")
    return Path(found).resolve()


def unit_text(llamas: Path) -> str:
    template = (resources.files("llamas_ebpf.units") / "llamas.service").read_text()
    return template.replace("@LLAMAS@", str(llamas))


@app.command("show")
def show() -> None:
    """Print the unit as `install` would write it."""
    sys.stdout.write(unit_text(executable()))


@app.command("install")
def install(
    unit_dir: Annotated[
        Path, typer.Option("--unit-dir", help="Where unit files go.")
    ] = Path("/etc/systemd/system"),
    config_dir: Annotated[
        Path, typer.Option("--config-dir", help="Where llamas.env goes (kept if there).")
    ] = Path("/etc/llamas"),
) -> None:
    """Write llamas.service and, if missing, llamas.env (0600); reload systemd where it runs."""
    if os.geteuid() != 0:
        raise LlamasError("not root: installing a system service needs root")
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        (unit_dir / "llamas.service").write_text(unit_text(executable()))
        config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = config_dir / "llamas.env"
        if not env.exists():
            fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write((resources.files("llamas_ebpf.units") / "llamas.env").read_text())
    except OSError as exc:
        raise LlamasError(f"{exc.filename}: {exc.strerror}") from None
    print(f"wrote {unit_dir / 'llamas.service'} and {env}")
    if Path("/run/systemd/system").is_dir():  # systemd is the init
        subprocess.run(["systemctl", "daemon-reload"], check=False)
        print("systemd reloaded; start it with: systemctl enable --now llamas")
    else:
        print("systemd is not running here; on a host that boots it: systemctl enable --now llamas")
