"""Read the pixels of a PNG (8-bit RGB or RGBA, not interlaced: what Chromium writes), so a test
can check what a rendered page shows."""

from __future__ import annotations

import functools
import struct
import zlib
from pathlib import Path


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows), each row width * 3 bytes of RGB."""
    return _decode(path.read_bytes())


@functools.lru_cache(maxsize=4)
def _decode(data: bytes) -> tuple[int, int, list[bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous, at = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[at], bytearray(raw[at + 1:at + 1 + stride])
        at += 1 + stride
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            upleft = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                line[i] = (line[i] + _paeth(left, up, upleft)) & 255
        previous = line
        rgb = bytes(line) if channels == 3 else bytes(b for j, b in enumerate(line) if j % 4 != 3)
        rows.append(rgb)
    return width, height, rows


def count_color(path: Path, hex_color: str) -> int:
    target = bytes.fromhex(hex_color.lstrip("#"))
    _, _, rows = pixels(path)
    return sum(1 for row in rows for i in range(0, len(row), 3) if row[i:i + 3] == target)


def first_row_with(path: Path, hex_color: str) -> int | None:
    target = bytes.fromhex(hex_color.lstrip("#"))
    _, _, rows = pixels(path)
    for y, row in enumerate(rows):
        if any(row[i:i + 3] == target for i in range(0, len(row), 3)):
            return y
    return None
