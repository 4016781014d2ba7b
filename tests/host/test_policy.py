"""Policy in force on this kernel: affinity checked with sched_getaffinity, for running processes,
new threads, new processes (through bpf/enforce.c and the controller), rollback, the denylist
and scope, and hostile documents that must leave the pinned maps as they were."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llamas_ebpf.kernel import procfs
from llamas_ebpf.policy.maps import PolicyMaps
from tests.helpers import hostile
from tests.helpers.children import build_helper, wait_for_line, wait_for_masks
from tests.host.conftest import llamas

ALL_CPUS = set(range(os.cpu_count() or 1))


@pytest.fixture(scope="module")
def threader(tmp_path_factory) -> Path:
    return build_helper("threader", tmp_path_factory.mktemp("threader"))


class Child:
    """The threaded helper, under a name (comm) of its own."""

    def __init__(self, threader: Path, name: str, tmp_path: Path, threads: int = 3) -> None:
        binary = tmp_path / name
        if not binary.exists():
            shutil.copy(threader, binary)
        self.proc = subprocess.Popen([str(binary), str(threads)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().startswith("done")
        self.pid = self.proc.pid

    def spawn_thread(self) -> None:
        self.proc.stdin.write("spawn\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().startswith("done")

    def masks(self) -> dict[int, set[int]]:
        return {tid: os.sched_getaffinity(tid) for tid in procfs.thread_ids(self.pid)}

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def policy(tmp_path: Path, *rules: dict) -> Path:
    path = tmp_path / f"policy-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"schema": "llamas.policy/v1", "rationale": "test", "rules": list(rules)}))
    return path


def pin_rule(comm: str, cpus: str = "1") -> dict:
    return {"name": f"pin-{comm}", "match": {"comm": comm}, "cpu": {"cpus": cpus}}


def test_running_process_new_thread_and_rollback(env, threader, tmp_path):
    values, _ = env
    child = Child(threader, "lt-running", tmp_path)
    try:
        original = child.masks()
        assert all(mask == ALL_CPUS for mask in original.values())
        applied = llamas("policy", "apply", "--json", str(policy(tmp_path, pin_rule("lt-running"))), env=values)
        assert applied.returncode == 0, applied.stderr
        assert json.loads(applied.stdout)["threads_pinned"] == 4
        assert all(mask == {1} for mask in child.masks().values())
        child.spawn_thread()  # a thread born after the apply
        masks = child.masks()
        assert len(masks) == 5 and all(mask == {1} for mask in masks.values())
        rolled = llamas("policy", "rollback", "--json", env=values)
        assert rolled.returncode == 0 and json.loads(rolled.stdout)["threads_restored"] == 5
        assert all(mask == ALL_CPUS for mask in child.masks().values())
        events = [e["event"] for e in json.loads(llamas("policy", "history", "--json", env=values).stdout)]
        assert events == ["apply", "rollback"]
    finally:
        child.close()


def test_new_process_is_pinned_by_the_controller(env, threader, tmp_path):
    values, _ = env
    document = policy(tmp_path, pin_rule("lt-late"))
    controller = subprocess.Popen([str(Path(os.sys.executable).parent / "llamas"), "run", "--advisor", "none",
                                   "--policy", str(document)], env={**os.environ, **values},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_line(controller.stderr, "keeping generation", 60), "controller did not start"
        child = Child(threader, "lt-late", tmp_path)
        try:
            wait_for_masks(lambda: child.masks().values(), {1}, 1.0, "not pinned within 1 s of exec")
        finally:
            restored = _stop(controller, child)
        assert all(mask == ALL_CPUS for mask in restored.values()), "SIGTERM must roll back"
    finally:
        if controller.poll() is None:
            controller.kill()


def _stop(daemon: subprocess.Popen, child: Child) -> dict[int, set[int]]:
    """SIGTERM the daemon, then the child's masks as the daemon left them; the child ends."""
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=30)
    restored = child.masks()
    child.close()
    return restored


