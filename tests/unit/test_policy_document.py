"""The policy document: schema, shipped JSON Schema, and hostile documents refused with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamas_ebpf.config import Guardrails
from llamas_ebpf.policy.document import SCHEMA_FILE, schema_text
from llamas_ebpf.policy.validate import HostFacts, validate

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


@pytest.mark.parametrize("raw, expected", [
    (doc({"name": "a", "match": {"comm": "x"}, "cpu": {"cpus": [0]}, "colour": "red"}),
     "rules.0.colour: Extra inputs are not permitted"),
    (doc({"name": "a", "match": {"comm": "x"}, "cpu": {"nodes": [7]}}), "rules.0.cpu.nodes: node 7 does not exist"),
    (doc({"name": "a", "match": {"comm": "x"}, "cpu": {"nodes": [2]}}),
     "rules.0.cpu.nodes: node 2 has no CPUs, never an affinity target"),
    (doc({"name": "a", "match": {"comm": "x"}, "cpu": {"cpus": []}}), "rules.0.cpu.cpus"),
    (doc({"name": "a", "match": {"comm": "x"}, "cpu": {"cpus": ""}}), "rules.0.cpu.cpus"),
    (doc({"name": "a", "match": {"comm": "x"}, "cpu": {"cpus": "9"}}), "rules.0.cpu.cpus: CPUs [9] are not online"),
    (doc({"name": "a", "match": {"pid": 1}, "cpu": {"cpus": [0]}}), "rules.0.match.pid: pid 1 is never touched"),
    (doc({"name": "a", "match": {"pid": 4242}, "cpu": {"cpus": [0]}}), "is the llamas controller itself"),
    (doc({"name": "a", "match": {"comm": "sshd"}, "cpu": {"cpus": [0]}}), "'sshd' is never touched (denylist)"),
    (doc({"name": "a", "match": {"comm": "x"}, "memory": {"home_node": 0, "max_mbps": 90000}}),
     "rules.0.memory.max_mbps: 90000 MB/s is over this host's total budget of 500 MB/s"),
    (doc({"name": "a", "match": {"comm": "x"}, "memory": {"home_node": 0, "max_mbps": 10**9}}),
     "rules.0.memory.max_mbps: Input should be less than or equal to 100000"),
    (doc({"name": "a", "match": {"comm": "x"}, "gpu": {"device": 3}}), "rules.0.gpu.device: GPU 3 does not exist"),
    (doc({"name": "a", "match": {"comm": "x", "pid": 5}, "cpu": {"cpus": [0]}}),
     "rules.0.match: give exactly one of pid, comm, exe, cgroup"),
    (doc({"name": "a", "match": {"cgroup": "/a/../../etc"}, "cpu": {"cpus": [0]}}), "may not contain '.' or '..'"),
    (doc({"name": "a", "match": {"comm": "x"}}), "rules.0: a rule needs at least one of cpu, memory, gpu"),
    (doc(*[{"name": f"r{i}", "match": {"comm": "x"}, "cpu": {"cpus": [0]}} for i in range(10_000)]),
     "rules: List should have at most 1024 items"),
    (doc(*[{"name": f"r{i}", "match": {"comm": "x"}, "cpu": {"cpus": [0]}} for i in range(65)]),
     "rules: 65 rules, over this host's limit of 64"),
    (b"[" * 5000 + b"]" * 5000, "document: nested deeper than 32 levels"),
    (doc().replace(b'"test"', b'"te\xffst"'), "document: not UTF-8"),
    (b'{"schema": "llamas.policy/v1", "rules": [], "rules": []}', "document: not JSON: duplicate key 'rules'"),
    (b"\x00" * (2 << 20), "over the 1048576-byte limit"),
    (doc(schema="llamas.policy/v2"), "schema: Input should be 'llamas.policy/v1'"),
])
def test_hostile_documents_are_refused_with_a_reason(raw, expected):
    errors = errors_of(raw)
    assert any(expected in e for e in errors), errors
