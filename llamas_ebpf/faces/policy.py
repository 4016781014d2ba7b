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
    """One line an entry; a run of decisions the advisor was not asked for is one line, with how
    many and why."""
    lines: list[str] = []
    skipped: list[dict[str, Any]] = []

    def flush() -> None:
        if skipped:
            first, last = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"])) for e in
                           (skipped[0], skipped[-1]))
            lines.append(safe(f"{first} skipped  {len(skipped)} decisions to {last} "
                              f"{skipped[0].get('advisor', '')}: {skipped[0].get('reason', '')}"))
            skipped.clear()

    for entry in entries:
        if entry.get("outcome") == "skipped":
            skipped.append(entry)
            continue
        flush()
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["time"]))
        detail = (entry.get("diff") or entry.get("validation") or entry.get("served_by")
                  or entry.get("outcome"))
        if entry.get("asked_because"):
            detail = f"{detail} (asked: {'; '.join(entry['asked_because'])})"
        generation = entry.get("generation", "-")
        lines.append(safe(f"{when} {entry['event']:<8} gen {generation} {entry.get('advisor', '')} {detail}"))
    flush()
    return "\n".join(lines)
