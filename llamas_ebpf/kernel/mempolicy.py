"""Page placement syscalls (move_pages(2), migrate_pages(2)) and where a process's pages are
(/proc/PID/numa_maps)."""

from __future__ import annotations

import array
import contextlib
import ctypes
import ctypes.util
import errno
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path

_SYS_MOVE_PAGES = {"x86_64": 279, "aarch64": 239}
_SYS_MIGRATE_PAGES = {"x86_64": 256, "aarch64": 238}
_SYS_CAPGET, _SYS_CAPSET = {"x86_64": (125, 126), "aarch64": (90, 91)}[platform.machine()]
_CAP_V3 = 0x20080522
CAP_SYS_NICE = 23
MPOL_MF_MOVE = 1 << 1
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_NODE_PAGES = re.compile(r"\bN(\d+)=(\d+)")


def move_pages(pid: int, addresses: Sequence[int], nodes: Sequence[int] | None) -> list[int]:
    """Move each page to its node (nodes=None: only ask where each page is).

    Returns, per page, the node it is on afterwards, or a negative errno (-ENOENT: not present,
    -EFAULT: not mapped, ...). Raises OSError when the call itself fails (e.g. ESRCH: the
    process exited).
    """
    if nodes is not None and len(nodes) != len(addresses):
        raise ValueError("one node per address")
    node_words = array.array("i", nodes) if nodes is not None else None
    return move_pages_array(pid, array.array("Q", addresses), node_words).tolist()


def move_pages_array(pid: int, pages: array.array[int], nodes: array.array[int] | None) -> array.array[int]:
    """move_pages(2) on arrays ('Q' addresses, 'i' nodes), the status as an 'i' array: the
    arrays are lent to the call without a copy, five times faster than ctypes' constructors for
    a process's worth of pages (100,000: 5 ms, not 25)."""
    count = len(pages)
    status = array.array("i", bytes(4 * count))
    if count == 0:
        return status
    if pages.itemsize != ctypes.sizeof(ctypes.c_void_p) or (nodes is not None and len(nodes) != count):
        raise ValueError("pages: one machine word each; nodes: one per page")
    page_view = (ctypes.c_void_p * count).from_buffer(pages)
    node_view = (ctypes.c_int * count).from_buffer(nodes) if nodes is not None else None
    status_view = (ctypes.c_int * count).from_buffer(status)
    _libc.syscall.restype = ctypes.c_long
    rc = _libc.syscall(
        _SYS_MOVE_PAGES[platform.machine()], ctypes.c_int(pid), ctypes.c_ulong(count), page_view,
        node_view, status_view, ctypes.c_int(MPOL_MF_MOVE if nodes is not None else 0),
    )
    err = ctypes.get_errno() if rc < 0 else 0
    del page_view, node_view, status_view  # release the buffers before the arrays are used again
    if rc < 0:
        raise OSError(err, f"move_pages(pid {pid}): {os.strerror(err)}")
    return status


def pages_per_node(pid: int, proc: Path = Path("/proc"),
                   ranges: list[tuple[int, int]] | None = None) -> dict[int, int]:
    """Resident pages of a process per node, summed over its mappings (numa_maps' Nx=count);
    with `ranges`, over the mappings that start inside one of them only."""
    totals: dict[int, int] = {}
    if ranges is None:  # every mapping: one pass over the text, no line taken apart
        text = (proc / str(pid) / "numa_maps").read_text()
        for node, pages in _NODE_PAGES.findall(text):
            totals[int(node)] = totals.get(int(node), 0) + int(pages)
        return totals
    for start, (by_node, _hugetlb) in pages_per_mapping(pid, proc).items():
        if not any(low <= start < high for low, high in ranges):
            continue
        for node, pages in by_node.items():
            totals[node] = totals.get(node, 0) + pages
    return totals


