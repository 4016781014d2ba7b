"""Who may write a state directory, and when.

Two locks, both flock(2) on files in the state directory, so they are released by the kernel
when their holder dies (kill -9 included) and never need cleaning up:

- `run.lock` is held by `llamas run` for as long as it runs: one daemon per state directory. It
  holds the daemon's pid, so a second one can say whose it is.
- `state.lock` is held for the length of each change to the state (an apply, a rollback, a
  journal write), by whichever process makes it: the daemon and `llamas policy apply|rollback`
  from another shell take turns, so a generation number is never given out twice and the audit
  log, policy.json and the maps always describe the same generation.

`state_lock` is re-entrant within a process (an apply that pins threads writes the journal
under the lock it already holds): flock locks belong to an open file, and a second open of the
same file in the same process would wait for itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llamas_ebpf.errors import LlamasError

_held: dict[Path, tuple[int, int]] = {}  # lock file -> (fd, depth)


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    path = (state_dir / "state.lock").resolve()
    held = _held.get(path)
    if held is not None:
        _held[path] = (held[0], held[1] + 1)
        try:
            yield
        finally:
            fd, depth = _held[path]
            _held[path] = (fd, depth - 1)
        return
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held[path] = (fd, 1)
        yield
    finally:
        os.close(fd)  # releases the lock; closed before it is forgotten, so a signal between the
        _held.pop(path, None)  # two can never leave this process waiting on its own lock


class RunLock:
    """The daemon's lock on a state directory, for its whole life."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = state_dir / "run.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise LlamasError(f"another llamas run (pid {holder}) is using {state_dir}: one daemon per "
                              f"state directory (LLAMAS_STATE_DIR)") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    @staticmethod
    def holder(state_dir: Path) -> int | None:
        """The pid of the daemon holding the lock now, or None when none does."""
        try:
            fd = os.open(state_dir / "run.lock", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None  # nobody holds it
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = -1


def tighten(state_dir: Path) -> None:
    """The state directory 0700 and what is in it 0600, whatever umask or an older release left:
    it holds the policy, the audit log (with the LLM's rationale) and the original masks."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    for path in state_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o600)


def write_atomically(path: Path, text: str) -> None:
    """Replace a state file whole: a uniquely named temporary file beside it, fsynced, renamed
    over it, so a reader sees the old file or the new one and two writers never share a file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class CorruptState(LlamasError):
    """A state file that does not read back as written: torn, truncated, or edited."""


def _sum(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_sealed(path: Path, data: object) -> None:
    """A state file with its checksum: {"sha256": ..., "data": ...}, written atomically."""
    write_atomically(path, json.dumps({"sha256": _sum(data), "data": data}, indent=1))


def read_sealed(path: Path) -> Any:
    """What write_sealed wrote; None when there is no file. A file that does not parse, or whose
    data no longer matches its checksum, is CorruptState (one line, saying which). A file from
    before the checksum (no "sha256") reads as it is."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise CorruptState(f"{path}: not UTF-8 text") from None
    try:
        sealed = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptState(f"{path}: does not parse ({exc})") from None
    if not isinstance(sealed, dict) or "sha256" not in sealed:
        return sealed
    if sealed.get("sha256") != _sum(sealed.get("data")):
        raise CorruptState(f"{path}: its checksum does not match what it holds")
    return sealed["data"]


def append_line(path: Path, line: bytes) -> None:
    """One fsynced line at the end of a JSON-lines file (0600). A torn last line (a writer that
    died mid-write) is fenced off with a newline first, so it stays one bad line instead of
    swallowing this one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "ab+") as out:
        torn = False
        if out.seek(0, os.SEEK_END) > 0:
            out.seek(-1, os.SEEK_END)
            torn = out.read(1) != b"\n"
        out.write((b"\n" if torn else b"") + line + b"\n")
        out.flush()
        os.fsync(out.fileno())
