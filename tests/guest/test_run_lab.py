"""The advisors and faces on a real multi-node kernel (the `tiered` topology), NUMA balancing off:
`llamas run --once` with the heuristic and with claude (a Messages API server on the guest's
127.0.0.1), the loop's auto-revert of a generation that made placement worse, and `llamas audit`
on a deliberately misplaced process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from llamas_ebpf.kernel import mempolicy
from tests.guest.conftest import set_numa_balancing
from tests.helpers.children import Toucher, wait_for_line
from tests.helpers.messages_server import MessagesServer

DEVICES = Path(__file__).resolve().parents[2] / "devices"


@pytest.fixture
def env(tmp_path):
    set_numa_balancing(0)
    values = {**os.environ, "LLAMAS_STATE_DIR": str(tmp_path / "state"), "LLAMAS_CONFIG_DIR": str(tmp_path),
              "LLAMAS_PIN_DIR": f"/sys/fs/bpf/llamas-{tmp_path.name}"}
    yield values
    subprocess.run(["llamas", "policy", "rollback"], env=values, capture_output=True)


@pytest.fixture
def misplaced(toucher_binary, tmp_path):
    """lt-misplaced: runs on node0, its memory on node1, allocating all along (bounded)."""
    binary = tmp_path / "lt-misplaced"
    shutil.copy(toucher_binary, binary)
    child = Toucher(binary, ("numactl", "--cpunodebind=0", "--membind=1"))
    child.touch("write", 2048)
    stop = threading.Event()

    def load() -> None:
        for _ in range(1200):  # 64 pages every 50 ms, at most 300 MiB
            if stop.wait(0.05):
                return
            child.touch("write", 64)

    thread = threading.Thread(target=load)
    thread.start()
    yield child
    stop.set()
    thread.join()
    child.close()


def _audit(values: dict) -> list[dict]:
    path = Path(values["LLAMAS_STATE_DIR"]) / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_once_heuristic_colocates_the_misplaced_process(env, misplaced):
    result = subprocess.run(["llamas", "run", "--once", "--decide-every", "3", "--devices", str(DEVICES)],
                            env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr
    assert os.sched_getaffinity(misplaced.pid) == {1}  # its threads went to its memory's node
    entry = [e for e in _audit(env) if e["event"] == "apply"][-1]
    rule = next(r for r in entry["document"]["rules"] if r["match"] == {"pid": misplaced.pid})
    assert rule["cpu"] == {"nodes": [1]} and rule["memory"]["home_node"] == 1
    assert entry["advisor"] == "heuristic" and entry["inputs_digest"].startswith("sha256:")
    assert entry["validation"] == "ok" and rule["name"] in entry["diff"]["added"]
    assert "remote" in entry["explanations"][rule["name"]]


def test_run_once_claude_through_local_server(env, misplaced):
    proposal = {"schema": "llamas.policy/v1", "rationale": "bring lt-misplaced's threads to node1",
                "rules": [{"name": "misplaced", "match": {"comm": "lt-misplaced"}, "cpu": {"nodes": [1]},
                           "memory": {"home_node": 1}}]}
    with MessagesServer([("call", "process_detail", {"pid": misplaced.pid}), ("tool", proposal)]) as server:
        result = subprocess.run(
            ["llamas", "run", "--once", "--advisor", "claude", "--decide-every", "3", "--devices", str(DEVICES)],
            env={**env, "ANTHROPIC_API_KEY": "sk-lab", "ANTHROPIC_BASE_URL": server.url},
            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr
    assert os.sched_getaffinity(misplaced.pid) == {1}
    # the read-only tool answered with the process's own numbers, as data
    detail = json.loads(server.requests[1]["messages"][-1]["content"][0]["content"])
    assert detail["pid"] == misplaced.pid and detail["resident_pages_by_node_now"].get("1", 0) > 1000
    assert str(misplaced.pid) in server.user_text()
    entry = [e for e in _audit(env) if e["event"] == "apply"][-1]
    assert entry["advisor"] == "claude" and entry["usage"]["calls"] == 2 and entry["tokens"]["input"] > 0


def test_a_generation_that_makes_placement_worse_is_reverted(env, toucher_binary, tmp_path):
    binary = tmp_path / "lt-victim"
    shutil.copy(toucher_binary, binary)
    child = Toucher(binary, ("numactl", "--cpunodebind=0", "--preferred=0"))
    pages = 4000
    start = child.touch("write", pages)
    addresses = [start + i * 4096 for i in range(pages)]
    assert mempolicy.move_pages(child.pid, addresses, None).count(0) == pages
    bad = {"schema": "llamas.policy/v1", "rationale": "a bad idea",
           "rules": [{"name": "bad", "match": {"pid": child.pid}, "cpu": {"nodes": [0]},
                      "memory": {"home_node": 2, "max_mbps": 500}}]}
    (tmp_path / "config.toml").write_text("[llm]\nretries = 0\n")
    with MessagesServer([("tool", bad)] + [("status", 500)] * 30) as server:
        run = subprocess.Popen(
            ["llamas", "run", "--advisor", "claude", "--decide-every", "2", "--devices", str(DEVICES)],
            env={**env, "ANTHROPIC_API_KEY": "sk-lab", "ANTHROPIC_BASE_URL": server.url,
                 "LLAMAS_CONFIG_DIR": str(tmp_path)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_for_line(run.stderr, "generation 1 in force", 300), "never applied"
            assert wait_for_line(run.stderr, "reverted generation 1", 90), "never reverted"
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=120)
    revert = next(e for e in _audit(env) if e["event"] == "revert")
    assert revert["after"] - revert["before"] > 0.2 and revert["revert_s"] < 3.0
    assert revert["reverted_document"]["rules"][0]["name"] == "bad"
    # every page the bad generation moved is back on node0
    assert mempolicy.move_pages(child.pid, addresses, None).count(0) >= 0.95 * pages
    child.close()


def test_audit_markdown_and_json_carry_the_misplaced_process(env, misplaced, tmp_path):
    out, saved = tmp_path / "report.json", tmp_path / "snaps.jsonl"
    result = subprocess.run(["llamas", "audit", "--duration", "3", "--format", "json", "-o", str(out),
                             "--devices", str(DEVICES), "--save", str(saved)],
                            env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    finding = next(f for f in report["findings"] if f["pid"] == misplaced.pid)
    assert finding["kind"] == "remote-memory" and finding["evidence"]["alloc_remote"] > 0
    rule = next(r for r in report["policy"]["rules"] if r["name"] == finding["rule"])
    assert rule["match"] == {"pid": misplaced.pid} and rule["cpu"] == {"nodes": [1]}
    assert report["policy_valid"] and os.sched_getaffinity(misplaced.pid) == {0}  # recommended, not applied
    md = subprocess.run(["llamas", "audit", "--snapshot", str(saved), "--devices", str(DEVICES)],
                        env=env, capture_output=True, text=True, timeout=120)
    assert md.returncode == 0, md.stderr
    assert f"pid {misplaced.pid} `lt-misplaced`" in md.stdout and "remote-memory" in md.stdout
    assert '"comm": "lt-misplaced"' in md.stdout  # its rule, by name for later
