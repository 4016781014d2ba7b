"""The `llamas` command line: the table of commands (each in llamas_ebpf/commands/) and the one
error boundary. Every failure is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from llamas_ebpf.commands import audit, devices, doctor, observe, policy, run, service, top
from llamas_ebpf.errors import LlamasError
from llamas_ebpf.faces.text import safe

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Memory and CPU placement for tiered-memory hosts, from BPF telemetry.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"llamas-ebpf {version('llamas-ebpf')}")
        raise typer.Exit()


@app.callback()
def _options(
    _show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Memory and CPU placement for tiered-memory hosts, from BPF telemetry."""


app.command()(doctor.doctor)
app.command()(observe.observe)
app.command()(devices.devices)
app.add_typer(policy.app, name="policy")
app.command()(run.run)
app.command()(top.top)
app.command()(audit.audit)
app.add_typer(service.app, name="service")


def main() -> None:
    try:
        app()
    except LlamasError as exc:
        # the one error boundary: what a message quotes from input (a path, a value, an LLM's
        # text) cannot move the cursor or forge a line
        print(f"llamas: {safe(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
