"""Inside the lab guest (scripts/lab sets LLAMAS_LAB=1): which topology this boot is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llamas_ebpf.kernel import mounts
from llamas_ebpf.lab import TOPOLOGIES, Topology
from tests.helpers.children import Toucher, build_helper


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
