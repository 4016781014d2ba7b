"""The policy document: schema, shipped JSON Schema, and hostile documents refused with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamas_ebpf.config import Guardrails
from llamas_ebpf.policy.document import SCHEMA_FILE, schema_text
from llamas_ebpf.policy.validate import HostFacts, validate
from tests.helpers import hostile

HOST = HostFacts(node_cpus={0: [0, 1], 1: [2, 3], 2: []}, node_memory_mb={0: 1024, 1: 1024, 2: 1024},
                 gpu_nodes=[1], controller_pid=4242, proc=Path("/nonexistent-proc"))
GUARD = Guardrails(max_rules=64, total_max_mbps=500, deny_comm=["sshd"])


def doc(*rules: dict, **extra: object) -> bytes:
    return json.dumps({"schema": "llamas.policy/v1", "rationale": "test", "rules": list(rules), **extra}).encode()


def errors_of(raw: bytes) -> list[str]:
    result = validate(raw, HOST, GUARD)
    assert not result.ok
    return result.errors


def test_shipped_json_schema_is_the_models():
    assert SCHEMA_FILE.read_text() == schema_text(), "regenerate llamas_ebpf/schema/policy-v1.json"
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["title"] == "llamas.policy/v1" and "rules" in schema["required"]


def test_a_good_document():
    result = validate(doc({"name": "db", "match": {"comm": "redis-server"}, "cpu": {"nodes": [0]},
                           "memory": {"home_node": 0, "demote_node": 2, "hot_faults": 8, "max_mbps": 200}},
                          {"name": "gpu-feeder", "match": {"cgroup": "/"}, "gpu": {"device": 0}}), HOST, GUARD)
    assert result.ok, result.errors
    assert result.document.rules[0].cpu.nodes == [0]


@pytest.mark.parametrize("case", hostile.CORPUS, ids=[c["case"] for c in hostile.CORPUS])
def test_hostile_documents_are_refused_at_their_field(case):
    """Each document of the checked-in corpus (tests/fixtures/policies/hostile.jsonl) is refused,
    with a line at the field it gets wrong, in the document's own terms, and every other problem
    it has listed beside it (schema and host checks together)."""
    errors = errors_of(hostile.raw(case))
    at = [e for e in errors if e.startswith(case["refused_at"] + ": ")]
    assert at, errors
    assert "says" not in case or any(case["says"] in e for e in at), errors
    for other in case.get("also", []):
        assert any(e.startswith(other + ": ") for e in errors), (other, errors)
    assert all("\n" not in e and "constrained" not in e and "PolicyDocument" not in e for e in errors), errors


def test_the_corpus_is_large_and_mostly_new():
    assert len(hostile.CORPUS) >= 60
    assert len({c["case"] for c in hostile.CORPUS}) == len(hostile.CORPUS)


def _clean(result) -> None:
    """A validation gives a document, or a list of one-line errors, each at a path."""
    if result.ok:
        assert result.document is not None and result.errors == []
        # what passed validates again, as written back: the schema is a fixed point
        assert validate(result.document.to_json().encode(), HOST, GUARD).ok
    else:
        assert result.document is None and result.errors
        assert all(isinstance(e, str) and "\n" not in e and ": " in e for e in result.errors), result.errors


@settings(max_examples=1000, deadline=None, database=None)
@given(hostile.JSON)
def test_any_json_value_is_a_document_or_a_clean_list_of_errors(value):
    _clean(validate(json.dumps(value).encode(), HOST, GUARD))


@settings(max_examples=1000, deadline=None, database=None)
@given(st.binary(max_size=512))
def test_any_bytes_are_a_document_or_a_clean_list_of_errors(raw):
    _clean(validate(raw, HOST, GUARD))


@settings(max_examples=1000, deadline=None, database=None)
@given(hostile.DOCUMENT)
def test_any_near_document_is_a_document_or_a_clean_list_of_errors(value):
    _clean(validate(json.dumps(value).encode(), HOST, GUARD))
