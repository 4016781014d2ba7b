"""Inside the lab guest (scripts/lab sets LLAMAS_LAB=1): which topology this boot is."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from llamas_ebpf.kernel import mounts
from llamas_ebpf.lab import TOPOLOGIES, Topology
from tests.helpers.children import Toucher, build_helper, faulting


@pytest.fixture(scope="session")
def topology() -> Topology:
    return TOPOLOGIES[os.environ["LLAMAS_LAB_TOPOLOGY"]]


@pytest.fixture(scope="session", autouse=True)
def _mounted() -> None:
    mounts.ensure_mounted()


@pytest.fixture(scope="session")
def toucher_binary(tmp_path_factory) -> Path:
    return build_helper("toucher", tmp_path_factory.mktemp("helpers"))


@pytest.fixture
def spawn(toucher_binary):
    children: list[Toucher] = []

    def start(*numactl: str) -> Toucher:
        child = Toucher(toucher_binary, ("numactl", *numactl) if numactl else ())
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


def set_numa_balancing(mode: int) -> None:
    Path("/proc/sys/kernel/numa_balancing").write_text(str(mode))


@pytest.fixture
def env(tmp_path):
    set_numa_balancing(0)
    values = {**os.environ, "LLAMAS_STATE_DIR": str(tmp_path / "state"), "LLAMAS_CONFIG_DIR": str(tmp_path),
              "LLAMAS_PIN_DIR": f"/sys/fs/bpf/llamas-{tmp_path.name}"}
    yield values
    subprocess.run(["llamas", "policy", "rollback"], env=values, capture_output=True)


@pytest.fixture
def misplaced(toucher_binary, tmp_path):
    """lt-misplaced: runs on node0, its memory on node1, allocating all along (bounded footprint)."""
    binary = tmp_path / "lt-misplaced"
    shutil.copy(toucher_binary, binary)
    child = Toucher(binary, ("numactl", "--cpunodebind=0", "--membind=1"))
    child.touch("write", 2048)
    # 64 pages every 50 ms for as long as the test runs, 256 KiB at a time: the evidence must not
    # run out while a slow machine compiles the probes (a bounded number of rounds ended after ~60 s)
    with faulting(child, 64, 0.05, mode="churn"):
        yield child
    child.close()
