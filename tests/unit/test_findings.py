"""The audit's findings and the heuristic's rules read a window the same way: one set of metrics
and thresholds (llamas_ebpf.metrics), so every rule answers a finding and every finding about
placement has a rule."""

from __future__ import annotations

import pytest

from llamas_ebpf.advise.findings import findings
from llamas_ebpf.advise.summary import summarize
from llamas_ebpf.devices.inventory import discover
from llamas_ebpf.metrics import BUSY_EVENTS, REMOTE_ENTER
from tests.unit.test_advisors import (
    DEVICES,
    FIXTURES,
    _advise,
    _input,
    _pmem_inventory,
    _pmem_window,
    _proc,
    _snap,
)

ANSWERS = {"colocate": {"remote-memory", "hot-on-slow-tier"}, "dram": {"writes-on-write-slow-memory"},
           "readmostly": {"remote-memory"}, "gpu": {"gpu-far-from-cpu"}}


def test_on_the_pmem_fixture_every_rule_answers_a_finding_and_back(tmp_path):
    window, inventory = _pmem_window(), _pmem_inventory(tmp_path)
    rules = _advise(_input(window, inventory))["rules"]
    found = findings(window, inventory, {"rules": rules})
    assert rules and found
    by_pid = {r["match"]["pid"]: r for r in rules}
    assert {f["pid"] for f in found} == set(by_pid)
    for f in found:
        rule = by_pid[f["pid"]]
        assert f["rule"] == rule["name"]
    for pid, rule in by_pid.items():
        kind = rule["name"].split("-")[1]
        assert ANSWERS[kind] & {f["kind"] for f in found if f["pid"] == pid}, (rule["name"], found)


@pytest.mark.parametrize("events", [BUSY_EVENTS - 1, BUSY_EVENTS])
def test_the_busy_threshold_is_one_threshold(events):
    """One event below BUSY_EVENTS: neither a finding nor a rule; at it: both."""
    inventory = discover(FIXTURES / "sysfs/lab-tiered", DEVICES)
    remote = events // 2
    sample = _proc(4242, "edge", faults=events - remote, remote=remote, node=1)
    window = summarize([_snap([sample])])
    assert window.processes[0].activity == events and window.processes[0].remote_fraction >= REMOTE_ENTER
    rules = _advise(_input(window, inventory))["rules"]
    found = [f for f in findings(window, inventory, None) if f["kind"] == "remote-memory"]
    assert bool(rules) == bool(found) == (events >= BUSY_EVENTS)


MEMORY_RULE = {"rules": [{"name": "a", "match": {"comm": "x"}, "memory": {"home_node": 0, "demote_node": 2}}]}


def test_the_audit_says_when_the_kernels_own_balancing_would_do(tmp_path):
    """Tiered memory with nothing device-specific: numa_balancing=2 does what a home/demote rule
    does, and the audit says so (3: the lab's tiered host has two nodes of CPUs too); two
    sockets: 1. A write-slow pmem node, a GPU rule, or no rule
    at all: not enough, or nothing to say, with the reason."""
    from llamas_ebpf.advise.findings import kernel_alternative

    tiered = kernel_alternative(discover(FIXTURES / "sysfs/lab-tiered"), MEMORY_RULE, 0)
    # the lab's tiered host has two nodes of CPUs and a slow tier: both bits
    assert tiered["enough"] and tiered["setting"] == 3 and "kernel.numa_balancing=3 (now 0)" in tiered["say"]
    sockets = kernel_alternative(discover(FIXTURES / "sysfs/lab-2socket"), MEMORY_RULE, None)
    assert sockets["enough"] and sockets["setting"] == 1
    pmem = kernel_alternative(_pmem_inventory(tmp_path), MEMORY_RULE, 2)
    assert not pmem["enough"] and any("node 2 writes slowly" in need for need in pmem["needs"])
    assert any("wears with writes" in need for need in pmem["needs"]) and "not enough" in pmem["say"]
    gpu = {"rules": [{"name": "g", "match": {"comm": "x"}, "gpu": {"device": 0}}]}
    assert not kernel_alternative(discover(FIXTURES / "sysfs/lab-tiered"), gpu, 0)["enough"]
    nothing = kernel_alternative(discover(FIXTURES / "sysfs/lab-tiered"), {"rules": []}, 0)
    assert not nothing["enough"] and nothing["say"] == ""
