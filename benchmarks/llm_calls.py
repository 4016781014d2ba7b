"""LLM calls per hour with the claude advisor on a steady host, and whether a change still gets
its decision. On this host, as root, against a Messages API server on 127.0.0.1 (the real
anthropic SDK over real HTTP; tests/helpers/messages_server.py):

    .venv/bin/python benchmarks/llm_calls.py [--minutes 10] [--decide-every 60]

A steady workload (four processes faulting at a constant rate, each seen busy every window)
runs for --minutes under `llamas run --advisor claude`; the server answers every call with an
empty policy. Reported: calls made, calls per hour, decisions skipped, and tokens. Then a new
busy process starts: the seconds until the advisor is asked with it among its reasons (target:
within one decision window), and whether the call's reasons name it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.children import Toucher, build_helper, faulting  # noqa: E402
from tests.helpers.messages_server import MessagesServer  # noqa: E402

EMPTY = {"schema": "llamas.policy/v1", "rationale": "nothing to change", "rules": []}


def audit(state: Path) -> list[dict]:
    path = state / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--decide-every", type=float, default=60)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llamas-llm-"))
    toucher = build_helper("toucher", work)
    state = work / "state"
    env = {**os.environ, "LLAMAS_STATE_DIR": str(state), "LLAMAS_CONFIG_DIR": str(work),
           "LLAMAS_PIN_DIR": f"/sys/fs/bpf/llamas-llm-{os.getpid()}", "ANTHROPIC_API_KEY": "sk-bench"}
    (work / "config.toml").write_text(f"[guardrails]\ndeny_pids = [{os.getpid()}]\n")
    steady = []
    for i in range(4):
        binary = work / f"lt-steady{i}"
        shutil.copy(toucher, binary)
        steady.append(Toucher(binary))
    with MessagesServer([("tool", EMPTY)] * 1000) as server, contextlib.ExitStack() as stack:
        for child in steady:  # 256 KiB every 50 ms each, in a bounded footprint (churn)
            stack.callback(child.close)
            stack.enter_context(faulting(child, 64, 0.05, mode="churn"))
        env["ANTHROPIC_BASE_URL"] = server.url
        command = [str(Path(sys.executable).parent / "llamas"), "run", "--advisor", "claude",
                   "--decide-every", f"{args.decide_every:g}", "--devices", str(ROOT / "devices")]
        daemon = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        assert daemon.stderr is not None
        for line in daemon.stderr:
            if "deciding every" in line:
                break
        threading.Thread(target=lambda: [None for _ in daemon.stderr], daemon=True).start()
        started = time.monotonic()
        time.sleep(args.minutes * 60)
        steady_s = time.monotonic() - started
        calls = len(server.requests)
        log = audit(state)
        decisions = [e for e in log if e["event"] in ("decision", "apply")]
        skipped = sum(e.get("outcome") == "skipped" for e in decisions)
        tokens = sum(int((e.get("usage") or {}).get("input_tokens", 0)) + int((e.get("usage") or {}).get(
            "output_tokens", 0)) for e in decisions)
        # a change: a new busy process
        binary = work / "lt-newcomer"
        shutil.copy(toucher, binary)
        newcomer = Toucher(binary)
        changed = time.monotonic()
        asked_after = None
        reasons: list[str] = []
        with faulting(newcomer, 64, 0.05, mode="churn"):
            while time.monotonic() - changed < 3 * args.decide_every:
                for entry in audit(state)[len(log):]:
                    because = entry.get("asked_because") or []
                    if any(f"new busy process {newcomer.pid}" in r for r in because):
                        asked_after, reasons = time.monotonic() - changed, because
                if asked_after is not None:
                    break
                time.sleep(1)
        newcomer.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
    print(json.dumps({
        "steady_minutes": round(steady_s / 60, 1), "decide_every_s": args.decide_every,
        "calls": calls, "calls_per_hour": round(calls * 3600 / steady_s, 1),
        "decisions": len(decisions), "skipped": skipped, "tokens": tokens,
        "calls_per_hour_before_change_detection": round(3600 / args.decide_every),
        "new_busy_process_asked_after_s": round(asked_after, 1) if asked_after is not None else None,
        "asked_because": reasons, "target_calls_per_hour": 6,
    }, indent=2))


if __name__ == "__main__":
    main()
