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

    def append(self, event: str, **fields: object) -> dict[str, Any]:
        entry = {"time": time.time(), "event": event, **fields}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.path, "a") as out:
            out.write(json.dumps(entry, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
        return entry

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
