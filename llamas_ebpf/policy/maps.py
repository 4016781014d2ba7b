"""The pinned policy maps under /sys/fs/bpf/llamas, shared by `llamas policy` (which writes them)
and bpf/enforce.c (which reads them in the kernel). The numbers and layouts are read from
bpf/llamas_policy.h itself (llamas_ebpf/bpf_headers.py).

Two slots hold two generations; the kernel side reads only the slot named in ctl[CTL_SLOT].
A new generation is written whole into the idle slot and then switched in with one 4-byte
update, so a half-written policy is never in force. The pin directory is 0700 and every pin 0600:
root only.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from llamas_ebpf import bpf_headers
from llamas_ebpf.kernel import bpfsys

HEADER = "llamas_policy.h"
_H = bpf_headers.defines(HEADER)
MAX_RULES = _H["MAX_RULES"]
NO_POLICY = _H["NO_POLICY"]
CTL_SLOT, CTL_EPOCH, CTL_FLAGS = _H["CTL_SLOT"], _H["CTL_EPOCH"], _H["CTL_FLAGS"]
CTL_ENTRIES = _H["CTL_ENTRIES"]
FLAG_EXE_RULES = _H["FLAG_EXE_RULES"]
RULE_CPU, RULE_MEMORY = _H["RULE_CPU"], _H["RULE_MEMORY"]
MASK_WORDS = _H["RULE_MASK_WORDS"]
RULE_FORMAT = bpf_headers.layout(HEADER, "rule_value")  # cpumask[], home_node, demote_node, hot_faults, flags
COMM_KEY = bpf_headers.layout(HEADER, "comm_key")
TGID_KEY = bpf_headers.layout(HEADER, "tgid_key")
CGROUP_KEY = bpf_headers.layout(HEADER, "cgroup_key")
U32 = struct.Struct("<I")

# name -> (type, key size, value size, entries), as bpf/enforce.c declares them
LAYOUT = {
    "ctl": (bpfsys.MAP_ARRAY, 4, 4, CTL_ENTRIES),
    "rules": (bpfsys.MAP_ARRAY, 4, RULE_FORMAT.size, 2 * MAX_RULES),
    "comm_rule": (bpfsys.MAP_HASH, COMM_KEY.size, 4, _H["COMM_RULE_ENTRIES"]),
    "tgid_rule": (bpfsys.MAP_HASH, TGID_KEY.size, 4, _H["TGID_RULE_ENTRIES"]),
    "cgroup_rule": (bpfsys.MAP_HASH, CGROUP_KEY.size, 4, _H["CGROUP_RULE_ENTRIES"]),
}


@dataclass(frozen=True)
class CompiledRule:
    cpus: list[int]  # empty: no CPU rule
    home_node: int  # -1: no memory rule
    demote_node: int
    hot_faults: int

    def pack(self) -> bytes:
        mask = [0] * MASK_WORDS
        for cpu in self.cpus:
            mask[cpu // 64] |= 1 << (cpu % 64)
        flags = (RULE_CPU if self.cpus else 0) | (RULE_MEMORY if self.home_node >= 0 else 0)
        return RULE_FORMAT.pack(*mask, self.home_node, self.demote_node, self.hot_faults, flags)


class PolicyMaps:
    def __init__(self, pin_dir: Path) -> None:
        self.pin_dir = pin_dir
        self.fds: dict[str, int] = {}

    @classmethod
    def open(cls, pin_dir: Path, create: bool) -> PolicyMaps:
        maps = cls(pin_dir)
        if create:
            pin_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(pin_dir, 0o700)
        for name, (map_type, key_size, value_size, entries) in LAYOUT.items():
            path = pin_dir / name
            if path.exists():
                maps.fds[name] = bpfsys.obj_get(path)
            elif create:
                fd = bpfsys.map_create(map_type, key_size, value_size, entries, f"llamas_{name}")
                bpfsys.obj_pin(fd, path)
                os.chmod(path, 0o600)
                maps.fds[name] = fd
                if name == "ctl":
                    bpfsys.map_update(fd, U32.pack(CTL_SLOT), U32.pack(NO_POLICY))
            else:
                maps.close()
                raise FileNotFoundError(path)
        return maps

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}

    # ---- control words ----
    def ctl(self, index: int) -> int:
        raw = bpfsys.map_lookup(self.fds["ctl"], U32.pack(index), 4)
        return U32.unpack(raw)[0] if raw else 0

    def set_ctl(self, index: int, value: int) -> None:
        bpfsys.map_update(self.fds["ctl"], U32.pack(index), U32.pack(value))

    @property
    def active_slot(self) -> int | None:
        slot = self.ctl(CTL_SLOT)
        return None if slot == NO_POLICY else slot

    # ---- one generation ----
    def clear_slot(self, slot: int) -> None:
        keyed = (("comm_rule", COMM_KEY), ("tgid_rule", TGID_KEY), ("cgroup_rule", CGROUP_KEY))
        for name, key_format in keyed:
            fd = self.fds[name]
            for key in bpfsys.map_keys(fd, key_format.size):
                if key_format.unpack(key)[0] == slot:
                    bpfsys.map_delete(fd, key)

    def write_rule(self, slot: int, index: int, rule: CompiledRule) -> None:
        bpfsys.map_update(self.fds["rules"], U32.pack(slot * MAX_RULES + index), rule.pack())

    def add_comm(self, slot: int, comm: str, index: int) -> None:
        key = COMM_KEY.pack(slot, comm.encode()[:15])
        bpfsys.map_update(self.fds["comm_rule"], key, U32.pack(index))

    def add_tgid(self, slot: int, tgid: int, index: int) -> None:
        bpfsys.map_update(self.fds["tgid_rule"], TGID_KEY.pack(slot, tgid), U32.pack(index))

    def add_cgroup(self, slot: int, cgroup_id: int, index: int) -> None:
        bpfsys.map_update(self.fds["cgroup_rule"], CGROUP_KEY.pack(slot, 0, cgroup_id), U32.pack(index))

    def tgid_rules(self, slot: int) -> dict[int, int]:
        fd = self.fds["tgid_rule"]
        result = {}
        for key in bpfsys.map_keys(fd, TGID_KEY.size):
            key_slot, tgid = TGID_KEY.unpack(key)
            raw = bpfsys.map_lookup(fd, key, 4)
            if key_slot == slot and raw is not None:
                result[tgid] = U32.unpack(raw)[0]
        return result

    def switch_to(self, slot: int | None, flags: int = 0) -> None:
        """Put a written slot in force (None: no policy), then free the other slot."""
        self.set_ctl(CTL_FLAGS, flags)
        self.set_ctl(CTL_SLOT, NO_POLICY if slot is None else slot)
        for other in (0, 1):
            if other != slot:
                self.clear_slot(other)
