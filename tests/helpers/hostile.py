"""The hostile policy corpus (tests/fixtures/policies/hostile.jsonl): one document a line, each
with the field path it must be refused at. A document is given as JSON (`document`), as text
that is not quite JSON (`text`), as bytes (`hex`), or, for the ones too large to check in, as how
to make it (`make`). And the hypothesis strategies the property tests draw documents from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

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


# any JSON value; values a policy's fields are likely to be tried with; rules and documents
# shaped like a policy's, with those values anywhere
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
                    max_leaves=30)
FIELD_VALUES = st.one_of(JSON, st.sampled_from([0, 1, -1, 255, 256, 2**63, "0", "0-3", "0-99999999", True, None, [],
                                                [0], [999], {}, "/", "/sys/fs/cgroup", "systemd", "x" * 70]))
RULE = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "A", "a b"]) | st.text(max_size=8)},
    optional={"match": st.dictionaries(st.sampled_from(["pid", "comm", "exe", "cgroup", "uid"]), FIELD_VALUES,
                                       max_size=2),
              "cpu": st.dictionaries(st.sampled_from(["nodes", "cpus"]), FIELD_VALUES, max_size=2),
              "memory": st.dictionaries(st.sampled_from(["home_node", "demote_node", "max_mbps", "hot_faults",
                                                         "cold_seconds"]), FIELD_VALUES, max_size=3),
              "gpu": st.dictionaries(st.just("device"), FIELD_VALUES, max_size=1)})
DOCUMENT = st.fixed_dictionaries({"schema": st.just("llamas.policy/v1") | JSON, "rules": st.lists(RULE, max_size=4)},
                                 optional={"rationale": JSON})