def _daemon(values: dict) -> subprocess.Popen:
    return subprocess.Popen([str(Path(os.sys.executable).parent / "llamas"), "run", "--advisor", "none"],
                            env={**os.environ, **values}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_daemon_starts_with_no_policy_and_keeps_the_one_applied_later(env, threader, tmp_path):
    """The way a service starts at boot: `llamas run` first, `llamas policy apply` later from
    another shell; a second daemon on the same state directory refuses, naming the first."""
    values, _ = env
    daemon = _daemon(values)
    try:
        assert wait_for_line(daemon.stderr, "waiting for llamas policy apply", 60), "daemon did not start"
        second = llamas("run", "--advisor", "none", env=values)
        assert second.returncode == 2 and f"(pid {daemon.pid})" in second.stderr, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        applied = llamas("policy", "apply", str(policy(tmp_path, pin_rule("lt-after"))), env=values)
        assert applied.returncode == 0, applied.stderr
        child = Child(threader, "lt-after", tmp_path)  # started after the apply: the daemon's to pin
        try:
            wait_for_masks(lambda: child.masks().values(), {1}, 1.0, "not kept in force within 1 s")
            child.spawn_thread()
            assert all(mask == {1} for mask in child.masks().values())
        finally:
            restored = _stop(daemon, child)
        assert all(mask == ALL_CPUS for mask in restored.values()), "SIGTERM must roll back"
        shown = json.loads(llamas("policy", "show", "--json", env=values).stdout)
        assert shown["in_force"] is False and shown["generation"] == 1
    finally:
        if daemon.poll() is None:
            daemon.kill()


def test_denylisted_and_out_of_scope_processes_stay_untouched(env, threader, tmp_path):
    values, config = env
    (config / "config.toml").write_text('[guardrails]\ndeny_comm = ["lt-denied"]\n'
                                        'scope_cgroups = ["/llamas-test-scope-that-is-not-there"]\n')
    refused = llamas("policy", "apply", str(policy(tmp_path, pin_rule("lt-denied"))), env=values)
    assert refused.returncode == 2 and "'lt-denied' is never touched (denylist)" in refused.stderr
    child = Child(threader, "lt-outside", tmp_path)
    try:
        applied = llamas("policy", "apply", "--json", str(policy(tmp_path, pin_rule("lt-outside"))), env=values)
        assert applied.returncode == 0, applied.stderr
        assert json.loads(applied.stdout)["processes"] == 0
        assert all(mask == ALL_CPUS for mask in child.masks().values())
    finally:
        child.close()


def _maps_state(values: dict) -> tuple:
    maps = PolicyMaps.open(Path(values["LLAMAS_PIN_DIR"]), create=False)
    try:
        slot = maps.active_slot
        return slot, maps.tgid_rules(slot) if slot is not None else {}
    finally:
        maps.close()


def test_hostile_documents_change_nothing(env, threader, tmp_path):
    """The whole hostile corpus (tests/fixtures/policies/hostile.jsonl), through `llamas policy
    apply` on this host: each one refused in one exit-2 message, no traceback, and the maps, the
    state and the pinned process exactly as the policy in force left them."""
    values, _ = env
    # the guardrails the corpus is written against (tests/unit/test_policy_document.py's GUARD)
    (Path(values["LLAMAS_CONFIG_DIR"]) / "config.toml").write_text(
        '[guardrails]\nmax_rules = 64\ntotal_max_mbps = 500\ndeny_comm = ["sshd"]\n')
    child = Child(threader, "lt-hostile", tmp_path)
    try:
        assert llamas("policy", "apply", str(policy(tmp_path, pin_rule("lt-hostile"))), env=values).returncode == 0
        before_maps, before_state = _maps_state(values), llamas("policy", "show", "--json", env=values).stdout
        state_file = Path(values["LLAMAS_STATE_DIR"]) / "policy.json"
        before_file = state_file.read_bytes()
        path = tmp_path / "hostile.json"
        refused = 0
        for case in hostile.CORPUS:
            if "unit_only" in case:
                continue
            path.write_bytes(hostile.raw(case))
            result = llamas("policy", "apply", str(path), env=values)
            # refused by validation with its problems listed, or before it by the bounded reader, in a line
            said = "refused, nothing changed" in result.stderr or result.stderr.count("\n") == 1
            assert result.returncode == 2 and said, (case["case"], result)
            assert "Traceback" not in result.stderr and "\x1b" not in result.stderr, (case["case"], result.stderr)
            assert _maps_state(values) == before_maps, case["case"]
            assert state_file.read_bytes() == before_file, case["case"]
            refused += 1
        assert llamas("policy", "show", "--json", env=values).stdout == before_state
        assert all(mask == {1} for mask in child.masks().values())
        assert refused >= 60
        print(f"{refused} of {len(hostile.CORPUS)} hostile documents refused here, the state unchanged")
    finally:
        child.close()


def test_state_is_root_only_and_other_users_get_one_line(env, threader, tmp_path):
    values, _ = env
    state = Path(values["LLAMAS_STATE_DIR"])
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)  # as an older release or a loose umask left it
    (state / "audit.jsonl").write_text("")
    os.chmod(state / "audit.jsonl", 0o644)
    child = Child(threader, "lt-modes", tmp_path)
    try:
        old = os.umask(0)
        try:
            result = llamas("policy", "apply", str(policy(tmp_path, pin_rule("lt-modes"))), env=values)
        finally:
            os.umask(old)
        assert result.returncode == 0, result.stderr
        assert oct(state.stat().st_mode & 0o777) == oct(0o700)
        for path in state.iterdir():
            if path.is_file():
                assert oct(path.stat().st_mode & 0o777) == oct(0o600), path
        os.chmod(tmp_path, 0o755)
        for command in (("policy", "show"), ("policy", "history")):
            shown = llamas(*command, env=values, user="nobody")
            assert shown.returncode == 2 and shown.stderr.count("\n") == 1 and "Traceback" not in shown.stderr, \
                shown.stderr
    finally:
        child.close()