def pages_per_mapping(pid: int, proc: Path = Path("/proc")) -> dict[int, tuple[dict[int, int], bool]]:
    """Each mapping's resident pages per node (numa_maps' Nx=count), by the mapping's start
    address, and whether it is a hugetlb mapping (counted in huge pages there, not base pages).
    Raises OSError when the process is gone."""
    out: dict[int, tuple[dict[int, int], bool]] = {}
    for line in (proc / str(pid) / "numa_maps").read_text().splitlines():
        start, _, rest = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[int(start, 16)] = ({int(node): int(pages) for node, pages in _NODE_PAGES.findall(rest)},
                                   "huge" in rest.split())
    return out


_SYS_PROCESS_MADVISE = 440  # one number on every architecture (the unified syscall table)
MADV_COLD = 20


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


def madvise_cold(pid: int, ranges: list[tuple[int, int]]) -> int:
    """process_madvise(MADV_COLD) on each [start, end) of another process: the kernel clears the
    accessed bit of each of its private pages that has it, flushing the TLB entry with it, and
    deactivates them. Returns how many ranges were advised; a range the kernel refuses (a locked
    or PFN mapping, gone since) is skipped. Raises OSError when the call is not possible at all
    (no such process, a kernel before 5.10, not permitted)."""
    fd = os.pidfd_open(pid)
    _libc.syscall.restype = ctypes.c_long
    done = 0
    try:
        for start, end in ranges:
            vec = _IoVec(start, end - start)
            rc = _libc.syscall(_SYS_PROCESS_MADVISE, ctypes.c_int(fd), ctypes.byref(vec), ctypes.c_ulong(1),
                               ctypes.c_int(MADV_COLD), ctypes.c_uint(0))
            if rc >= 0:
                done += 1
                continue
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOMEM, errno.EFAULT):
                continue
            raise OSError(err, f"process_madvise(pid {pid}): {os.strerror(err)}")
    finally:
        os.close(fd)
    return done


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _capset_effective(drop: int | None, restore: tuple[_CapData, _CapData] | None = None
                      ) -> tuple[_CapData, _CapData]:
    """This thread's capability sets; with `drop`, that capability taken out of the effective
    set (it stays permitted, so it can come back); with `restore`, those sets put back."""
    header = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    _libc.syscall.restype = ctypes.c_long
    if _libc.syscall(_SYS_CAPGET, ctypes.byref(header), data) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capget: {os.strerror(err)}")
    saved = (_CapData(data[0].effective, data[0].permitted, data[0].inheritable),
             _CapData(data[1].effective, data[1].permitted, data[1].inheritable))
    if restore is not None:
        data[0], data[1] = restore
    elif drop is not None:
        data[drop // 32].effective &= ~(1 << (drop % 32)) & 0xFFFFFFFF
    header = _CapHeader(_CAP_V3, 0)
    if _libc.syscall(_SYS_CAPSET, ctypes.byref(header), data) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
    return saved


def migrate_pages(pid: int, from_nodes: set[int], to_node: int) -> int:
    """migrate_pages(2): every page of the process on `from_nodes` to `to_node`, in one call, as
    numactl's `migratepages` does. Only the pages the process alone maps move: CAP_SYS_NICE,
    which would make the kernel move shared ones too (libc's, a segment shared with another
    process: their placement for every process that maps them), is out of this thread's
    effective set for the call. Returns how many pages could not be moved; raises OSError when
    the call fails (ESRCH: the process exited)."""
    width = max([*from_nodes, to_node]) + 1
    words = (width + 63) // 64
    old = (ctypes.c_ulong * words)()
    new = (ctypes.c_ulong * words)()
    for node in from_nodes:
        old[node // 64] |= 1 << (node % 64)
    new[to_node // 64] |= 1 << (to_node % 64)
    saved = _capset_effective(CAP_SYS_NICE)
    try:
        _libc.syscall.restype = ctypes.c_long
        rc = _libc.syscall(_SYS_MIGRATE_PAGES[platform.machine()], ctypes.c_int(pid),
                           ctypes.c_ulong(words * 64), old, new)
        err = ctypes.get_errno() if rc < 0 else 0
    finally:
        _capset_effective(None, restore=saved)
    if rc < 0:
        raise OSError(err, f"migrate_pages(pid {pid}): {os.strerror(err)}")
    return int(rc)
