"""Crashes, damaged state files and racing writers, on this kernel with real maps and masks.

- kill -9 (llamas_ebpf/failpoints.py: the process SIGKILLs itself at a named point) of `policy
  apply`, `policy rollback` and `llamas run`, at each point where a crash leaves the most to
  recover. After a restart of the daemon, either the old or the new generation is in force,
  whole (the maps' slot, policy.json and every thread's mask agree), the originals are
  recoverable, `rollback` restores every mask, and the audit log reads back.
- Each state file torn or damaged: rollback still restores every mask, and says what it could
  not restore.
- Racing applies, and applies while a daemon runs: generations are never given out twice, and
  the audit log, policy.json, the maps and the masks agree at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from llamas_ebpf.actuator.affinity import Journal
from llamas_ebpf.policy.maps import PolicyMaps
from tests.helpers.children import wait_for_line, wait_for_masks
from tests.host.conftest import llamas
from tests.host.test_policy import ALL_CPUS, Child, pin_rule, policy, threader

__all__ = ["threader"]  # the fixture, for pytest to find

OLD, NEW = {1}, {0}  # generation 1 pins to CPU 1; the one that crashes pins to CPU 0


def _llamas_bin() -> str:
    return str(Path(os.sys.executable).parent / "llamas")


def _shown(values: dict) -> dict:
    result = llamas("policy", "show", "--json", env=values)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _active_slot(values: dict) -> int | None:
    maps = PolicyMaps.open(Path(values["LLAMAS_PIN_DIR"]), create=False)
    try:
        return maps.active_slot
    finally:
        maps.close()


def _history(values: dict) -> list[dict]:
    result = llamas("policy", "history", "--json", env=values)
    assert result.returncode == 0 and "do not read back" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def _restart(values: dict) -> subprocess.Popen:
    """`llamas run` again, as systemd would after the crash: it keeps the policy in force."""
    daemon = subprocess.Popen([_llamas_bin(), "run", "--advisor", "none"], env={**os.environ, **values},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    assert daemon.stderr is not None
    assert wait_for_line(daemon.stderr, "keeping generation", 90, said) or \
        any("waiting for llamas policy apply" in line for line in said), said
    return daemon


def _stop(daemon: subprocess.Popen) -> None:
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=60)


# (command, crash point, the generation in force after the restart, its CPUs)
CRASHES = [
    ("apply", "apply.slot-written", 1, OLD),  # the new slot written, not switched to: the old one stays
    ("apply", "apply.switched", 1, OLD),  # switched, policy.json not saved: switched back, rewritten
    ("apply", "apply.saved", 2, NEW),  # saved, nothing pinned or logged: logged, then pinned
    ("apply", "apply.pinning", 2, NEW),  # one process of two pinned
    ("rollback", "rollback.switched", 1, OLD),  # the maps emptied, no mask restored yet
    ("rollback", "rollback.restoring", 1, OLD),  # one thread restored of eight
    ("run", "apply.pinning", 2, NEW),  # the daemon, putting its --policy in force
]


@pytest.mark.parametrize(("command", "point", "generation", "cpus"), CRASHES,
                         ids=[f"{c}-{p}" for c, p, _, _ in CRASHES])
def test_kill_9_then_restart_leaves_one_generation_whole(env, threader, tmp_path, command, point, generation,
                                                         cpus):
    values, _ = env
    children = [Child(threader, "lt-crash", tmp_path), Child(threader, "lt-crash", tmp_path)]
    daemon = None
    try:
        masks = lambda: [m for child in children for m in child.masks().values()]  # noqa: E731
        assert llamas("policy", "apply", str(policy(tmp_path, pin_rule("lt-crash", "1"))), env=values).returncode == 0
        assert all(mask == OLD for mask in masks())
        crashing = {**os.environ, **values, "LLAMAS_FAILPOINT": point}
        new_doc = str(policy(tmp_path, pin_rule("lt-crash", "0")))
        argv = {"apply": ["policy", "apply", new_doc], "rollback": ["policy", "rollback"],
                "run": ["run", "--advisor", "none", "--policy", new_doc]}[command]
        crashed = subprocess.run([_llamas_bin(), *argv], env=crashing, capture_output=True, text=True, timeout=120)
        assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr[-2000:])

        # the originals are recoverable from the journal as the crash left it: every thread's
        # original mask (all CPUs), for every thread a mask was changed on
        journal = Journal(Path(values["LLAMAS_STATE_DIR"]) / "originals.json")
        threads = {tid for child in children for tid in child.masks()}
        assert not journal.damaged and threads <= set(journal.masks), (threads, journal.masks)
        assert all(set(cpus_) == ALL_CPUS for _tgid, cpus_ in journal.masks.values())

        daemon = _restart(values)
        shown = _shown(values)
        assert shown["generation"] == generation and shown["in_force"], shown
        assert _active_slot(values) == generation % 2
        wait_for_masks(masks, cpus, 5.0, f"generation {generation} not whole after the restart")
        history = _history(values)
        applied = [e["generation"] for e in history if e["event"] == "apply"]
        assert applied == sorted(set(applied)) and applied[-1] == generation, history

        _stop(daemon)  # SIGTERM: the daemon rolls back
        daemon = None
        assert all(mask == ALL_CPUS for mask in masks()), "rollback must restore every recorded mask"
        assert _active_slot(values) is None and not _shown(values)["in_force"]
        assert _history(values)[-1]["event"] == "rollback"
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        for child in children:
            child.close()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _edit_generation(path: Path) -> None:
    text = path.read_text()
    assert '"generation": 1' in text
    path.write_text(text.replace('"generation": 1', '"generation": 7'))  # well-formed, but not what was sealed


def _tear_audit(path: Path) -> None:
    with path.open("ab") as out:
        out.write(b'{"event": "apply", "generation": 2, "docu')


@pytest.mark.parametrize(("name", "damage", "said"), [
    ("policy.json", _truncate, "does not parse"),
    ("policy.json", _edit_generation, "checksum does not match"),
    ("originals.json", _truncate, "had no recorded originals"),
    ("originals.json", lambda p: p.write_text(p.read_text().replace('"cpus": [', '"cpus": [1, ')),
     "checksum does not match"),
    ("audit.jsonl", _tear_audit, ""),
    ("pages.jsonl", lambda p: p.write_text('{"pid": 4194000, "pages": [[4096, 0]]}\n{"pid": 2, "pa\n'),
     "1 lines do not read back"),
], ids=["policy-truncated", "policy-edited", "originals-truncated", "originals-edited", "audit-torn", "pages-torn"])
def test_rollback_after_any_one_damaged_file_restores_every_mask(env, threader, tmp_path, name, damage, said):
    values, _ = env
    child = Child(threader, "lt-damaged", tmp_path)
    try:
        assert llamas("policy", "apply", str(policy(tmp_path, pin_rule("lt-damaged"))), env=values).returncode == 0
        assert all(mask == {1} for mask in child.masks().values())
        path = Path(values["LLAMAS_STATE_DIR"]) / name
        if name == "pages.jsonl":
            path.touch(mode=0o600)
        damage(path)
        rolled = llamas("policy", "rollback", env=values)
        assert rolled.returncode == 0 and "Traceback" not in rolled.stderr, rolled.stderr
        assert said in rolled.stderr, rolled.stderr
        assert all(line.startswith("llamas: ") for line in rolled.stderr.splitlines()), rolled.stderr
        assert all(mask == ALL_CPUS for mask in child.masks().values())
        assert not _shown(values)["in_force"]
        history = _history(values) if name != "audit.jsonl" else json.loads(
            llamas("policy", "history", "--json", env=values).stdout)
        assert [e["event"] for e in history][-1] == "rollback"
        # and the state is whole again: the next apply works from it, with the next generation
        assert llamas("policy", "apply", str(policy(tmp_path, pin_rule("lt-damaged"))), env=values).returncode == 0
        shown = _shown(values)
        assert shown["in_force"] and shown["generation"] == 2, shown
    finally:
        child.close()


def test_racing_applies_and_an_apply_during_run_agree_at_the_end(env, threader, tmp_path):
    """Eight `policy apply` at once, while a daemon runs: eight generations, each given out once,
    and the audit log, policy.json, the maps' slot and every mask describe the last one."""
    values, _ = env
    child = Child(threader, "lt-race", tmp_path)
    daemon = subprocess.Popen([_llamas_bin(), "run", "--advisor", "none"], env={**os.environ, **values},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_line(daemon.stderr, "waiting for llamas policy apply", 90), "daemon did not start"
        documents = [policy(tmp_path, pin_rule("lt-race", str(i % 2))) for i in range(8)]
        results: list[subprocess.CompletedProcess] = []
        gate = threading.Barrier(len(documents))

        def apply(document: Path) -> None:
            gate.wait()
            results.append(llamas("policy", "apply", "--json", str(document), env=values))

        racers = [threading.Thread(target=apply, args=(d,)) for d in documents]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        given = sorted(json.loads(r.stdout)["generation"] for r in results)
        assert given == list(range(1, 9)), given
        history = _history(values)
        assert [e["generation"] for e in history if e["event"] == "apply"] == list(range(1, 9))
        last = history[-1]
        shown = _shown(values)
        assert shown["generation"] == 8 and shown["digest"] == last["digest"]
        assert _active_slot(values) == 8 % 2
        cpus = set(last["document"]["rules"][0]["cpu"]["cpus"])
        wait_for_masks(lambda: child.masks().values(), cpus, 2.0, "the masks are not the last generation's")
        _stop(daemon)
        assert all(mask == ALL_CPUS for mask in child.masks().values())
    finally:
        if daemon.poll() is None:
            daemon.kill()
        child.close()