def test_a_rule_that_goes_away_gives_its_processes_back(env, threader, tmp_path):
    values, _ = env
    kept, dropped = Child(threader, "lt-kept", tmp_path), Child(threader, "lt-dropped", tmp_path)
    try:
        both = policy(tmp_path, pin_rule("lt-kept"), pin_rule("lt-dropped"))
        assert llamas("policy", "apply", str(both), env=values).returncode == 0
        assert all(m == {1} for m in [*kept.masks().values(), *dropped.masks().values()])
        one = llamas("policy", "apply", "--json", str(policy(tmp_path, pin_rule("lt-kept"))), env=values)
        assert one.returncode == 0, one.stderr
        assert all(m == ALL_CPUS for m in dropped.masks().values()), "the dropped rule's process stayed pinned"
        assert all(m == {1} for m in kept.masks().values())
        entry = json.loads(llamas("policy", "history", "--json", env=values).stdout)[-1]
        assert entry["released"] == [dropped.pid] and entry["threads_restored"] == 4
        rolled = llamas("policy", "rollback", "--json", env=values)
        assert json.loads(rolled.stdout)["threads_restored"] == 4  # only what was still changed
        assert all(m == ALL_CPUS for m in kept.masks().values())
    finally:
        kept.close()
        dropped.close()


def test_a_refusal_quotes_hostile_text_inertly(env, tmp_path):
    values, _ = env
    doc = tmp_path / "evil.json"
    doc.write_text('{"schema":"llamas.policy/v1","rules":[{"name":"a","match":{"cgroup":'
                   '"\\u001b[2J\\nllamas: generation 99 in force"},"cpu":{"nodes":[0]}}]}')
    result = llamas("policy", "apply", str(doc), env=values)
    assert result.returncode == 2 and "\x1b" not in result.stderr
    assert not any(line.startswith("llamas: generation") for line in result.stderr.splitlines()), result.stderr


@pytest.fixture(scope="module")
def in_force(tmp_path_factory, threader):
    """An Enforcer in this process, with a policy in force that pins a child to CPU 1."""
    from llamas_ebpf.config import Guardrails
    from llamas_ebpf.enforce import Enforcer
    from llamas_ebpf.paths import Paths
    from llamas_ebpf.policy.validate import HostFacts

    base = tmp_path_factory.mktemp("property")
    pin = Path(f"/sys/fs/bpf/llamas-test-{os.getpid()}-property")
    paths = Paths(config_dir=base, state_dir=base / "state", pin_dir=pin, bpf_dir=Paths.from_env().bpf_dir)
    enforcer = Enforcer(paths, Guardrails(), HostFacts.from_host())
    child = Child(threader, "lt-property", base)
    enforcer.apply_raw(policy(base, pin_rule("lt-property")).read_bytes(), "file", "test")
    try:
        yield enforcer, child
    finally:
        enforcer.rollback("test done")
        enforcer.close()
        child.close()
        shutil.rmtree(pin, ignore_errors=True)


def _state_of(enforcer) -> tuple:
    state_dir = enforcer.paths.state_dir
    files = {p.name: p.read_bytes() for p in state_dir.iterdir() if p.is_file() and p.name != "audit.jsonl"}
    slot = enforcer.maps.active_slot
    return files, slot, enforcer.maps.tgid_rules(slot) if slot is not None else {}


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), hostile.JSON.map(lambda v: json.dumps(v).encode()),
                 hostile.DOCUMENT.map(lambda v: json.dumps(v).encode())))
def test_a_refused_document_never_changes_the_state(in_force, raw):
    """Any bytes, any JSON value, any near-document, put to the enforcer in force on this host:
    what is refused leaves policy.json, the journal, the maps and every mask as they were, and
    adds one refusal to the audit log."""
    from llamas_ebpf.enforce import Refused
    from llamas_ebpf.policy.validate import validate

    enforcer, child = in_force
    assume(not validate(raw, enforcer.host, enforcer.guard).ok)  # a valid one would be applied
    before, logged = _state_of(enforcer), len(enforcer.audit.entries())
    with pytest.raises(Refused):
        enforcer.apply_raw(raw, "property", "hypothesis")
    assert _state_of(enforcer) == before
    assert all(mask == {1} for mask in child.masks().values())
    entries = enforcer.audit.entries()
    assert len(entries) == logged + 1 and entries[-1]["event"] == "refused"
