"""Where llamas keeps its files. Every path can be moved with an environment variable (tests do)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llamas_ebpf import resources


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    state_dir: Path
    pin_dir: Path
    bpf_dir: Path

    @classmethod
    def from_env(cls) -> Paths:
        env = os.environ.get
        return cls(
            config_dir=Path(env("LLAMAS_CONFIG_DIR", "/etc/llamas")),
            state_dir=Path(env("LLAMAS_STATE_DIR", "/var/lib/llamas")),
            pin_dir=Path(env("LLAMAS_PIN_DIR", "/sys/fs/bpf/llamas")),
            bpf_dir=Path(env("LLAMAS_BPF_DIR") or resources.bpf_dir()),
        )
