"""Validate a policy document against its schema, this host and the host's guardrails.

Untrusted input (an LLM's output, a file someone handed over) is bounded before it is parsed:
size, UTF-8, nesting depth, duplicate keys. Every error is reported with its field path; a
document with any error is refused whole.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llamas_ebpf.config import Guardrails
from llamas_ebpf.faces.text import safe
from llamas_ebpf.kernel import nodes, pci
from llamas_ebpf.policy.document import CpuSpec, GpuSpec, Match, MemorySpec, PolicyDocument

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
PF_KTHREAD = 0x00200000


@dataclass(frozen=True)
class HostFacts:
    node_cpus: dict[int, list[int]]  # node -> CPUs (empty: CPU-less)
    node_memory_mb: dict[int, int]
    gpu_nodes: list[int | None]  # by GPU index: its NUMA node
    controller_pid: int = field(default_factory=os.getpid)
    proc: Path = Path("/proc")
    cgroup_root: Path = Path("/sys/fs/cgroup")

    @classmethod
    def from_host(cls, root: Path = Path("/")) -> HostFacts:
        ids = nodes.node_ids(root)
        return cls(
            node_cpus={n: nodes.node_cpus(n, root) for n in ids},
            node_memory_mb={n: nodes.memory_mb(n, root) or 0 for n in ids},
            gpu_nodes=[g.numa_node for g in pci.gpus(root) if g.vendor == 0x10DE] or
                      [g.numa_node for g in pci.gpus(root)],
        )

    @property
    def online_cpus(self) -> set[int]:
        return {cpu for cpus in self.node_cpus.values() for cpu in cpus}


@dataclass
class Validation:
    document: PolicyDocument | None
    errors: list[str]

    @property
    def ok(self) -> bool:
        return self.document is not None and not self.errors


def _depth(text: str) -> int:
    """Deepest nesting of [ and { outside strings, without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key '{key}'")
        result[key] = value
    return result


def _not_a_number(name: str) -> None:
    raise ValueError(f"{name} is not a number (JSON has no {name}; every value is finite)")


def parse(raw: bytes) -> tuple[object | None, list[str]]:
    if len(raw) > MAX_BYTES:
        return None, [f"document: {len(raw)} bytes, over the {MAX_BYTES}-byte limit"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [f"document: not UTF-8 (byte {exc.start})"]
    if _depth(text) > MAX_DEPTH:
        return None, [f"document: nested deeper than {MAX_DEPTH} levels"]
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_not_a_number), []
    except ValueError as exc:
        return None, [f"document: not JSON: {exc}"]


# the names pydantic gives a union's members in an error's location ("list[constrained-int]",
# "constrained-str") are not fields of the document; fields are names like these
_FIELD = re.compile(r"[a-z_][a-z0-9_]*")
_KINDS = {list: "list", str: "str", int: "int", dict: "dict", bool: "bool", float: "float"}
_WORDS = {"list": "a list", "str": "a string", "int": "an integer", "dict": "an object"}


@dataclass(frozen=True)
class _Where:
    path: str  # in the document's own terms: its keys and indexes, a missing field included
    union: str | None = None  # the path of the union the error is inside, if any
    member: str = ""  # which member of it
    value: object = None  # the document's value at the union


def _where(loc: tuple[int | str, ...], data: object) -> _Where:
    path: list[str] = []
    union: tuple[str, str, object] | None = None
    node: object = data
    for part in loc:
        if isinstance(part, int):
            path.append(str(part))
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif _FIELD.fullmatch(part) and part not in _WORDS:
            path.append(part)  # a field the document lacks
            node = None
        elif union is None:
            union = (".".join(path) or "document", part, node)
    joined = ".".join(path) or "document"
    return _Where(joined, *union) if union else _Where(joined)


def _member_kind(member: str) -> str:
    """`list[constrained-int]` -> list, `constrained-str` -> str."""
    return next((kind for kind in _WORDS if member.startswith(kind) or member.endswith(kind)), member)


def schema_errors(exc: ValidationError, data: object) -> list[str]:
    """pydantic's errors, a line each, at the document's field paths. A value inside a union
    (`cpus`: a list of ids, or a CPU-list string) is judged by the member of its own kind only; a
    value of neither kind gets one line naming what it should be."""
    errors: list[str] = []
    unions: dict[str, tuple[object, list[str]]] = {}
    for e in exc.errors():
        where = _where(tuple(e["loc"]), data)
        said = "Input should be an object" if e["type"] == "model_type" else e["msg"]  # not a class name
        message = f"{where.path}: {said.removeprefix('Value error, ')}"
        if where.union is None:
            errors.append(message)
            continue
        kinds = unions.setdefault(where.union, (where.value, []))[1]
        kinds.append(_member_kind(where.member))
        if _member_kind(where.member) == _KINDS.get(type(where.value)):
            errors.append(message)
    for path, (value, kinds) in unions.items():
        if _KINDS.get(type(value)) not in kinds:
            errors.append(f"{path}: should be {' or '.join(_WORDS.get(k, k) for k in dict.fromkeys(kinds))}")
    return list(dict.fromkeys(errors))


def _kernel_thread(pid: int, proc: Path) -> bool:
    try:
        fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return bool(int(fields[6]) & PF_KTHREAD)  # field 9, flags


def _check_match(at: str, m: Match, host: HostFacts, guard: Guardrails) -> list[str]:
    errors = []
    if m.pid is not None:
        if m.pid == 1:
            errors.append(f"{at}.match.pid: pid 1 is never touched")
        elif m.pid == host.controller_pid:
            errors.append(f"{at}.match.pid: {m.pid} is the llamas controller itself")
        elif m.pid in guard.deny_pids:
            errors.append(f"{at}.match.pid: {m.pid} is on this host's denylist")
        elif not (host.proc / str(m.pid)).exists():
            errors.append(f"{at}.match.pid: no process {m.pid}")
        elif _kernel_thread(m.pid, host.proc):
            errors.append(f"{at}.match.pid: {m.pid} is a kernel thread")
    if m.comm is not None and m.comm in guard.denied_comms:
        errors.append(f"{at}.match.comm: '{m.comm}' is never touched (denylist)")
    if m.cgroup is not None:
        if not (host.cgroup_root / m.cgroup.lstrip("/")).is_dir():
            errors.append(f"{at}.match.cgroup: no cgroup {m.cgroup}")
        elif guard.scope_cgroups and not any(
            (m.cgroup + "/").startswith(s.rstrip("/") + "/") for s in guard.scope_cgroups
        ):
            errors.append(f"{at}.match.cgroup: {m.cgroup} is outside this host's scope")
    return errors


def _check_cpu(at: str, cpu: CpuSpec, host: HostFacts) -> list[str]:
    errors = []
    for node in cpu.nodes or []:
        if node not in host.node_cpus:
            errors.append(f"{at}.cpu.nodes: node {node} does not exist")
        elif not host.node_cpus[node]:
            errors.append(f"{at}.cpu.nodes: node {node} has no CPUs, never an affinity target")
    missing = sorted(set(cpu.cpu_ids) - host.online_cpus)
    if missing:
        errors.append(f"{at}.cpu.cpus: CPUs {missing} are not online here")
    return errors


def _check_memory(at: str, memory: MemorySpec, host: HostFacts, guard: Guardrails) -> list[str]:
    errors = []
    for name in ("home_node", "demote_node"):
        node = getattr(memory, name)
        if node is None:
            continue
        if node not in host.node_memory_mb:
            errors.append(f"{at}.memory.{name}: node {node} does not exist")
        elif host.node_memory_mb[node] <= 0:
            errors.append(f"{at}.memory.{name}: node {node} has no memory")
    if memory.max_mbps > guard.total_max_mbps:
        errors.append(f"{at}.memory.max_mbps: {memory.max_mbps} MB/s is over this host's "
                      f"total budget of {guard.total_max_mbps} MB/s")
    return errors


def _check_gpu(at: str, gpu: GpuSpec, host: HostFacts) -> list[str]:
    if gpu.device >= len(host.gpu_nodes):
        return [f"{at}.gpu.device: GPU {gpu.device} does not exist ({len(host.gpu_nodes)} GPUs here)"]
    return []


def _check_rules(count: int, guard: Guardrails) -> list[str]:
    if count <= guard.max_rules:
        return []
    return [f"rules: {count} rules, over this host's limit of {guard.max_rules}"]


def check_host(doc: PolicyDocument, host: HostFacts, guard: Guardrails) -> list[str]:
    errors = _check_rules(len(doc.rules), guard)
    for i, rule in enumerate(doc.rules):
        at = f"rules.{i}"
        errors += _check_match(at, rule.match, host, guard)
        if rule.cpu is not None:
            errors += _check_cpu(at, rule.cpu, host)
        if rule.memory is not None:
            errors += _check_memory(at, rule.memory, host, guard)
        if rule.gpu is not None:
            errors += _check_gpu(at, rule.gpu, host)
    return errors


def check_parts(data: object, host: HostFacts, guard: Guardrails) -> list[str]:
    """The host's checks on the parts of a document the schema refused that are well formed on
    their own (a rule's match, cpu, memory, gpu), so that one refusal lists every problem: pid 1
    beside an out-of-range CPU, not after it is fixed."""
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        return []
    errors = _check_rules(len(rules), guard)
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        at = f"rules.{i}"
        for key, model in (("match", Match), ("cpu", CpuSpec), ("memory", MemorySpec), ("gpu", GpuSpec)):
            try:
                part = model.model_validate(rule.get(key))
            except ValidationError:
                continue  # its schema errors are listed already
            if isinstance(part, Match):
                errors += _check_match(at, part, host, guard)
            elif isinstance(part, CpuSpec):
                errors += _check_cpu(at, part, host)
            elif isinstance(part, MemorySpec):
                errors += _check_memory(at, part, host, guard)
            elif isinstance(part, GpuSpec):
                errors += _check_gpu(at, part, host)
    return errors


def validate(raw: bytes, host: HostFacts, guard: Guardrails) -> Validation:
    """Every problem of a document, a line each; errors quote what the document says (a key, a
    value) with its control characters made inert, wherever the line goes next (a terminal, the
    audit log, the LLM's repair round)."""
    data, errors = parse(raw)
    if not errors:
        try:
            doc = PolicyDocument.model_validate(data)
        except ValidationError as exc:
            errors = schema_errors(exc, data) + check_parts(data, host, guard)
        else:
            errors = check_host(doc, host, guard)
            if not errors:
                return Validation(doc, [])
    return Validation(None, [safe(e) for e in errors])
