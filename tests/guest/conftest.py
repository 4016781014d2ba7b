"""Inside the lab guest (scripts/lab sets LLAMAS_LAB=1): which topology this boot is."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamas_ebpf.kernel import mounts
from llamas_ebpf.lab import TOPOLOGIES, Topology
from tests.helpers.children import Toucher, build_helper, faulting, wait_for_line

ROOT = Path(__file__).resolve().parents[2]


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


@contextlib.contextmanager
def heuristic_daemon(env: dict[str, str], config_dir: Path, decide_every: int = 5,
                     deny_comm: tuple[str, ...] = (), prefix: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """`llamas run --advisor heuristic` with this repository's devices/ and the test itself denied
    (its own idle memory is not what is judged; `deny_comm`: helpers started later, by name),
    under `prefix` (numactl, to keep its own memory off a node), ready ("deciding every") when the
    block starts, and stopped with SIGTERM (its rollback) after. Yields the lines it has said so
    far, to show in an assertion."""
    names = ", ".join(json.dumps(name) for name in deny_comm)
    (config_dir / "config.toml").write_text(f"[guardrails]\ndeny_pids = [{os.getpid()}]\ndeny_comm = [{names}]\n")
    daemon = subprocess.Popen([*prefix, "llamas", "run", "--advisor", "heuristic", "--decide-every",
                               str(decide_every), "--devices", str(ROOT / "devices")],
                              env=env, stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    try:
        assert daemon.stderr is not None
        assert wait_for_line(daemon.stderr, "deciding every", 500, said), said
        yield said
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)


def applied_rules(env: dict[str, str], pid: int | None = None) -> list[tuple[dict, str]]:
    """(rule, its explanation) for every rule of every apply in the audit log, in order; with a
    pid, only the rules that match that process by pid."""
    log = [json.loads(line) for line in (Path(env["LLAMAS_STATE_DIR"]) / "audit.jsonl").read_text().splitlines()]
    return [(r, e["explanations"].get(r["name"], "")) for e in log if e["event"] == "apply"
            for r in e["document"]["rules"] if pid is None or r["match"] == {"pid": pid}]
