"""Validate a policy document against its schema, this host and the host's guardrails.

Untrusted input (an LLM's output, a file someone handed over) is bounded before it is parsed:
size, UTF-8, nesting depth, duplicate keys. Every error is reported with its field path; a
document with any error is refused whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llamas_ebpf.config import Guardrails
from llamas_ebpf.kernel import nodes, pci
from llamas_ebpf.policy.document import PolicyDocument

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
        return json.loads(text, object_pairs_hook=_no_duplicate_keys), []
    except ValueError as exc:
        return None, [f"document: not JSON: {exc}"]


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "document"


def _kernel_thread(pid: int, proc: Path) -> bool:
    try:
        fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return bool(int(fields[6]) & PF_KTHREAD)  # field 9, flags


def check_host(doc: PolicyDocument, host: HostFacts, guard: Guardrails) -> list[str]:
    errors: list[str] = []
    if len(doc.rules) > guard.max_rules:
        errors.append(f"rules: {len(doc.rules)} rules, over this host's limit of {guard.max_rules}")
    online = host.online_cpus
    for i, rule in enumerate(doc.rules):
        at = f"rules.{i}"
        m = rule.match
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
        if rule.cpu is not None:
            for node in rule.cpu.nodes or []:
                if node not in host.node_cpus:
                    errors.append(f"{at}.cpu.nodes: node {node} does not exist")
                elif not host.node_cpus[node]:
                    errors.append(f"{at}.cpu.nodes: node {node} has no CPUs, never an affinity target")
            missing = sorted(set(rule.cpu.cpu_ids) - online)
            if missing:
                errors.append(f"{at}.cpu.cpus: CPUs {missing} are not online here")
        if rule.memory is not None:
            for name in ("home_node", "demote_node"):
                node = getattr(rule.memory, name)
                if node is None:
                    continue
                if node not in host.node_memory_mb:
                    errors.append(f"{at}.memory.{name}: node {node} does not exist")
                elif host.node_memory_mb[node] <= 0:
                    errors.append(f"{at}.memory.{name}: node {node} has no memory")
            if rule.memory.max_mbps > guard.total_max_mbps:
                errors.append(f"{at}.memory.max_mbps: {rule.memory.max_mbps} MB/s is over this host's "
                              f"total budget of {guard.total_max_mbps} MB/s")
        if rule.gpu is not None and rule.gpu.device >= len(host.gpu_nodes):
            errors.append(f"{at}.gpu.device: GPU {rule.gpu.device} does not exist "
                          f"({len(host.gpu_nodes)} GPUs here)")
    return errors


def validate(raw: bytes, host: HostFacts, guard: Guardrails) -> Validation:
    data, errors = parse(raw)
    if errors:
        return Validation(None, errors)
    try:
        doc = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        return Validation(None, [f"{_path(tuple(e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                                 for e in exc.errors()])
    errors = check_host(doc, host, guard)
    return Validation(None if errors else doc, errors)
