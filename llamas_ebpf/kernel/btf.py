"""A reader for the kernel's BTF (/sys/kernel/btf/vmlinux): just enough to find a function's type
id, which fentry and LSM programs name as their attach target."""

from __future__ import annotations

import struct
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
_MAGIC = 0xEB9F
_KIND_FUNC = 12
# bytes that follow the 12-byte btf_type, per kind: fixed, or per vlen entry
_FIXED_EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}
_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}


def function_ids(names: set[str], path: Path = VMLINUX) -> dict[str, int]:
    """BTF type ids of the FUNC entries named in `names` (absent names are left out)."""
    data = path.read_bytes()
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", data, 0
    )
    if magic != _MAGIC:
        raise ValueError(f"{path}: not BTF")
    strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
    wanted_offsets: dict[int, str] = {}
    for name in names:
        at = strings.find(b"\0" + name.encode() + b"\0")
        if at >= 0:
            wanted_offsets[at + 1] = name
    found: dict[str, int] = {}
    pos, end, type_id = hdr_len + type_off, hdr_len + type_off + type_len, 1
    while pos < end and len(found) < len(wanted_offsets):
        name_off, info, _size = struct.unpack_from("<III", data, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if kind == _KIND_FUNC and name_off in wanted_offsets:
            found[wanted_offsets[name_off]] = type_id
        pos += 12 + _FIXED_EXTRA.get(kind, 0) + _PER_MEMBER.get(kind, 0) * vlen
        type_id += 1
    return found
