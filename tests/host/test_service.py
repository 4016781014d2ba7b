"""The systemd unit: it verifies (systemd-analyze), installs where it is told, and the daemon
runs, waits, pins and rolls back with nothing but the unit's CapabilityBoundingSet, on a target
that belongs to another user."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import require
from tests.helpers.children import wait_for_line, wait_for_masks
from tests.host.conftest import llamas

UNIT = Path(__file__).resolve().parents[2] / "llamas_ebpf/units/llamas.service"


def test_unit_verifies_and_installs(tmp_path):
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze missing: scripts/setup --test")
    result = llamas("service", "install", "--unit-dir", str(tmp_path / "units"), "--config-dir",
                    str(tmp_path / "etc"))
    assert result.returncode == 0, result.stderr
    unit = tmp_path / "units/llamas.service"
    text = unit.read_text()
    assert f"ExecStart={Path(sys.executable).parent / 'llamas'} run " in text and "@LLAMAS@" not in text
    assert "Type=notify" in text and "Restart=on-failure" in text and "ANTHROPIC_API_KEY" not in text.split(
        "[Service]")[1].split("EnvironmentFile")[0]
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    env = tmp_path / "etc/llamas.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    env.write_text("LLAMAS_ADVISOR=heuristic\n")
    again = llamas("service", "install", "--unit-dir", str(tmp_path / "units"), "--config-dir", str(tmp_path / "etc"))
    assert again.returncode == 0 and env.read_text() == "LLAMAS_ADVISOR=heuristic\n"  # an admin's file stays


def _kept_capabilities() -> list[str]:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("CapabilityBoundingSet="))
    return [c.lower() for c in line.split("=", 1)[1].split()]


def test_daemon_works_with_only_the_units_capabilities(env, tmp_path):
    require(shutil.which("capsh") is not None, "capsh missing: scripts/setup --test")
    values, _ = env
    present = re.findall(r"cap_\w+", next(x for x in subprocess.run(["capsh", "--print"], capture_output=True,
                                                                       text=True).stdout.splitlines()
                                           if x.startswith("Bounding set")))
    drop = [c for c in present if c not in _kept_capabilities()]
    binary = tmp_path / "lt-nobody"
    shutil.copy("/bin/sleep", binary)
    os.chmod(tmp_path, 0o755)
    child = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(binary), "300"])
    document = tmp_path / "policy.json"
    document.write_text(json.dumps({"schema": "llamas.policy/v1", "rules": [
        {"name": "nobody", "match": {"comm": "lt-nobody"}, "cpu": {"cpus": "1"}}]}))
    daemon = subprocess.Popen(["capsh", f"--drop={','.join(drop)}", "--", "-c",
                               f"exec {Path(sys.executable).parent / 'llamas'} run --advisor none"],
                              env={**os.environ, **values}, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_line(daemon.stderr, "waiting for llamas policy apply", 60), "daemon did not start"
        assert llamas("policy", "apply", str(document), env=values).returncode == 0
        wait_for_masks(lambda: [os.sched_getaffinity(child.pid)], {1}, 5, "not pinned")
        llamas("policy", "rollback", env=values)  # out of force from another shell: the daemon follows
        assert os.sched_getaffinity(child.pid) == set(range(os.cpu_count() or 1))
        assert llamas("policy", "apply", str(document), env=values).returncode == 0
        late = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(binary), "300"])
        try:  # started after the apply: only the daemon can pin it
            wait_for_masks(lambda: [os.sched_getaffinity(late.pid)], {1}, 5,
                           "a process started later was not pinned")
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
            for pid in (child.pid, late.pid):
                assert os.sched_getaffinity(pid) == set(range(os.cpu_count() or 1)), "SIGTERM must roll back"
        finally:
            late.kill()
    finally:
        child.kill()
        if daemon.poll() is None:
            daemon.kill()
