"""`llamas policy show|apply|rollback|history`: the policy in force, putting a document in force
(validated against this host and its guardrails; a refused one changes nothing), taking it out
with every original restored, and the audit log."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llamas_ebpf import inputs
from llamas_ebpf.commands.common import JsonFlag, open_enforcer, say_notes
from llamas_ebpf.errors import LlamasError
from llamas_ebpf.faces.text import safe

if TYPE_CHECKING:
    from llamas_ebpf.enforce import Applied, Enforcer

app = typer.Typer(no_args_is_help=True, help="Show, apply and roll back placement policy.")


def read_document(file: Path) -> bytes:
    """A policy document from a file or stdin ('-'), through the one bounded reader."""
    return inputs.read_bytes(file, inputs.POLICY_BYTES)


def apply_file(enforcer: Enforcer, file: Path, raw: bytes | None = None) -> Applied:
    """Validate the document in `file` (or `raw`, read from it already) and put it in force. A
    refusal is printed, every problem on a line of its own, and ends the command with status 2;
    nothing changes."""
    from llamas_ebpf.enforce import Refused

    try:
        return enforcer.apply_raw(read_document(file) if raw is None else raw, "file", str(file))
    except Refused as refused:
        print(f"llamas: {safe(str(refused))}:", file=sys.stderr)
        for error in refused.errors:
            print(f"  {safe(error)}", file=sys.stderr)
        raise typer.Exit(2) from None


def say_applied(applied: Applied) -> str:
    return (f"generation {applied.generation} in force: {applied.processes} running processes taken, "
            f"{applied.threads_pinned} threads pinned; added {applied.diff['added']}, "
            f"removed {applied.diff['removed']}, changed {applied.diff['changed']}")


@app.command("show")
def show(json_out: JsonFlag = False) -> None:
    """The policy in force, with its generation."""
    from llamas_ebpf.faces import policy as face
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.policy.state import PolicyState

    state_dir = Paths.from_env().state_dir
    try:
        state = PolicyState.load(state_dir)
    except OSError as exc:
        raise LlamasError(f"{state_dir}: {exc.strerror} (the state is root's)") from None
    if state.recovered:  # said; written back by the next command that changes the state
        print(f"llamas: {safe(state.recovered)}", file=sys.stderr)
    if json_out:
        doc = json.loads(state.document.to_json()) if state.document else None
        print(json.dumps({"generation": state.generation, "in_force": doc is not None, "digest": state.digest,
                          "advisor": state.advisor, "applied_at": state.applied_at, "document": doc},
                         indent=2))
        return
    print(face.show(state))


@app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="A llamas.policy/v1 JSON document ('-': standard input).")],
    json_out: JsonFlag = False,
) -> None:
    """Validate a document and put it in force; a refused one changes nothing."""
    raw = read_document(file)
    enforcer = open_enforcer()
    try:
        applied = apply_file(enforcer, file, raw)
    finally:
        enforcer.close()
    if json_out:
        print(json.dumps({"generation": applied.generation, "processes": applied.processes,
                          "threads_pinned": applied.threads_pinned, "diff": applied.diff}))
    else:
        print(say_applied(applied))


@app.command("rollback")
def rollback(json_out: JsonFlag = False) -> None:
    """Take the policy out of force and put back every original affinity mask."""
    enforcer = open_enforcer()
    try:
        restored = enforcer.rollback("llamas policy rollback")
        generation = enforcer.state.generation
    finally:
        enforcer.close()
    say_notes(enforcer)
    if json_out:
        print(json.dumps({"generation": generation, "threads_restored": restored}))
    else:
        print(f"no policy in force; {restored} threads back on their original CPUs")


@app.command("history")
def history(json_out: JsonFlag = False) -> None:
    """Every applied generation, refusal and rollback, from the audit log."""
    from llamas_ebpf.faces import policy as face
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.policy.state import AuditLog

    log = AuditLog(Paths.from_env().state_dir)
    try:
        entries = log.entries()
    except OSError as exc:
        raise LlamasError(f"{log.path}: {exc.strerror}") from None
    if log.torn:
        print(f"llamas: {log.path}: {log.torn} lines do not read back (a write cut short); skipped",
              file=sys.stderr)
    if json_out:
        print(json.dumps(entries, indent=2))
    elif entries:
        print(face.history(entries))
