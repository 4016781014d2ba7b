"""What is in force (state_dir/policy.json) and what was ever decided (state_dir/audit.jsonl).

The audit log is JSON lines, one per applied generation, refusal and rollback, each fsynced
before the command reports success.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamas_ebpf.policy.document import PolicyDocument
from llamas_ebpf.policy.lock import write_atomically


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

    @classmethod
    def load(cls, state_dir: Path) -> PolicyState:
        path = state_dir / "policy.json"
        if not path.exists():
            return cls(0, None, None, None, None, None)
        data = json.loads(path.read_text())
        doc = PolicyDocument.model_validate(data["document"]) if data.get("document") else None
        return cls(data["generation"], data.get("slot"), doc, data.get("digest"), data.get("advisor"),
                   data.get("applied_at"))

    def save(self, state_dir: Path) -> None:
        data = {
            "generation": self.generation,
            "slot": self.slot,
            "document": json.loads(self.document.to_json()) if self.document else None,
            "digest": self.digest,
            "advisor": self.advisor,
            "applied_at": self.applied_at,
        }
        write_atomically(state_dir / "policy.json", json.dumps(data, indent=2))


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
        """One fsynced line. A torn last line (a writer that died mid-write) is fenced off with a
        newline first, so it stays one bad line instead of swallowing this record."""
        entry = {"time": time.time(), "event": event, **fields}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "ab+") as out:
            torn = False
            if out.seek(0, os.SEEK_END) > 0:
                out.seek(-1, os.SEEK_END)
                torn = out.read(1) != b"\n"
            out.write((b"\n" if torn else b"") + json.dumps(entry, sort_keys=True).encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every record that reads back; `torn` counts the lines that did not."""
        self.torn = 0
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                self.torn += 1
                continue
            if isinstance(entry, dict):
                out.append(entry)
            else:
                self.torn += 1
        return out
