"""llamas installed from its wheel, as a user would: built with `pip wheel`, installed into a
fresh venv that sees Debian's BCC, and run from a directory outside the repository, with no
LLAMAS_BPF_DIR: `--version`, `doctor`, and one telemetry check against the kernel's minflt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = r"""
import os, sys
import llamas_ebpf
from llamas_ebpf.sense import Sensor
assert not llamas_ebpf.__file__.startswith(sys.argv[1]), llamas_ebpf.__file__
def minflt():
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return int(fields[7])
pages = 20000
with Sensor(only={"faults"}) as sensor:
    sensor.collect()
    before = minflt()
    block = bytearray(pages * 4096)
    for i in range(0, len(block), 4096):
        block[i] = 1
    after = minflt()
    sample = sensor.collect().process(os.getpid())
print(sample.faults.user, after - before, llamas_ebpf.__file__)
"""


def _run(command: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMAS_", "PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_works_from_anywhere(tmp_path):
    wheels = tmp_path / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(wheels.glob("llamas_ebpf-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("llamas_ebpf/bpf/faults.c", "llamas_ebpf/bpf/llamas.h", "llamas_ebpf/bpf/enforce.c",
                    "llamas_ebpf/schema/policy-v1.json", "llamas_ebpf/example_devices/pmem.toml"):
        assert shipped in names, shipped
    venv = tmp_path / "venv"
    made = _run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], tmp_path)
    assert made.returncode == 0, made.stderr
    installed = _run([str(venv / "bin/pip"), "install", "-q", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    version = _run([str(venv / "bin/llamas"), "--version"], elsewhere)
    assert version.returncode == 0 and version.stdout.startswith("llamas-ebpf "), version
    doctor = _run([str(venv / "bin/llamas"), "doctor", "--json"], elsewhere)
    assert doctor.returncode == 0, doctor.stderr
    probes = json.loads(doctor.stdout)["probes"]
    assert probes["faults"]["status"] in ("ok", "fallback"), probes
    check = _run([str(venv / "bin/python"), "-c", CHECK, str(ROOT)], elsewhere)
    assert check.returncode == 0, check.stderr[-3000:]
    counted, minflt, where = check.stdout.split()
    assert where.startswith(str(venv))
    assert int(minflt) >= 20000 and abs(int(counted) - int(minflt)) <= 0.02 * int(minflt), check.stdout


def test_a_missing_bpf_source_is_one_line(tmp_path):
    empty = tmp_path / "bpf"
    empty.mkdir()
    result = subprocess.run([str(Path(sys.executable).parent / "llamas"), "doctor"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "LLAMAS_BPF_DIR": str(empty)})
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and "BPF source" in result.stderr and "llamas.h" in result.stderr, \
        result.stderr
