"""The policy document an advisor writes: `llamas.policy/v1` (DESIGN.md, "Policy document").

This module is the schema only: shapes, ranges and the rules every document obeys whatever the
host. What depends on the host (nodes that exist, guardrails) is in policy/validate.py. The same
schema, as JSON Schema, ships in llamas_ebpf/schema/policy-v1.json for the advisors to hand to an
LLM; tests keep the two identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llamas_ebpf import bpf_headers
from llamas_ebpf.kernel import cpulist

SCHEMA = "llamas.policy/v1"
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema" / "policy-v1.json"
# what the kernel side can hold, read from bpf/*.h
MAX_RULES = bpf_headers.define("llamas_policy.h", "MAX_RULES")  # a host's guardrail is usually far lower
MAX_CPUS = 64 * bpf_headers.define("llamas_policy.h", "RULE_MASK_WORDS")  # CPU ids a rule's mask holds
MAX_NODE = bpf_headers.define("llamas.h", "LLAMAS_MAX_NODES") - 1  # node ids the kernel side can name

NodeId = Annotated[int, Field(ge=0, le=MAX_NODE)]
RuleName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
CpuIds = Annotated[list[Annotated[int, Field(ge=0, lt=MAX_CPUS)]], Field(min_length=1, max_length=MAX_CPUS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # "100", true: not integers


def _exactly_one(model: BaseModel, names: tuple[str, ...]) -> None:
    given = [n for n in names if getattr(model, n) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(names)} (got {', '.join(given) or 'none'})")


class Match(_Strict):
    """Which processes a rule takes: exactly one key."""

    pid: Annotated[int, Field(ge=1, le=4194304)] | None = None
    comm: Annotated[str, Field(min_length=1, max_length=15, pattern=r"^[\x20-\x7e]+$")] | None = None
    exe: Annotated[str, Field(min_length=2, max_length=4096, pattern=r"^/[^\x00]*$")] | None = None
    cgroup: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")] | None = None

    @model_validator(mode="after")
    def _one(self) -> Match:
        _exactly_one(self, ("pid", "comm", "exe", "cgroup"))
        return self

    @field_validator("cgroup")
    @classmethod
    def _inside_cgroupfs(cls, value: str | None) -> str | None:
        if value is None:
            return value
        # the cgroupfs mount is taken off as a whole component only: /sys/fs/cgroupsystem.slice
        # is a cgroup of that name under the root, which does not exist, not /system.slice
        relative = value.strip("/")
        if value == "/sys/fs/cgroup" or value.startswith("/sys/fs/cgroup/"):
            relative = value.removeprefix("/sys/fs/cgroup").strip("/")
        if any(part in ("..", ".") for part in relative.split("/")):
            raise ValueError("a cgroup path may not contain '.' or '..'")
        return "/" + relative


class CpuSpec(_Strict):
    """Where the threads may run: the CPUs of some nodes, or CPUs by id."""

    nodes: Annotated[list[NodeId], Field(min_length=1, max_length=16)] | None = None
    cpus: CpuIds | Annotated[str, Field(min_length=1, max_length=1024)] | None = None

    @model_validator(mode="after")
    def _one(self) -> CpuSpec:
        _exactly_one(self, ("nodes", "cpus"))
        return self

    @property
    def cpu_ids(self) -> list[int]:
        """`cpus` as ids (the validator parsed a string form); [] when given by nodes."""
        assert not isinstance(self.cpus, str)
        return self.cpus or []

    @field_validator("cpus")
    @classmethod
    def _parse(cls, value: list[int] | str | None) -> list[int] | None:
        if isinstance(value, str):
            try:
                parsed = cpulist.parse(value, limit=MAX_CPUS)
            except ValueError as exc:
                raise ValueError(f"not a CPU list like '0-7,12': {exc}") from None
            if not parsed:
                raise ValueError("empty CPU set")
            if max(parsed) >= MAX_CPUS:
                raise ValueError(f"CPU ids go up to {MAX_CPUS - 1}")
            return parsed
        return sorted(set(value)) if value is not None else None


class MemorySpec(_Strict):
    """Where the pages belong: hot ones on home_node, cold ones (optionally) on demote_node."""

    home_node: NodeId
    demote_node: NodeId | None = None
    hot_faults: Annotated[int, Field(ge=1, le=1_000_000)] = 8  # faults per 2 MiB region per window
    max_mbps: Annotated[int, Field(ge=1, le=100_000)] = 100  # this rule's migration budget
    # a mapping not accessed for this long is cold, and goes to demote_node
    cold_seconds: Annotated[int, Field(ge=2, le=86_400)] = 30

    @model_validator(mode="after")
    def _distinct(self) -> MemorySpec:
        if self.demote_node is not None and self.demote_node == self.home_node:
            raise ValueError("demote_node must differ from home_node")
        return self


class GpuSpec(_Strict):
    device: Annotated[int, Field(ge=0, le=63)]


class Rule(_Strict):
    name: RuleName
    match: Match
    cpu: CpuSpec | None = None
    memory: MemorySpec | None = None
    gpu: GpuSpec | None = None

    @model_validator(mode="after")
    def _does_something(self) -> Rule:
        if self.cpu is None and self.memory is None and self.gpu is None:
            raise ValueError("a rule needs at least one of cpu, memory, gpu")
        return self


class PolicyDocument(_Strict):
    schema_: Literal["llamas.policy/v1"] = Field(alias="schema")
    rationale: Annotated[str, Field(max_length=4000)] = ""
    rules: Annotated[list[Rule], Field(max_length=MAX_RULES)]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyDocument:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name '{rule.name}' is used twice")
            seen.add(rule.name)
        return self

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2)


def json_schema() -> dict[str, Any]:
    schema = PolicyDocument.model_json_schema(by_alias=True)
    schema["$id"] = "https://llamas-ebpf.invalid/schema/policy-v1.json"
    schema["title"] = "llamas.policy/v1"
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
