"""The replay advisor: re-issues the decisions of an audit log, in order, one per decision window,
to reproduce an incident. Each document goes through validation again on this host. When the log
runs out, the policy in force stays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llamas_ebpf.advise.base import Advice, AdvisorInput
from llamas_ebpf.errors import LlamasError

REPLAYED = ("apply", "decision")


def decisions(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise LlamasError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise LlamasError(f"{path}: not UTF-8 text") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LlamasError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
        replayed = isinstance(entry, dict) and entry.get("event") in REPLAYED
        if replayed and isinstance(entry.get("document"), dict):
            out.append(entry)
    if not out:
        raise LlamasError(f"{path}: no decisions with a document to replay")
    return out


class ReplayAdvisor:
    name = "replay"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries = decisions(path)
        self.next = 0

    def advise(self, given: AdvisorInput) -> Advice:
        if self.next >= len(self.entries):
            return Advice(self.name, None, "the replayed log is exhausted", keep_current=True)
        entry = self.entries[self.next]
        self.next += 1
        document = entry["document"]
        origin = f"replay of {self.path.name} entry {self.next}/{len(self.entries)}"
        source = f"{entry.get('advisor', '?')} generation {entry.get('generation', '?')}"
        return Advice(self.name, json.dumps(document).encode(),
                      f"{origin} ({source}): {document.get('rationale', '')}"[:4000])
