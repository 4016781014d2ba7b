"""The facts the BPF programs and Python share, read from bpf/*.h itself: `#define`d numbers and
the layouts of structs made of fixed-width integers. Nothing is copied by hand into Python, so
a limit or a field changed in a header changes on both sides (tests/unit/test_bpf_headers.py
checks the layouts against what they must be, tests/host/test_bundle.py against BCC's own).

The parser is for these headers, which are written to be read this way: one `#define NAME
NUMBER` per line, and struct fields `TYPE name;` or `TYPE name[N];` with N a number or a
define; C's natural alignment is applied, as clang does for the BPF target.
"""

from __future__ import annotations

import functools
import re
import struct
from pathlib import Path

from llamas_ebpf.errors import LlamasError
from llamas_ebpf.paths import Paths

_DEFINE = re.compile(r"^\s*#define\s+(\w+)\s+(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\s*(?:/\*.*)?$")
_STRUCT = re.compile(r"struct\s+(\w+)\s*\{(.*?)\};", re.S)
_FIELD = re.compile(r"^\s*(u8|u16|u32|u64|s8|s16|s32|s64|char)\s+(\w+)\s*(?:\[\s*(\w+)\s*\])?\s*;")
_FORMATS = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "s8": "b", "s16": "h", "s32": "i", "s64": "q",
            "char": "s"}
_SIZES = {"B": 1, "b": 1, "s": 1, "H": 2, "h": 2, "I": 4, "i": 4, "Q": 8, "q": 8}


def bpf_dir() -> Path:
    return Paths.from_env().bpf_dir


@functools.cache
def _text(header: str, directory: Path) -> str:
    return read_source(directory / header)


def read_source(path: Path) -> str:
    """A file of bpf/; a missing or unreadable one is a one-line error."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise LlamasError(f"BPF source {path}: {reason} (LLAMAS_BPF_DIR, or reinstall llamas)") from None


def defines(header: str, directory: Path | None = None) -> dict[str, int]:
    """Every `#define NAME NUMBER` of a header."""
    out: dict[str, int] = {}
    for line in _text(header, directory or bpf_dir()).splitlines():
        match = _DEFINE.match(line)
        if match:
            out[match.group(1)] = int(match.group(2), 0)
    return out


def define(header: str, name: str, directory: Path | None = None) -> int:
    try:
        return defines(header, directory)[name]
    except KeyError:
        raise KeyError(f"bpf/{header} defines no {name}") from None


def layout(header: str, name: str, directory: Path | None = None) -> struct.Struct:
    """A little-endian struct.Struct for `struct NAME` of a header, padding included."""
    directory = directory or bpf_dir()
    text = _text(header, directory)
    body = next((m.group(2) for m in _STRUCT.finditer(text) if m.group(1) == name), None)
    if body is None:
        raise KeyError(f"bpf/{header} has no struct {name}")
    known = defines(header, directory) | _included_defines(text, directory)
    fmt, offset, align = "<", 0, 1
    for line in body.splitlines():
        line = re.sub(r"/\*.*?\*/", "", line)
        if not line.strip():
            continue
        match = _FIELD.match(line)
        if match is None:
            raise ValueError(f"bpf/{header}: struct {name}: cannot read {line.strip()!r}")
        kind, _field, count = match.groups()
        code = _FORMATS[kind]
        size = _SIZES[code]
        n = 1 if count is None else int(count) if count.isdigit() else known[count]
        if offset % size:
            pad = size - offset % size
            fmt, offset = fmt + f"{pad}x", offset + pad
        fmt += f"{n}{code}" if code == "s" or n > 1 else code
        offset += size * n
        align = max(align, size)
    if offset % align:
        fmt += f"{align - offset % align}x"
    return struct.Struct(fmt)


def _included_defines(text: str, directory: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for included in re.findall(r'#include\s+"([\w.]+)"', text):
        out |= defines(included, directory)
    return out
