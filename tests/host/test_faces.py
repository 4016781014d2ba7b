"""The faces on this kernel: `llamas top` driven in tmux and once, `llamas audit` rendered in
headless Chromium and read back from saved snapshots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llamas_ebpf.faces.audit import SECTION_COLORS
from tests.conftest import require
from tests.helpers.children import Toucher, faulting
from tests.helpers.png import first_row_with, pixels
from tests.host.conftest import llamas

ROOT = Path(__file__).resolve().parents[2]
DEVICES = ROOT / "devices"
LLAMAS = str(Path(sys.executable).parent / "llamas")


@pytest.fixture
def busy(toucher_binary, tmp_path):
    """lt-top, faulting a little all the time (16 pages every 50 ms: bounded, ~1.3 MB/s)."""
    binary = tmp_path / "lt-top"
    shutil.copy(toucher_binary, binary)
    child = Toucher(binary)
    with faulting(child, 16, 0.05):
        yield child
    child.close()


def test_top_once_shows_the_process_at_80_columns(env, busy):
    values, _ = env
    result = llamas("top", "--once", "--interval", "1", env={**values, "COLUMNS": "80", "LINES": "24"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("llamas top") and any(line.startswith("nodes ") for line in lines)
    assert any(line.startswith("probes ") and "flt:" in line for line in lines)
    row = next((line for line in lines if f"{busy.pid} " in line and "lt-top" in line), None)
    assert row is not None, result.stdout
    reads_writes = row.split()[3]  # FLT/s R/W
    assert int(float(reads_writes.split("/")[1].rstrip("K")) or 0) > 0, row
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)


def test_top_without_root_says_why_in_one_line():
    result = llamas("top", "--once", user="nobody")
    assert result.returncode == 2
    assert result.stderr.strip() == "llamas: not root: llamas top loads BPF programs (run it with sudo)"


def _pane(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def _wait_for(session: str, predicate, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _pane(session)
        if predicate(screen):
            return screen
        time.sleep(0.3)
    raise AssertionError(f"timed out; the screen was:\n{screen}")


def test_top_in_tmux_keys_work(env, busy, tmp_path):
    require(shutil.which("tmux") is not None, "tmux missing: scripts/setup --test")
    values, _ = env
    session = f"llamas-top-{tmp_path.name}"
    exports = " ".join(f"{k}={v}" for k, v in values.items())
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    f"env {exports} {LLAMAS} top --interval 1; sleep 30"], check=True)
    try:
        screen = _wait_for(session, lambda s: "lt-top" in s and str(busy.pid) in s)
        assert "PID" in screen and "sort:faults" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "p"], check=True)
        _wait_for(session, lambda s: "PAUSED" in s, 10)
        subprocess.run(["tmux", "send-keys", "-t", session, "p"], check=True)
        _wait_for(session, lambda s: "PAUSED" not in s, 10)
        subprocess.run(["tmux", "send-keys", "-t", session, "s"], check=True)
        _wait_for(session, lambda s: "sort:remote" in s, 10)
        subprocess.run(["tmux", "send-keys", "-t", session, "/", "l", "t", "-", "t", "o", "p", "Enter"], check=True)
        screen = _wait_for(session, lambda s: "filter:lt-top " in s or s.split("\n")[0].endswith("filter:lt-top"), 10)
        rows = [line for line in screen.splitlines() if line.strip()[:1].isdigit()]
        assert rows and all("lt-top" in row for row in rows), screen
        (tmp_path / "tmux-capture.txt").write_text(screen)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        _wait_for(session, lambda s: "llamas top" not in s, 10)  # back at the shell's sleep
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def _screenshot(html: Path, png: Path) -> None:
    chromium = shutil.which("chromium")
    require(chromium is not None, "chromium missing: scripts/setup --test")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=800,2200", f"--screenshot={png}", html.as_uri()],
                   check=True, capture_output=True, timeout=120)


def test_audit_html_is_self_contained_and_renders_every_section(env, busy, tmp_path):
    values, _ = env
    out = tmp_path / "report.html"
    result = llamas("audit", "--duration", "2", "--format", "html", "-o", str(out), "--devices", str(DEVICES),
                    env=values)
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    for forbidden in ("http://", "https://", "<script", "src=", "@import", "url("):
        assert forbidden not in page.replace('xmlns="http://www.w3.org/2000/svg"', ""), forbidden
    assert "<svg" in page and page.count("<section") == 5
    png = tmp_path / "report.png"
    _screenshot(out, png)
    width, height, _ = pixels(png)
    assert (width, height) == (800, 2200)
    tops = [first_row_with(png, color) for color in SECTION_COLORS.values()]
    assert all(top is not None for top in tops), dict(zip(SECTION_COLORS, tops, strict=True))
    assert tops == sorted(tops), dict(zip(SECTION_COLORS, tops, strict=True))  # host, devices, findings, policy, advisor
    shutil.copy(png, Path("/tmp") / "llamas-audit-host.png")  # to look at


def test_audit_from_saved_snapshots_json_and_markdown(env, tmp_path):
    values, _ = env
    saved = ROOT / "tests/fixtures/snapshots/pmem-readers-writers.jsonl"
    out = tmp_path / "report.json"
    result = llamas("audit", "--snapshot", str(saved), "--format", "json", "-o", str(out), "--devices", str(DEVICES),
                    env=values)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["host"]["snapshots"] == len(saved.read_text().splitlines())
    remote = [f for f in report["findings"] if f["kind"] == "remote-memory" and f["comm"] == "lt-remote"]
    assert remote and remote[0]["evidence"]["alloc_remote"] > 0 and remote[0]["rank"] >= 1
    assert [f["impact"] for f in report["findings"]] == sorted((f["impact"] for f in report["findings"]), reverse=True)
    rules = report["policy"]["rules"]
    assert any(r["match"] == {"comm": "lt-remote"} for r in rules)  # by name: the pids are long gone
    assert report["policy_valid"] and report["apply_command"] == f"llamas policy apply {tmp_path / 'report.policy.json'}"
    assert json.loads((tmp_path / "report.policy.json").read_text()) == report["policy"]
    assert remote[0]["rule"] in {r["name"] for r in rules}
    md = llamas("audit", "--snapshot", str(saved), "--devices", str(DEVICES), env=values)
    assert md.returncode == 0 and "## Findings" in md.stdout and "remote-memory" in md.stdout
    assert "llamas policy apply" in md.stdout
    # nothing was applied
    assert json.loads(llamas("policy", "show", "--json", env=values).stdout)["in_force"] is False


def test_audit_of_another_hosts_recording_judges_that_host(env, tmp_path):
    """A recording made on the 3-node tiered host (its sysfs facts beside its snapshots) is judged
    as that host here, on one node: rules that name nodes 1 and 2 validate, memory demotes to
    node 2. --sysfs-root names another host instead."""
    from llamas_ebpf.devices.recording import record

    values, _ = env
    recorded = record(DEVICES, root=ROOT / "tests/fixtures/sysfs/lab-tiered")
    recorded.host = "lab-tiered"
    saved = tmp_path / "recorded.jsonl"
    saved.write_text(recorded.to_json() + "\n" + (ROOT / "tests/fixtures/snapshots/pmem-readers-writers.jsonl").read_text())
    out = tmp_path / "report.json"
    result = llamas("audit", "--snapshot", str(saved), "--format", "json", "-o", str(out), "--devices", str(DEVICES),
                    env=values)
    assert result.returncode == 0, result.stderr
    assert "judging against lab-tiered (kernel 6.12" in result.stderr
    report = json.loads(out.read_text())
    assert report["host"]["name"].startswith("lab-tiered") and len(report["inventory"]["nodes"]) == 3
    assert report["policy_valid"], report["policy_errors"]
    assert {r["memory"]["demote_node"] for r in report["policy"]["rules"] if "memory" in r} == {2}
    single = llamas("audit", "--snapshot", str(saved), "--format", "json", "-o", str(out), "--devices", str(DEVICES),
                    "--sysfs-root", str(ROOT / "tests/fixtures/sysfs/lab-pmem"), env=values)
    assert single.returncode == 0 and "the captured host in" in single.stderr, single.stderr
