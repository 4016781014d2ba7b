"""A node's DRAM held, locked, but for what a test or benchmark leaves free: what a host whose
fast memory is short looks like (tests/guest/test_write_slow_lab.py, benchmarks/write_slow_lab.py).
No pytest here, so a benchmark can import it too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from llamas_ebpf.kernel import nodes

NAME = "llamas-balloon"  # its comm, for a deny list

_HOLD = ("import ctypes, mmap, sys, time\n"
         "libc = ctypes.CDLL(None, use_errno=True)\n"
         f"libc.prctl(15, b'{NAME}', 0, 0, 0)\n"  # PR_SET_NAME
         "if libc.mlockall(3) != 0:\n"  # MCL_CURRENT | MCL_FUTURE: every page faulted in and locked
         "    sys.exit('mlockall: errno %d' % ctypes.get_errno())\n"
         "held = mmap.mmap(-1, int(sys.argv[1]) << 20)\n"
         "print('held', flush=True)\n"
         "time.sleep(1e6)\n")


def free_mib(node: int) -> int:
    return nodes.memory_mb(node, key="MemFree") or 0


def room_mib(node: int) -> int:
    """What the node can take without the kernel reclaiming (nodes.room_pages), in MiB."""
    return (nodes.room_pages(node) or 0) * 4096 >> 20


class Balloon:
    """Node `node`'s DRAM, locked, but `keep` MiB of room: free memory above the kernel's
    watermarks and zone reserves (nodes.room_pages), which on the lab's 1 GiB node 0 are 60 MiB
    of its free memory. The page cache is dropped first, so that what is left free is all there
    is (the kernel would reclaim page cache to make room)."""

    def __init__(self, keep: int, node: int = 0) -> None:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3")
        size = room_mib(node) - keep
        if size <= 0:
            raise RuntimeError(f"node {node} has only {room_mib(node)} MiB of room: nothing to hold")
        self.proc = subprocess.Popen(["numactl", f"--membind={node}", "python3", "-c", _HOLD, str(size)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "held":
            raise RuntimeError("the balloon did not lock its memory")
        self.size = size

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Balloon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
