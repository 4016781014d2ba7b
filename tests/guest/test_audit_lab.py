"""`llamas audit` on a real multi-node kernel (the `tiered` topology): the Markdown and JSON carry
a finding and a rule for a deliberately misplaced process, and its access heatmap."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import ROOT
from tests.guest.test_run_lab import DEVICES


def test_audit_markdown_and_json_carry_the_misplaced_process(env, misplaced, tmp_path):
    out = tmp_path / "report.json"
    # in .lab/, which the host reads: tests/lab/test_lab.py audits this recording there
    saved = ROOT / ".lab" / "recorded-tiered.jsonl"
    saved.unlink(missing_ok=True)
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
    # threads to their memory, on a host with no device-specific need: the kernel would do it
    kernel = report["kernel_alternative"]
    assert kernel["enough"] and kernel["setting"] == 3 and kernel["now"] == 0, kernel
    access = report["charts"]["access"]  # DAMON vaddr in this guest: per process, with a heatmap
    assert access["method"] == "damon-vaddr", access
    assert any(p["pid"] == misplaced.pid and p["cells"] for p in access["processes"]), access
    md = subprocess.run(["llamas", "audit", "--snapshot", str(saved), "--devices", str(DEVICES)],
                        env=env, capture_output=True, text=True, timeout=120)
    assert md.returncode == 0, md.stderr
    assert f"pid {misplaced.pid} `lt-misplaced`" in md.stdout and "remote-memory" in md.stdout
    assert '"comm": "lt-misplaced"' in md.stdout  # its rule, by name for later
    assert "## Memory access" in md.stdout and "damon-vaddr" in md.stdout
