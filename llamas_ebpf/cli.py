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


def _one_line(exc: typer.TyperException) -> str:
    """A usage error as one line (typer's own is a boxed panel of five), naming the help to read."""
    ctx = getattr(exc, "ctx", None)  # a usage error knows the command it was for
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"llamas: {safe(exc.format_message())}{where}"


def main() -> None:
    try:
        # standalone_mode off: click's own errors come here, to be one line like every other
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's errors: usage, a bad parameter, a missing file
        print(_one_line(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except LlamasError as exc:
        # the one error boundary: what a message quotes from input (a path, a value, an LLM's
        # text) cannot move the cursor or forge a line
        print(f"llamas: {safe(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    # typer.Exit(n) comes back as n; a command's own return value is None
    if isinstance(code, int) and code:
        sys.exit(code)
