"""The struct layouts Python reads from bpf/*.h (llamas_ebpf/bpf_headers.py) against what clang
makes of the same headers for the BPF target: BCC hands back each map's key and value as ctypes
built from clang's own layout, field by field."""

from __future__ import annotations

import ctypes

import pytest

from llamas_ebpf import bpf_headers
from llamas_ebpf.paths import Paths
from llamas_ebpf.probes.base import compile_bpf

STRUCTS = {
    "llamas.h": ["fault_counts", "region_key", "region_counts", "comm_value", "alloc_counts", "pfn_range",
                 "hint_counts", "numa_move_counts", "page_migration_key", "page_migration_counts",
                 "cpu_migration_counts", "gpu_key", "gpu_counts"],
    "llamas_policy.h": ["rule_value", "comm_key", "tgid_key", "cgroup_key", "request", "hot_count"],
}


def _offsets(ctype: type) -> list[int]:
    return [getattr(ctype, name).offset for name, *_ in ctype._fields_]


def _python_offsets(layout_format: str) -> list[int]:
    """Where each field starts in a struct.Struct format of bpf_headers (padding skipped)."""
    import re
    import struct

    offsets, at = [], 0
    for count, code in re.findall(r"(\d*)([a-zA-Z])", layout_format.lstrip("<")):
        n = int(count or 1)
        if code == "x":
            at += n
            continue
        size = struct.calcsize("<" + code)
        if code == "s":
            offsets.append(at)
            at += n
        else:
            offsets += [at + i * size for i in range(n)] if n > 1 else [at]
            at += size * n
    return offsets


@pytest.mark.parametrize(("header", "name"), [(h, n) for h, names in STRUCTS.items() for n in names])
def test_python_reads_the_layout_clang_builds(header, name):
    bpf_dir = Paths.from_env().bpf_dir
    text = (f'#include "llamas.h"\n#include "llamas_policy.h"\n'
            f"BPF_ARRAY(probe_map, struct {name}, 1);\n"
            f"int noop(void *ctx) {{ u32 k = 0; return probe_map.lookup(&k) != 0; }}\n")
    bpf = compile_bpf(bpf_dir, None, text=text)
    try:
        leaf = bpf["probe_map"].Leaf
        layout = bpf_headers.layout(header, name)
        assert ctypes.sizeof(leaf) == layout.size
        # clang's array fields are one ctypes field; bpf_headers expands them: compare starts
        clang = _offsets(leaf)
        ours = _python_offsets(layout.format)
        assert set(clang) <= set(ours) and clang[0] == ours[0] == 0, (clang, ours, layout.format)
    finally:
        bpf.cleanup()
