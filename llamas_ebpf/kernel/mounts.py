"""The pseudo file systems the probes need: tracefs, debugfs and bpffs, mounted when missing."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass
from pathlib import Path

from llamas_ebpf.errors import LlamasError


@dataclass(frozen=True)
class PseudoFs:
    fstype: str
    target: str


NEEDED = (
    PseudoFs("tracefs", "/sys/kernel/tracing"),
    PseudoFs("debugfs", "/sys/kernel/debug"),
    PseudoFs("bpf", "/sys/fs/bpf"),
)


def mounted_types(mounts_file: Path = Path("/proc/self/mounts")) -> dict[str, str]:
    """target -> fstype for every mount."""
    result: dict[str, str] = {}
    for line in mounts_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            result[parts[1]] = parts[2]
    return result


def _mount(fs: PseudoFs) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    rc = libc.mount(fs.fstype.encode(), fs.target.encode(), fs.fstype.encode(), 0, None)
    if rc != 0:
        err = ctypes.get_errno()
        raise LlamasError(f"cannot mount {fs.fstype} on {fs.target}: {os.strerror(err)}")


def ensure_mounted() -> list[str]:
    """Mount whichever of tracefs, debugfs and bpffs is missing; return what was mounted."""
    done = []
    have = mounted_types()
    for fs in NEEDED:
        if have.get(fs.target) == fs.fstype:
            continue
        _mount(fs)
        done.append(f"{fs.fstype} on {fs.target}")
    return done
