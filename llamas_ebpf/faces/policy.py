"""`llamas policy show` and `llamas policy history` as text."""

from __future__ import annotations

import time
from typing import Any

from llamas_ebpf.faces.text import safe
from llamas_ebpf.policy.state import PolicyState


def show(state: PolicyState) -> str:
    if state.document is None:
        return f"no policy in force (last generation {state.generation})"
    lines = [f"generation {state.generation}, applied {time.ctime(state.applied_at or 0)} by {state.advisor}",
             f"rationale: {safe(state.document.rationale)}"]
    lines += [f"  {rule.model_dump_json(exclude_none=True)}" for rule in state.document.rules]
    return "\n".join(lines)


def history(entries: list[dict[str, Any]]) -> str:
    lines = []
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["time"]))
        detail = entry.get("diff") or entry.get("validation")
        generation = entry.get("generation", "-")
        lines.append(safe(f"{when} {entry['event']:<8} gen {generation} {entry.get('advisor', '')} {detail}"))
    return "\n".join(lines)
