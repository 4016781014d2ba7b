"""What is in force (state_dir/policy.json) and what was ever decided (state_dir/audit.jsonl).

The audit log is JSON lines, one per applied generation, refusal and rollback, each fsynced
before the command reports success.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamas_ebpf.policy.document import PolicyDocument
from llamas_ebpf.policy.lock import CorruptState, append_line, read_sealed, write_sealed


def digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass
class PolicyState:
    generation: int  # grows by one per applied document, never reused
    slot: int | None  # the map slot in force; None when no policy is
    document: PolicyDocument | None
    digest: str | None
    advisor: str | None
    applied_at: float | None

    recovered: str = ""  # how a damaged policy.json was rebuilt, for the command to say; not saved

    @classmethod
    def load(cls, state_dir: Path) -> PolicyState:
        """policy.json; where it is damaged (torn, truncated, edited: its checksum says), the
        state is rebuilt from the audit log, which records every generation put in force or
        taken out, and `recovered` says so."""
        path = state_dir / "policy.json"
        try:
            data = read_sealed(path)
            if data is None:
                return cls(0, None, None, None, None, None)
            doc = PolicyDocument.model_validate(data["document"]) if data.get("document") else None
            return cls(data["generation"], data.get("slot"), doc, data.get("digest"), data.get("advisor"),
                       data.get("applied_at"))
        except CorruptState as exc:
            damage = str(exc).removeprefix(f"{path}: ")
        except (KeyError, TypeError, ValueError) as exc:  # sealed and whole, but not a state
            damage = f"not a policy state ({type(exc).__name__}: {exc})"
        state = cls.from_audit(AuditLog(state_dir).entries())
        in_force = f"generation {state.generation} in force" if state.document else "no policy in force"
        state.recovered = f"{path}: {damage}; rebuilt from audit.jsonl: {in_force}"
        return state

    @classmethod
    def from_audit(cls, entries: list[dict[str, Any]]) -> PolicyState:
        """The state the audit log describes: its last apply or rollback says what is in force;
        the generation is the highest it ever gave out, so none is reused. Slots alternate by
        generation (Enforcer.apply), so the slot follows from it."""
        generations = [e["generation"] for e in entries if isinstance(e.get("generation"), int)]
        generation = max(generations, default=0)
        last = next((e for e in reversed(entries) if e.get("event") in ("apply", "rollback")), None)
        if last is None or last["event"] == "rollback" or not isinstance(last.get("generation"), int):
            return cls(generation, None, None, None, None, None)
        try:
            doc = PolicyDocument.model_validate(last.get("document"))
        except ValueError:
            return cls(generation, None, None, None, None, None)
        return cls(generation, last["generation"] % 2, doc, last.get("digest"), last.get("advisor"),
                   last.get("time"))

    def save(self, state_dir: Path) -> None:
        data = {
            "generation": self.generation,
            "slot": self.slot,
            "document": json.loads(self.document.to_json()) if self.document else None,
            "digest": self.digest,
            "advisor": self.advisor,
            "applied_at": self.applied_at,
        }
        write_sealed(state_dir / "policy.json", data)


def diff(old: PolicyDocument | None, new: PolicyDocument | None) -> dict[str, list[str]]:
    before = {r.name: r for r in old.rules} if old else {}
    after = {r.name: r for r in new.rules} if new else {}
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(n for n in set(before) & set(after) if before[n] != after[n]),
    }


class AuditLog:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "audit.jsonl"
        self.torn = 0

    def append(self, event: str, **fields: object) -> dict[str, Any]:
        """One fsynced line, a torn last line fenced off first (lock.append_line)."""
        entry = {"time": time.time(), "event": event, **fields}
        append_line(self.path, json.dumps(entry, sort_keys=True).encode())
        return entry

    def tail(self, count: int | None = None, since: float | None = None,
             keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """The newest records that `keep` accepts (all, without it), oldest first: the last
        `count` of them, or those from `since` on (the log is in time order). Read from the end
        of the file a block at a time, so that what the daemon asks each window costs what it
        returns, not the size of a log that grows for as long as llamas runs."""
        if not self.path.exists():
            return []
        out: list[dict[str, Any]] = []
        with self.path.open("rb") as f:
            position = f.seek(0, os.SEEK_END)
            left = b""  # the start of a line whose beginning is in the block before
            while position > 0:
                step = min(_TAIL_BLOCK, position)
                position -= step
                f.seek(position)
                lines = (f.read(step) + left).split(b"\n")
                left = lines.pop(0) if position > 0 else b""
                for line in reversed(lines):
                    entry = _record(line.decode(errors="replace"))
                    if entry is None:
                        continue
                    when = entry.get("time")
                    if since is not None and (not isinstance(when, (int, float)) or when < since):
                        return out[::-1]
                    if keep is None or keep(entry):
                        out.append(entry)
                        if count is not None and len(out) >= count:
                            return out[::-1]
        return out[::-1]

    def entries(self) -> list[dict[str, Any]]:
        """Every record that reads back; `torn` counts the lines that did not."""
        self.torn = 0
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            entry = _record(line)
            if entry is None:
                self.torn += 1
            else:
                out.append(entry)
        return out


_TAIL_BLOCK = 1 << 16


def _record(line: str) -> dict[str, Any] | None:
    """One audit line as a record; None for a blank, torn or damaged one."""
    if not line.strip():
        return None
    try:
        entry = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    return entry if isinstance(entry, dict) else None
