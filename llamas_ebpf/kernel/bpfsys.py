"""The bpf(2) syscall, for what BCC does not expose: feature probes that load a two-instruction
program of a given type (so the answer is the kernel's own errno, not a guess from the config),
BPF_ENABLE_STATS, and per-program run-time statistics.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct
from dataclasses import dataclass
from pathlib import Path

_SYS_BPF = {"x86_64": 321, "aarch64": 280}
BPF_PROG_LOAD = 5
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0

# enum bpf_prog_type / enum bpf_attach_type (UAPI)
PROG_TYPES = {
    "socket_filter": 1,
    "kprobe": 2,
    "tracepoint": 5,
    "perf_event": 7,
    "raw_tracepoint": 17,
    "tracing": 26,
    "lsm": 29,
}
BPF_TRACE_FENTRY = 24
BPF_LSM_MAC = 27

# r0 = 0; exit
_RETURN_ZERO = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


Buffer = ctypes.Array[ctypes.c_char]  # what ctypes.create_string_buffer makes


def _bpf(cmd: int, attr: Buffer) -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"bpf(2) number unknown on {platform.machine()}")
    _libc.syscall.restype = ctypes.c_long
    rc = _libc.syscall(nr, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(rc)


@dataclass(frozen=True)
class LoadResult:
    ok: bool
    reason: str  # "" when ok, else the errno's name and text


def try_load(prog_type: str, expected_attach_type: int = 0, attach_btf_id: int = 0) -> LoadResult:
    """Load a program that returns 0 as `prog_type`, close it, and report what the kernel said."""
    insns = ctypes.create_string_buffer(_RETURN_ZERO, len(_RETURN_ZERO))
    license_text = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(144)
    struct.pack_into("<II", attr, 0, PROG_TYPES[prog_type], len(_RETURN_ZERO) // 8)
    struct.pack_into("<QQ", attr, 8, ctypes.addressof(insns), ctypes.addressof(license_text))
    struct.pack_into("<I", attr, 68, expected_attach_type)
    struct.pack_into("<I", attr, 108, attach_btf_id)
    try:
        fd = _bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "E?")
        return LoadResult(False, f"{name}: {exc.strerror}")
    os.close(fd)
    return LoadResult(True, "")


def enable_stats() -> int:
    """Turn on run-time accounting for every BPF program while the returned fd stays open."""
    attr = ctypes.create_string_buffer(8)
    struct.pack_into("<I", attr, 0, BPF_STATS_RUN_TIME)
    return _bpf(BPF_ENABLE_STATS, attr)


@dataclass(frozen=True)
class ProgStats:
    run_time_ns: int
    run_cnt: int
    recursion_misses: int


def prog_stats(fd: int) -> ProgStats:
    """Run time and count of a program, from /proc/self/fdinfo (as bpftop reads them)."""
    fields = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return ProgStats(
        run_time_ns=int(fields.get("run_time_ns", 0)),
        run_cnt=int(fields.get("run_cnt", 0)),
        recursion_misses=int(fields.get("recursion_misses", 0)),
    )


BPF_MAP_LOOKUP_BATCH = 24


def possible_cpus(path: Path = Path("/sys/devices/system/cpu/possible")) -> int:
    """How many value copies a per-CPU map holds (the kernel sizes them by possible CPUs)."""
    from llamas_ebpf.kernel import cpulist

    return max(cpulist.parse(path.read_text())) + 1


def lookup_batch(map_fd: int, key_size: int, value_size: int, max_entries: int) -> tuple[bytes, bytes, int]:
    """Every (key, value) of a map in as few bpf(2) calls as possible (BPF_MAP_LOOKUP_BATCH).

    `value_size` is the size of one element's value as the syscall returns it (for a per-CPU
    map, the per-CPU size rounded up to 8, times the possible CPUs). Returns the keys and values
    packed back to back, and how many there are. Raises OSError where the map type or kernel has
    no batch operations (EINVAL, ENOTSUPP), so the caller can iterate instead.
    """
    chunk = max(min(max_entries, 4096), 1)
    keys = ctypes.create_string_buffer(key_size * chunk)
    values = ctypes.create_string_buffer(value_size * chunk)
    token_in = ctypes.create_string_buffer(max(key_size, 8))
    token_out = ctypes.create_string_buffer(max(key_size, 8))
    attr = ctypes.create_string_buffer(56)
    key_parts: list[bytes] = []
    value_parts: list[bytes] = []
    total = 0
    first = True
    while True:
        struct.pack_into("<QQQQII", attr, 0,
                         0 if first else ctypes.addressof(token_in), ctypes.addressof(token_out),
                         ctypes.addressof(keys), ctypes.addressof(values), chunk, map_fd)
        done = False
        try:
            _bpf(BPF_MAP_LOOKUP_BATCH, attr)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: this was the last batch (count still valid)
                raise
            done = True
        (count,) = struct.unpack_from("<I", attr, 32)
        key_parts.append(ctypes.string_at(keys, count * key_size))  # `.raw` would copy the whole buffer
        value_parts.append(ctypes.string_at(values, count * value_size))
        total += count
        if done:
            return b"".join(key_parts), b"".join(value_parts), total
        ctypes.memmove(token_in, token_out, len(token_out))
        first = False


BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM = 0, 1, 2, 3
BPF_MAP_GET_NEXT_KEY, BPF_OBJ_PIN, BPF_OBJ_GET = 4, 6, 7
MAP_HASH, MAP_ARRAY = 1, 2
BPF_ANY = 0


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, name: str) -> int:
    attr = ctypes.create_string_buffer(72)
    struct.pack_into("<IIIII", attr, 0, map_type, key_size, value_size, max_entries, 0)
    name_bytes = name.encode()[:15]
    ctypes.memmove(ctypes.addressof(attr) + 28, name_bytes, len(name_bytes))
    return _bpf(BPF_MAP_CREATE, attr)


def _path_attr(path: Path, fd: int = 0) -> tuple[Buffer, Buffer]:
    encoded = ctypes.create_string_buffer(str(path).encode())
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("<QI", attr, 0, ctypes.addressof(encoded), fd)
    return attr, encoded


def obj_pin(fd: int, path: Path) -> None:
    attr, _keep = _path_attr(path, fd)
    _bpf(BPF_OBJ_PIN, attr)


def obj_get(path: Path) -> int:
    attr, _keep = _path_attr(path)
    return _bpf(BPF_OBJ_GET, attr)


def _elem_attr(fd: int, key: bytes, value: Buffer | None, flags: int = 0) -> tuple[Buffer, Buffer]:
    key_buf = ctypes.create_string_buffer(key, len(key))
    attr = ctypes.create_string_buffer(32)
    struct.pack_into("<IIQQQ", attr, 0, fd, 0, ctypes.addressof(key_buf),
                     ctypes.addressof(value) if value is not None else 0, flags)
    return attr, key_buf


def map_update(fd: int, key: bytes, value: bytes) -> None:
    value_buf = ctypes.create_string_buffer(value, len(value))
    attr, _keep = _elem_attr(fd, key, value_buf, BPF_ANY)
    _bpf(BPF_MAP_UPDATE_ELEM, attr)


def _found(cmd: int, attr: Buffer) -> bool:
    """bpf(cmd); False where the key (or a next key) does not exist."""
    try:
        _bpf(cmd, attr)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    value_buf = ctypes.create_string_buffer(value_size)
    attr, _keep = _elem_attr(fd, key, value_buf)
    return value_buf.raw if _found(BPF_MAP_LOOKUP_ELEM, attr) else None


def map_delete(fd: int, key: bytes) -> bool:
    attr, _keep = _elem_attr(fd, key, None)
    return _found(BPF_MAP_DELETE_ELEM, attr)


def map_keys(fd: int, key_size: int) -> list[bytes]:
    keys: list[bytes] = []
    previous: bytes | None = None
    while True:
        next_buf = ctypes.create_string_buffer(key_size)
        attr, _keep = _elem_attr(fd, previous if previous is not None else b"", next_buf)
        if previous is None:
            struct.pack_into("<Q", attr, 8, 0)  # no key: start from the first
        if not _found(BPF_MAP_GET_NEXT_KEY, attr):
            return keys
        previous = next_buf.raw
        keys.append(previous)
