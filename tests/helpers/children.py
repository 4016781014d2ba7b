"""Child processes the host and lab tests drive: built from tests/helpers/*.c."""

from __future__ import annotations

import contextlib
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tests.conftest import ROOT, require


def build_helper(name: str, out: Path) -> Path:
    """Compile tests/helpers/NAME.c into out/NAME."""
    require(shutil.which("gcc") is not None, "gcc missing: run scripts/setup --test")
    binary = out / name
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(ROOT / "tests/helpers" / f"{name}.c")],
                   check=True)
    return binary


class Toucher:
    """A child that touches pages when told, so a test can bracket exactly that work."""

    def __init__(self, binary: Path, prefix: tuple[str, ...] = (), args: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [*prefix, str(binary), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.pid = self.proc.pid

    def command(self, text: str) -> list[str]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().split()
        assert reply and reply[0] == "done", reply
        return reply[1:]

    def begin(self, text: str) -> None:
        """Send a command that runs for a while (spin, spinhalf, mix) without waiting for it."""
        assert self.proc.stdin
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def touch(self, mode: str, pages: int) -> int:
        """Touch `pages` new pages; the address of the first."""
        return int(self.command(f"{mode} {pages}")[0], 16)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.write("exit\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # still in a spin it was sent
                self.proc.kill()
                self.proc.wait()


def wait_for_line(stream, text: str, timeout: float, seen: list[str] | None = None) -> bool:
    """Read lines from a pipe until one contains `text` (the controller says when bpf/enforce.c is
    attached); False on timeout or end of stream. Lines read are appended to `seen`."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([stream], [], [], left)[0]:
            return False
        line = stream.readline()
        if not line:
            return False
        if seen is not None:
            seen.append(line.strip())
        if text in line:
            return True
    return False


@contextlib.contextmanager
def faulting(child: Toucher, pages: int, every: float, mode: str = "write",
             limit: int | None = None) -> Iterator[None]:
    """While the block runs, a thread has `child` touch `pages` new pages every `every` seconds
    (at most `limit` times, for a bounded footprint), so that it faults in every window."""
    stop = threading.Event()

    def load() -> None:
        done = 0
        while (limit is None or done < limit) and not stop.wait(every):
            child.touch(mode, pages)
            done += 1

    thread = threading.Thread(target=load)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def wait_for_masks(masks: Callable[[], Iterable[set[int]]], cpus: set[int], seconds: float, why: str) -> None:
    """Poll until every mask `masks()` gives is `cpus`; fail with `why` after `seconds`."""
    started = time.monotonic()
    while any(mask != cpus for mask in masks()):
        assert time.monotonic() - started < seconds, why
        time.sleep(0.01)
