from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.helpers.children import Toucher, build_helper


@pytest.fixture(scope="session", autouse=True)
def _host_capable() -> None:
    require(os.geteuid() == 0, "host tier needs root (real BPF)")
    try:
        import bcc  # noqa: F401
    except ImportError:
        require(False, "BCC (python3-bpfcc) does not import: run scripts/setup")
    from llamas_ebpf.kernel import features, mounts

    mounts.ensure_mounted()
    caps = features.probe()
    require(caps.bpf.available, f"BPF unusable: {caps.bpf.reason}")
    require(caps.headers.available, caps.headers.reason)


@pytest.fixture(scope="session")
def toucher_binary(tmp_path_factory) -> Path:
    return build_helper("toucher", tmp_path_factory.mktemp("helpers"))


@pytest.fixture
def toucher(toucher_binary: Path) -> Iterator[Toucher]:
    child = Toucher(toucher_binary)
    try:
        yield child
    finally:
        child.close()


@pytest.fixture
def busy(toucher_binary, tmp_path):
    binary = tmp_path / "lt-busy"
    shutil.copy(toucher_binary, binary)
    child = Toucher(binary)
    child.touch("write", 256)
    yield child
    child.close()


def llamas(*args: str, env: dict | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "llamas"), *args]
    if user:
        command = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def env(tmp_path):
    """Private state, config and pin directories for one test, torn down after it."""
    pin = Path(f"/sys/fs/bpf/llamas-test-{os.getpid()}-{tmp_path.name}")
    config = tmp_path / "etc"
    config.mkdir()
    values = {"LLAMAS_STATE_DIR": str(tmp_path / "state"), "LLAMAS_CONFIG_DIR": str(config),
              "LLAMAS_PIN_DIR": str(pin)}
    yield values, config
    llamas("policy", "rollback", env=values)
    shutil.rmtree(pin, ignore_errors=True)
