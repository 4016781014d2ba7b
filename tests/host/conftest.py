from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, require


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


def build_helper(name: str, out: Path) -> Path:
    """Compile tests/helpers/NAME.c into out/NAME."""
    require(shutil.which("gcc") is not None, "gcc missing: run scripts/setup --test")
    binary = out / name
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(ROOT / "tests/helpers" / f"{name}.c")],
                   check=True)
    return binary


@pytest.fixture(scope="session")
def toucher_binary(tmp_path_factory) -> Path:
    return build_helper("toucher", tmp_path_factory.mktemp("helpers"))


class Toucher:
    """A child that touches pages when told, so a test can bracket exactly that work."""

    def __init__(self, binary: Path) -> None:
        self.proc = subprocess.Popen(
            [str(binary)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.pid = self.proc.pid

    def touch(self, mode: str, pages: int) -> None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{mode} {pages}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin
            self.proc.stdin.write("exit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


@pytest.fixture
def toucher(toucher_binary: Path) -> Iterator[Toucher]:
    child = Toucher(toucher_binary)
    try:
        yield child
    finally:
        child.close()


def llamas(*args: str, env: dict | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "llamas"), *args]
    if user:
        command = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
