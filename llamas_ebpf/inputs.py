"""The one reader for what comes from outside: policy documents, device descriptions, snapshot
files, config.toml, stdin (the Messages API's answers are capped at RESPONSE_BYTES by
advise/claude.bounded_client); and the one TOML parser, for descriptions and config.toml.
Regular files only (a FIFO, a device such as /dev/zero, or a directory is refused before anything
is read, and opening never blocks), at most a limit of bytes (a file that grows past it while read
is refused too), and every failure one LlamasError line naming the input."""

from __future__ import annotations

import math
import os
import re
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any, BinaryIO

from llamas_ebpf.errors import LlamasError

POLICY_BYTES = 1 << 20  # a policy document (the schema allows 1,024 rules: well under this)
DESCRIPTION_BYTES = 256 << 10  # a device description
CONFIG_BYTES = 256 << 10  # config.toml
RESPONSE_BYTES = 4 << 20  # a Messages API answer (max_output_tokens keeps a real one far below)
SNAPSHOT_BYTES = 512 << 20  # a file of saved snapshots (an hour of 1 s snapshots of a busy host)

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFDIR: "a directory", stat.S_IFSOCK: "a socket"}


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def _read_capped(stream: BinaryIO | int, limit: int, name: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = os.read(stream, 1 << 16) if isinstance(stream, int) else stream.read(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
    raise LlamasError(f"{name}: more than {_size(limit)}, the most llamas reads here")


def read_bytes(path: Path, limit: int) -> bytes:
    """A regular file's bytes (or stdin's, for '-'), at most `limit`."""
    if str(path) == "-":
        return _read_capped(sys.stdin.buffer, limit, "stdin")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise LlamasError(f"{path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise LlamasError(f"{path}: {kind}, not a regular file")
        if info.st_size > limit:
            raise LlamasError(f"{path}: {info.st_size:,} bytes, more than {_size(limit)}, "
                              "the most llamas reads here")
        return _read_capped(fd, limit, str(path))
    except OSError as exc:
        raise LlamasError(f"{path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_text(path: Path, limit: int) -> str:
    """read_bytes, as UTF-8 text."""
    raw = read_bytes(path, limit)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LlamasError(f"{path}: not UTF-8 text (line {line})") from None


_TOML_AT = re.compile(r"\s*\(at line (\d+), column \d+\)")
_NOT_FINITE = re.compile(r"=\s*[+-]?(inf|nan)\b")


class TomlError(ValueError):
    """TOML that llamas does not take, with the line where it could say one."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise TomlError(f"{text} is not a finite number", None)
    return value


def parse_toml(text: str) -> dict[str, Any]:
    """tomllib.loads, with every float finite (a capacity of inf or nan is refused, not compared)
    and nesting that cannot exhaust the parser's recursion: one TomlError either way."""
    try:
        return tomllib.loads(text, parse_float=_finite)
    except TomlError as exc:
        found = next((n for n, line in enumerate(text.splitlines(), 1) if _NOT_FINITE.search(line)), None)
        raise TomlError(str(exc), found) from None
    except tomllib.TOMLDecodeError as exc:
        at = _TOML_AT.search(str(exc))
        raise TomlError(f"bad TOML: {_TOML_AT.sub('', str(exc)).strip()}",
                        int(at.group(1)) if at else None) from None
    except RecursionError:
        raise TomlError("bad TOML: nested too deeply", None) from None
