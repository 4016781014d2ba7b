"""Which kernel headers BCC will compile against, and whether they match the running kernel.

BCC looks in $BCC_KERNEL_SOURCE, then /lib/modules/$(uname -r)/build (+ source). scripts/setup
installs the running kernel's headers, or the newest the distribution has, linked there. Headers
that do not match compile silently, which is why no probe reads a kernel struct field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_VERSION = re.compile(r"linux-headers-(?P<release>[\w.+~-]+?)(?:-common)?$")


@dataclass(frozen=True)
class HeadersInfo:
    path: Path | None  # the build directory BCC uses; None when there is none
    release: str | None  # the kernel release the headers were made for
    running: str
    matches: bool

    def describe(self) -> str:
        if self.path is None:
            return (
                f"no kernel headers for {self.running}: run scripts/setup "
                f"(looked in $BCC_KERNEL_SOURCE and /lib/modules/{self.running}/build)"
            )
        if self.matches:
            return f"{self.path} (matches {self.running})"
        return f"{self.path} ({self.release}, nearest available for running {self.running})"


def _release_of(build: Path) -> str | None:
    release_file = build / "include/config/kernel.release"
    if release_file.exists():
        return release_file.read_text().strip()
    match = _VERSION.search(build.resolve().name)
    return match.group("release") if match else None


def discover(modules_root: Path = Path("/lib/modules")) -> HeadersInfo:
    running = os.uname().release
    env_path = os.environ.get("BCC_KERNEL_SOURCE")
    build = Path(env_path) if env_path else modules_root / running / "build"
    if not (build / "include").is_dir():
        return HeadersInfo(None, None, running, False)
    release = _release_of(build)
    return HeadersInfo(build.resolve(), release, running, release == running)
