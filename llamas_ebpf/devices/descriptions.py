"""The administrator's device descriptions: devices/*.toml, schema `llamas.device/v1`
(documented in devices/README.md).

A bad file becomes one DescriptionError naming the file, the line where it is known and the
field path; the other files still load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llamas_ebpf import inputs
from llamas_ebpf.errors import LlamasError

SCHEMA = "llamas.device/v1"
PciAddress = Annotated[str, Field(pattern=r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")]
PciId = Annotated[str, Field(pattern=r"^[0-9a-f]{4}:[0-9a-f]{4}$")]
Positive = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """How a description finds its device; exactly one key."""

    numa_node: int | list[int] | None = None
    pci_address: PciAddress | None = None
    pci_id: PciId | None = None  # vendor:device, matches every such device
    cxl_memdev: Annotated[str, Field(pattern=r"^mem\d+$")] | None = None
    nic: Annotated[str, Field(pattern=r"^[\w.:-]{1,15}$")] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Match:
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of numa_node, pci_address, pci_id, cxl_memdev, nic "
                             f"(got {', '.join(given) or 'none'})")
        return self

    @property
    def numa_nodes(self) -> list[int]:
        if self.numa_node is None:
            return []
        return self.numa_node if isinstance(self.numa_node, list) else [self.numa_node]


class Properties(_Strict):
    """What an advisor needs to know; every field optional. Latency ns, bandwidth MB/s."""

    read_latency_ns: Positive | None = None
    write_latency_ns: Positive | None = None
    read_bandwidth_mbps: Positive | None = None
    write_bandwidth_mbps: Positive | None = None
    capacity_gb: Annotated[float, Field(gt=0)] | None = None
    persistent: bool | None = None
    endurance: Annotated[str, Field(max_length=200)] | None = None  # "unlimited", "3 DWPD", ...
    speed_mbps: Positive | None = None  # NICs


class Description(_Strict):
    schema_: Literal["llamas.device/v1"] = Field(alias="schema")
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    kind: Literal["memory", "gpu", "nic"]
    type: Literal["dram", "cxl", "pmem", "hbm", "gpu", "nic", "other"]
    summary: Annotated[str, Field(min_length=1, max_length=300)]
    match: Match
    properties: Properties = Properties()
    advice: Annotated[str, Field(max_length=4000)] = ""

    @model_validator(mode="after")
    def _match_fits_kind(self) -> Description:
        allowed = {
            "memory": {"numa_node", "cxl_memdev"},
            "gpu": {"pci_address", "pci_id"},
            "nic": {"nic", "pci_address", "pci_id"},
        }[self.kind]
        key = next(k for k, v in self.match.model_dump().items() if v is not None)
        if key not in allowed:
            raise ValueError(f"a {self.kind} device is matched by {' or '.join(sorted(allowed))}, not {key}")
        return self


@dataclass(frozen=True)
class LoadedDescription:
    path: Path
    description: Description


@dataclass(frozen=True)
class DescriptionError:
    path: Path
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"


def _line_of(text: str, field_path: tuple[object, ...]) -> int | None:
    """Where a field is set, best effort: the line of its key, inside its table when nested."""
    keys = [str(k) for k in field_path if not isinstance(k, int)]
    if not keys:
        return None
    lines = text.splitlines()
    start = 0
    if len(keys) > 1:
        header = re.compile(rf"^\s*\[\s*{re.escape('.'.join(keys[:-1]))}\s*\]")
        start = next((i for i, line in enumerate(lines) if header.match(line)), 0)
    key = re.compile(rf"^\s*\"?{re.escape(keys[-1])}\"?\s*=")
    for number in range(start, len(lines)):
        if key.match(lines[number]):
            return number + 1
    return None


def load_file(path: Path) -> LoadedDescription | DescriptionError:
    try:
        raw = inputs.read_bytes(path, inputs.DESCRIPTION_BYTES)
    except LlamasError as exc:
        return DescriptionError(path, None, None, str(exc).removeprefix(f"{path}: "))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DescriptionError(path, raw[: exc.start].count(b"\n") + 1, None, "not UTF-8 text")
    try:
        data = inputs.parse_toml(text)
    except inputs.TomlError as exc:
        return DescriptionError(path, exc.line, None, str(exc))
    try:
        return LoadedDescription(path, Description.model_validate(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        field_path = ".".join(str(p) for p in loc if p not in ("function-after",)) or None
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        elif first["type"] == "missing":
            message = "required field missing"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        return DescriptionError(path, _line_of(text, loc), field_path, message + more)


def load_dir(directory: Path | None) -> tuple[list[LoadedDescription], list[DescriptionError]]:
    """Every *.toml in the directory (none when it does not exist), good and bad apart.
    Two files describing under one name: the second is an error."""
    if directory is None or not directory.is_dir():
        return [], []
    loaded: list[LoadedDescription] = []
    errors: list[DescriptionError] = []
    names: dict[str, Path] = {}
    for path in sorted(directory.glob("*.toml")):
        result = load_file(path)
        if isinstance(result, DescriptionError):
            errors.append(result)
        elif result.description.name in names:
            errors.append(DescriptionError(path, _line_of(path.read_text(), ("name",)), "name",
                                           f"'{result.description.name}' is already described in "
                                           f"{names[result.description.name].name}"))
        else:
            names[result.description.name] = path
            loaded.append(result)
    return loaded, errors


def texts(devices_dir: Path | None, limit: int = 8000) -> dict[str, str]:
    """Each description file's text, verbatim (cut to `limit` characters), by file name: what the
    claude advisor is given beside the parsed inventory."""
    out: dict[str, str] = {}
    if devices_dir is None or not devices_dir.is_dir():
        return out
    for path in sorted(devices_dir.glob("*.toml")):
        try:
            out[path.name] = path.read_text(errors="replace")[:limit]
        except OSError:
            continue
    return out
