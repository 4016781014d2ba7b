"""The hostile policy corpus (tests/fixtures/policies/hostile.jsonl): one document a line, each
with the field path it must be refused at. A document is given as JSON (`document`), as text
that is not quite JSON (`text`), as bytes (`hex`), or, for the ones too large to check in, as how
to make it (`make`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CORPUS_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "policies" / "hostile.jsonl"
CORPUS: list[dict[str, Any]] = [json.loads(line) for line in CORPUS_FILE.read_text().splitlines()]


def raw(case: dict[str, Any]) -> bytes:
    if "document" in case:
        return json.dumps(case["document"]).encode()
    if "text" in case:
        return case["text"].encode()
    if "hex" in case:
        return bytes.fromhex(case["hex"])
    make = case["make"]
    head = b'{"schema": "llamas.policy/v1", "rules": '
    if "nest" in make:
        return b"[" * make["nest"] + b"]" * make["nest"]
    if "nest_rules" in make:
        return head + b"[" * make["nest_rules"] + b"]" * make["nest_rules"] + b"}"
    if "nul" in make:
        return b"\x00" * make["nul"]
    rules = [{"name": f"r{i}", "match": {"comm": "x"}, "cpu": {"cpus": [0]}} for i in range(make["rules"])]
    return head + json.dumps(rules).encode() + b"}"
