"""The host a recording was made on, kept beside its snapshots.

`llamas observe --save` and `llamas audit --save` put one `llamas.host/v1` line before the
snapshots of each run: the sysfs facts the inventory reads (what `llamas devices --capture`
writes as a tree, here as path -> text), and a digest of each device description in force. `llamas
audit --snapshot FILE` on another machine restores that tree into a temporary directory and
takes its inventory, its validation and its recommended policy from there, so a recording made on
a 3-node host is judged as a 3-node host wherever it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamas_ebpf.devices.capture import capture
from llamas_ebpf.errors import LlamasError

SCHEMA = "llamas.host/v1"
MAX_FILES = 20000  # a recorded tree larger than any real host's is refused, not restored


@dataclass
class HostRecord:
    host: str
    kernel: str
    time: float
    files: dict[str, str] = field(default_factory=dict)  # relative path -> content
    links: dict[str, str] = field(default_factory=dict)  # relative path -> link target
    descriptions: dict[str, str] = field(default_factory=dict)  # file name -> sha256

    def to_json(self) -> str:
        # the schema first: that is how a reader of snapshots tells this line apart
        return json.dumps({"schema": SCHEMA, "host": self.host, "kernel": self.kernel, "time": self.time,
                           "descriptions": self.descriptions, "files": self.files, "links": self.links})

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> HostRecord:
        try:
            files, links = data["files"], data.get("links", {})
            maps = isinstance(files, dict) and isinstance(links, dict)
            if not maps or len(files) + len(links) > MAX_FILES:
                raise ValueError("files and links must be maps, of at most 20000 entries")
            for name in [*files, *links]:
                if not isinstance(name, str) or name.startswith("/") or ".." in Path(name).parts:
                    raise ValueError(f"path {name!r} is not inside the tree")
            return cls(host=str(data["host"]), kernel=str(data["kernel"]), time=float(data["time"]),
                       files={str(k): str(v) for k, v in files.items()},
                       links={str(k): str(v) for k, v in links.items()},
                       descriptions={str(k): str(v) for k, v in data.get("descriptions", {}).items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise LlamasError(f"{where}: not a llamas host record ({exc})") from None

    def restore(self, dest: Path) -> Path:
        """Write the tree under `dest`, as `devices --capture` would have; returns `dest`."""
        for name, text in self.files.items():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        for name, link in self.links.items():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not link.startswith("/") and not target.exists():
                os.symlink(link, target)
        return dest


def _digests(devices_dir: Path | None) -> dict[str, str]:
    if devices_dir is None or not devices_dir.is_dir():
        return {}
    out = {}
    for path in sorted(devices_dir.glob("*.toml")):
        try:
            out[path.name] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
    return out


def record(devices_dir: Path | None, root: Path = Path("/")) -> HostRecord:
    """This host, now."""
    with tempfile.TemporaryDirectory(prefix="llamas-host-") as tmp:
        tree = Path(tmp)
        capture(tree, root)
        files, links = {}, {}
        for path in sorted(tree.rglob("*")):
            name = str(path.relative_to(tree))
            if path.is_symlink():
                links[name] = os.readlink(path)
            elif path.is_file():
                files[name] = path.read_text(errors="replace")
    release = files.get("proc/sys/kernel/osrelease", "").strip() or os.uname().release
    return HostRecord(host=socket.gethostname(), kernel=release, time=time.time(), files=files,
                      links=links, descriptions=_digests(devices_dir))


def changed_descriptions(recorded: HostRecord, devices_dir: Path | None) -> list[str]:
    """Description files that differ between the recording and `devices_dir`."""
    here = _digests(devices_dir)
    names = set(here) | set(recorded.descriptions)
    return sorted(n for n in names if here.get(n) != recorded.descriptions.get(n))
