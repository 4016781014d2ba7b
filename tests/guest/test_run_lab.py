"""The run loop on a real multi-node kernel (the `tiered` topology), NUMA balancing off:
`llamas run --once` with the heuristic, and `llamas run` with claude (a Messages API server on
the guest's 127.0.0.1) whose generation makes placement worse and is reverted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from llamas_ebpf.kernel import mempolicy
from tests.helpers.children import Toucher, wait_for_line
from tests.helpers.messages_server import MessagesServer

DEVICES = Path(__file__).resolve().parents[2] / "devices"


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
    script = [("call", "process_detail", {"pid": child.pid}), ("tool", bad)] + [("status", 500)] * 30
    with MessagesServer(script) as server:
        run = subprocess.Popen(
            ["llamas", "run", "--advisor", "claude", "--decide-every", "2", "--devices", str(DEVICES)],
            env={**env, "ANTHROPIC_API_KEY": "sk-lab", "ANTHROPIC_BASE_URL": server.url,
                 "LLAMAS_CONFIG_DIR": str(tmp_path)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        said: list[str] = []
        try:
            assert wait_for_line(run.stderr, "generation 1 in force", 300, said), f"never applied: {said[-5:]}"
            if not wait_for_line(run.stderr, "reverted generation 1", 90, said):
                events = [{k: e.get(k) for k in ("event", "generation", "outcome", "reason", "before", "after")}
                          for e in _audit(env)[-8:]]
                raise AssertionError(f"never reverted; llamas said {said[-6:]}; audit {events}; pages by node "
                                     f"{mempolicy.pages_per_node(child.pid)}")
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=120)
    # claude end to end: the read-only tool answered with the process's own numbers, as data
    detail = json.loads(server.requests[1]["messages"][-1]["content"][0]["content"])
    assert detail["pid"] == child.pid and detail["resident_pages_by_node_now"].get("0", 0) >= pages
    applied = next(e for e in _audit(env) if e["event"] == "apply" and e["advisor"] == "claude")
    assert applied["usage"]["calls"] == 2 and applied["tokens"]["input"] > 0 and applied["model"]
    assert applied["inputs_digest"].startswith("sha256:") and applied["diff"]["added"] == ["bad"]
    revert = next(e for e in _audit(env) if e["event"] == "revert")
    assert revert["after"] - revert["before"] > 0.2 and revert["revert_s"] < 3.0
    assert revert["reverted_document"]["rules"][0]["name"] == "bad"
    # every page the bad generation moved is back on node0
    assert mempolicy.move_pages(child.pid, addresses, None).count(0) >= 0.95 * pages
    child.close()
