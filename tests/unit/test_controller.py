"""The controller's judging of a generation, on snapshots: a generation is watched across decision
windows shorter than its measurement, and reverted when it makes locality worse."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from llamas_ebpf.controller import WATCH_INTERVALS, Controller, Options, Watch
from llamas_ebpf.devices.inventory import discover
from llamas_ebpf.policy.document import PolicyDocument
from llamas_ebpf.snapshot import NumaCounts, ProcessSample, Snapshot

PID = 4242


class _Enforcer:
    def __init__(self) -> None:
        self.state = SimpleNamespace(generation=1, document=None)
        self.events: list[tuple[str, dict]] = []
        self.audit = SimpleNamespace(append=lambda event, **fields: self.events.append((event, fields)))
        self.rolled_back = 0
        self.rule_of: dict[int, int] = {}

    def rollback(self, reason: str) -> int:
        self.rolled_back += 1
        self.state.generation += 1
        return 0

    def apply(self, *args, **kwargs):
        raise AssertionError("no previous document to re-apply")


def _snap(remote: int, local: int) -> Snapshot:
    sample = ProcessSample(pid=PID, comm="victim", numa=NumaCounts(alloc_local=local, alloc_remote=remote))
    return Snapshot(host="t", kernel="6.12", time=0.0, interval_s=1.0, processes=[sample], nodes=[])


def _loop() -> tuple[Controller, _Enforcer]:
    enforcer = _Enforcer()
    sensor = SimpleNamespace(detail_pids=set(), access_regions=lambda pid: None, access_samples=lambda: 0.0)
    inventory = discover(Path(__file__).resolve().parents[1] / "fixtures/sysfs/lab-tiered", Path("/nonexistent"))
    loop = Controller(enforcer, sensor, None, None, inventory, Options(decide_every=2.0, interval=1.0, dry_run=False,
                                                                once=False, revert_threshold=0.2),
                   say=lambda line: None)
    document = PolicyDocument.model_validate({"schema": "llamas.policy/v1", "rules": [
        {"name": "bad", "match": {"pid": PID}, "memory": {"home_node": 2}}]})
    loop.watch = Watch(1, document, None, {PID: 0.0})
    return loop, enforcer


def test_a_decision_window_shorter_than_the_measurement_does_not_end_the_watch():
    loop, enforcer = _loop()
    loop.measure(_snap(remote=0, local=1000))  # the pages have not moved yet
    loop._log_effect()  # the next decision window begins
    assert loop.watch is not None and not enforcer.events
    loop.measure(_snap(remote=1000, local=0))
    loop.measure(_snap(remote=1000, local=0))
    assert enforcer.rolled_back == 1 and loop.watch is None
    event, fields = enforcer.events[-1]
    assert event == "revert" and fields["before"] == 0.0 and fields["after"] == 1.0


def test_a_generation_that_holds_is_logged_as_kept_after_its_measurement():
    loop, enforcer = _loop()
    for _ in range(WATCH_INTERVALS):
        loop.measure(_snap(remote=0, local=1000))
    loop._log_effect()
    assert loop.watch is None and enforcer.rolled_back == 0
    assert enforcer.events == [("effect", {"generation": 1, "metric": "remote_fraction", "processes": 1,
                                           "before": 0.0, "after": 0.0, "verdict": "kept"})]
