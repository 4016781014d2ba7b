"""The lab tier: boot the topologies (scripts/lab) and run the guest suites inside them.

`tiered` boots four times (the topology, telemetry, move_pages, fentry, doctor and policy; then
`run --once` and claude with the auto-revert; then access by DAMON, audit and a kill -9
mid-migration; then placement by heat), `pmem` once (its topology, written ranges, and a
written range brought off the write-slow node), `2socket` once (its topology and the
steady-state reader). The boots run two at a time: under TCG a guest runs in one host thread
(llamas_ebpf/lab.py says why), so on a 2-core machine two boots side by side take little longer
than one. LLAMAS_LAB_PARALLEL sets how many (1 runs them one after another).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from llamas_ebpf import lab
from tests.conftest import ROOT, require

# (boot, topology, what runs in it), longest first: each inside the 600 s limit under TCG, two at a time
SUITES = [
    ("tiered", "tiered", ["tests/guest/test_topology.py", "tests/guest/test_telemetry_lab.py",
                          "tests/guest/test_policy_lab.py", "tests/guest/test_cold_lab.py"]),
    ("tiered-run", "tiered", ["tests/guest/test_run_lab.py"]),
    ("tiered-access", "tiered", ["tests/guest/test_access_lab.py", "tests/guest/test_audit_lab.py",
                                 "tests/guest/test_crash_lab.py"]),
    ("tiered-place", "tiered", ["tests/guest/test_place_lab.py"]),
    ("pmem", "pmem", ["tests/guest/test_topology.py", "tests/guest/test_written_lab.py",
                      "tests/guest/test_write_slow_lab.py"]),
    ("2socket", "2socket", ["tests/guest/test_topology.py", "tests/guest/test_steady_lab.py"]),
]
BOOT_TIMEOUT_S = 600


@pytest.fixture(scope="module", autouse=True)
def _lab_capable() -> None:
    require(os.geteuid() == 0, "the lab needs root")
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 missing: scripts/setup --lab")
    require((ROOT / ".venv/bin/vng").exists(), "virtme-ng missing: scripts/setup --lab")
    require(any(p.name.startswith("vmlinuz-6.12.") for p in Path("/boot").iterdir()),
            "no 6.12 guest kernel in /boot: scripts/setup --lab")


@pytest.fixture(scope="module")
def boots(_lab_capable):
    """Every suite's boot, started at once and run LLAMAS_LAB_PARALLEL (default 2) at a time."""
    workers = max(1, int(os.environ.get("LLAMAS_LAB_PARALLEL", "2")))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield {boot: pool.submit(_boot, boot, topology, suite) for boot, topology, suite in SUITES}


def _boot(boot: str, topology: str, suite: list[str]) -> tuple[subprocess.CompletedProcess, Path, float]:
    report = ROOT / ".lab" / f"junit-{boot}.xml"
    report.parent.mkdir(exist_ok=True)
    report.unlink(missing_ok=True)
    command = [str(ROOT / "scripts/lab"), "--topology", topology, "--numa-balancing", "0",
               "--timeout", str(BOOT_TIMEOUT_S - 20), "--",
               "env", f"LLAMAS_LAB_TOPOLOGY={topology}", "python", "-m", "pytest", *suite,
               "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    started = time.monotonic()
    died = ""
    for _ in range(2):
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=BOOT_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            result = subprocess.CompletedProcess(command, 124, _text(exc.stdout),
                                                 _text(exc.stderr) + f"\nthe boot ran past {BOOT_TIMEOUT_S} s")
        # QEMU ending under a suite, with no panic or oops on the guest's console, is the
        # emulator's failure, not the suite's: once more, and said. A guest kernel that died is
        # a failure.
        if lab.QEMU_ENDED not in result.stderr:
            break
        died = result.stderr.strip()
        report.unlink(missing_ok=True)
    if died:
        result.stderr = f"{result.stderr}\nran twice; the first time: {died.splitlines()[-1]}"
    return result, report, time.monotonic() - started


@pytest.mark.parametrize(("boot", "topology", "suite"), SUITES, ids=[boot for boot, _, _ in SUITES])
def test_guest_suite(boots, boot, topology, suite):
    result, report, took = boots[boot].result()
    # what failed first, in a line each (a CI log shows only so much), then the guest's output
    output = "\n".join([*_failures(report), result.stdout[-6000:], result.stderr[-2000:]])
    assert result.returncode == 0, output
    # the root over virtio-fs wherever a virtiofsd would start: 9p made this tier 2-3x longer
    if lab.virtiofs_expected():
        assert "root over virtiofs" in result.stderr, output
    results = ET.parse(report).getroot()
    results = results if results.tag == "testsuite" else results.find("testsuite")
    assert results is not None, output
    counts = {k: int(results.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] > 0 and counts == {**counts, "failures": 0, "errors": 0, "skipped": 0}, output
    print(f"{result.stderr.strip()}; {boot}: {counts['tests']} checks, {took:.0f} s")  # the boot time line


def test_a_tiered_recording_is_judged_as_tiered_on_this_host(boots, tmp_path):
    """The snapshots `llamas audit --save` wrote in the tiered guest carry that host: audited here,
    on one node, the recommended policy still demotes to node 2 and validates against 3 nodes."""
    result, _report, _took = boots["tiered-access"].result()
    saved = ROOT / ".lab" / "recorded-tiered.jsonl"
    assert saved.exists(), f"the guest saved no recording: {result.stdout[-2000:]}"
    out = tmp_path / "report.json"
    audit = subprocess.run([str(ROOT / ".venv/bin/llamas"), "audit", "--snapshot", str(saved), "--format", "json",
                            "-o", str(out), "--devices", str(ROOT / "devices")], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "LLAMAS_STATE_DIR": str(tmp_path / "state"),
                                             "LLAMAS_CONFIG_DIR": str(tmp_path)})
    assert audit.returncode == 0, audit.stderr
    assert "judging against" in audit.stderr and "(kernel 6.12" in audit.stderr, audit.stderr
    report = json.loads(out.read_text())
    assert len(report["inventory"]["nodes"]) == 3 and report["policy_valid"], report["policy_errors"]
    demotes = {r["memory"].get("demote_node") for r in report["policy"]["rules"] if "memory" in r}
    assert demotes == {2}, report["policy"]


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def _failures(report: Path) -> list[str]:
    """`test: message` for each failed guest test, from the guest's JUnit report."""
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError):
        return []
    out = []
    for case in root.iter("testcase"):
        for problem in [*case.findall("failure"), *case.findall("error")]:
            message = " ".join((problem.get("message") or "").split())[:600]
            out.append(f"FAILED {case.get('name')}: {message}")
    return out
