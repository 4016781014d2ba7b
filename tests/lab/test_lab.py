"""The lab tier: boot each topology once (scripts/lab) and run the guest suite inside it.

One boot per topology keeps the tier inside its 10-minute budget on 2-core CI machines under
TCG: `tiered` runs every guest check (telemetry, move_pages, fentry, doctor), `pmem` and
`2socket` the topology checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

SUITES = {
    "tiered": ["tests/guest"],
    "pmem": ["tests/guest/test_topology.py"],
    "2socket": ["tests/guest/test_topology.py"],
}


@pytest.fixture(scope="module", autouse=True)
def _lab_capable() -> None:
    require(os.geteuid() == 0, "the lab needs root")
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 missing: scripts/setup --lab")
    require((ROOT / ".venv/bin/vng").exists(), "virtme-ng missing: scripts/setup --lab")
    require(any(p.name.startswith("vmlinuz-6.12.") for p in Path("/boot").iterdir()),
            "no 6.12 guest kernel in /boot: scripts/setup --lab")


@pytest.mark.parametrize("topology", list(SUITES))
def test_guest_suite(topology):
    report = ROOT / ".lab" / f"junit-{topology}.xml"
    report.parent.mkdir(exist_ok=True)
    report.unlink(missing_ok=True)
    command = [str(ROOT / "scripts/lab"), "--topology", topology, "--numa-balancing", "0", "--",
               "env", f"LLAMAS_LAB_TOPOLOGY={topology}", "python", "-m", "pytest", *SUITES[topology],
               "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=540)
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None, output
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] > 0 and counts == {**counts, "failures": 0, "errors": 0, "skipped": 0}, output
    print(result.stderr.strip())  # the boot time line
