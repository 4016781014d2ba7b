"""kill -9 of `llamas run` in the middle of a migration, on a real multi-node kernel (`tiered`):
every page it moved is in the page journal before it moved, a restarted daemon finishes the
placement, and the rollback puts every page back where numa_maps first saw it.
(tests/host/test_crash.py has the other crash points; this one needs a second node.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from llamas_ebpf.actuator.pages import PageJournal
from llamas_ebpf.kernel import mempolicy
from tests.guest.conftest import set_numa_balancing
from tests.helpers.children import Toucher, wait_for_line

PAGES = 12000  # 47 MiB
MAX_MBPS = 20  # about 2.4 s for all of it, in batches of a few hundred pages


def _daemon(env: dict, *args: str) -> subprocess.Popen:
    daemon = subprocess.Popen(["llamas", "run", "--advisor", "none", *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return daemon


def test_kill_9_mid_migration_then_restart_and_rollback(topology, toucher_binary, tmp_path):
    assert topology.name == "tiered"
    set_numa_balancing(0)
    binary = tmp_path / "lt-moving"
    shutil.copy(toucher_binary, binary)
    child = Toucher(binary, ("numactl", "--cpunodebind=0", "--preferred=1"))
    try:
        start = child.touch("write", PAGES)
        addresses = [start + i * 4096 for i in range(PAGES)]
        before = mempolicy.move_pages(child.pid, addresses, None)
        assert before.count(1) >= 0.95 * PAGES, before.count(1)
        document = tmp_path / "policy.json"
        document.write_text(json.dumps({"schema": "llamas.policy/v1", "rationale": "lab", "rules": [
            {"name": "home", "match": {"comm": "lt-moving"}, "memory": {"home_node": 0, "max_mbps": MAX_MBPS}}]}))
        state = tmp_path / "state"
        env = {**os.environ, "LLAMAS_STATE_DIR": str(state), "LLAMAS_CONFIG_DIR": str(tmp_path),
               "LLAMAS_PIN_DIR": "/sys/fs/bpf/llamas-crash-lab"}

        # the daemon kills itself as it finishes its third batch of moves
        crashing = _daemon({**env, "LLAMAS_FAILPOINT": "pages.moved-batch:3"}, "--policy", str(document))
        crashing.wait(timeout=400)
        assert crashing.returncode == -signal.SIGKILL, crashing.stderr.read()[-2000:]
        midway = mempolicy.move_pages(child.pid, addresses, None)
        moved = [a for a, was, now in zip(addresses, before, midway, strict=True) if was != now]
        assert 0 < len(moved) < 0.9 * PAGES, len(moved)  # cut short, partway
        journal = PageJournal(state / "pages.jsonl").entries()
        recorded = journal.get(child.pid, {})
        # written ahead: every page that moved is in the journal, with the node it came from
        assert all(recorded.get(a) == was for a, was, now in zip(addresses, before, midway, strict=True)
                   if was != now), (len(moved), len(recorded))

        restarted = _daemon(env)
        try:
            assert wait_for_line(restarted.stderr, "keeping generation 1", 400), "no restart"
            deadline_pages = 0.95 * PAGES
            for _ in range(120):
                if mempolicy.move_pages(child.pid, addresses, None).count(0) >= deadline_pages:
                    break
                subprocess.run(["sleep", "0.5"], check=True)
            assert mempolicy.move_pages(child.pid, addresses, None).count(0) >= deadline_pages
        finally:
            restarted.send_signal(signal.SIGTERM)  # its rollback: every journalled page goes back
            restarted.wait(timeout=300)
        after = mempolicy.move_pages(child.pid, addresses, None)
        back = sum(a == b for a, b in zip(before, after, strict=True))
        assert back >= 0.99 * PAGES, back
        assert not PageJournal(state / "pages.jsonl").entries()
    finally:
        child.close()
        shutil.rmtree("/sys/fs/bpf/llamas-crash-lab", ignore_errors=True)
        Path("/proc/sys/kernel/numa_balancing").write_text("0")
