"""The lab tier: boot the topologies (scripts/lab) and run the guest suites inside them.

One boot per suite keeps each inside its time limit on 2-core CI machines under TCG: `tiered`
boots four times (telemetry, move_pages, fentry, doctor and policy; `run --once`; claude and
the auto-revert; audit), `pmem` and `2socket` run the topology checks. BCC compiles each probe at
start-up, a minute or more under TCG, which is what makes these boots long.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

# (boot, topology, what runs in it): one boot per line, each inside the 540 s limit under TCG
SUITES = [
    ("tiered", "tiered", ["tests/guest/test_topology.py", "tests/guest/test_telemetry_lab.py",
                          "tests/guest/test_policy_lab.py", "tests/guest/test_cold_lab.py"]),
    ("tiered-once", "tiered",
     ["tests/guest/test_run_lab.py::test_run_once_heuristic_colocates_the_misplaced_process"]),
    ("tiered-revert", "tiered",
     ["tests/guest/test_run_lab.py::test_a_generation_that_makes_placement_worse_is_reverted"]),
    ("tiered-audit", "tiered", ["tests/guest/test_audit_lab.py"]),
    ("pmem", "pmem", ["tests/guest/test_topology.py"]),
    ("2socket", "2socket", ["tests/guest/test_topology.py"]),
]


@pytest.fixture(scope="module", autouse=True)
def _lab_capable() -> None:
    require(os.geteuid() == 0, "the lab needs root")
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 missing: scripts/setup --lab")
    require((ROOT / ".venv/bin/vng").exists(), "virtme-ng missing: scripts/setup --lab")
    require(any(p.name.startswith("vmlinuz-6.12.") for p in Path("/boot").iterdir()),
            "no 6.12 guest kernel in /boot: scripts/setup --lab")


@pytest.mark.parametrize(("boot", "topology", "suite"), SUITES, ids=[boot for boot, _, _ in SUITES])
def test_guest_suite(boot, topology, suite):
    report = ROOT / ".lab" / f"junit-{boot}.xml"
    report.parent.mkdir(exist_ok=True)
    report.unlink(missing_ok=True)
    command = [str(ROOT / "scripts/lab"), "--topology", topology, "--numa-balancing", "0", "--",
               "env", f"LLAMAS_LAB_TOPOLOGY={topology}", "python", "-m", "pytest", *suite,
               "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=540)
    # what failed first, in a line each (a CI log shows only so much), then the guest's output
    output = "\n".join(_failures(report) + [result.stdout[-6000:], result.stderr[-2000:]])
    assert result.returncode == 0, output
    results = ET.parse(report).getroot()
    results = results if results.tag == "testsuite" else results.find("testsuite")
    assert results is not None, output
    counts = {k: int(results.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] > 0 and counts == {**counts, "failures": 0, "errors": 0, "skipped": 0}, output
    print(result.stderr.strip())  # the boot time line


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
