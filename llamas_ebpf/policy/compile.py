"""From a validated document to what the kernel side and the actuator need: one CompiledRule per
rule (CPU ids, home and demote nodes), and which running processes each rule takes."""

from __future__ import annotations

import os
from pathlib import Path

from llamas_ebpf.config import Guardrails
from llamas_ebpf.policy.document import PolicyDocument, Rule
from llamas_ebpf.policy.maps import CompiledRule
from llamas_ebpf.policy.validate import PF_KTHREAD, HostFacts

CGROUP_ROOT = Path("/sys/fs/cgroup")


def compile_rule(rule: Rule, host: HostFacts) -> CompiledRule:
    gpu_node = host.gpu_nodes[rule.gpu.device] if rule.gpu is not None else None
    cpus: list[int] = []
    if rule.cpu is not None:
        cpus = rule.cpu.cpu_ids or sorted(c for n in rule.cpu.nodes or [] for c in host.node_cpus[n])
    elif gpu_node is not None:
        cpus = host.node_cpus.get(gpu_node, [])  # "resolves to the GPU's NUMA node"
    home, demote, hot = -1, -1, 0
    if rule.memory is not None:
        home = rule.memory.home_node
        demote = rule.memory.demote_node if rule.memory.demote_node is not None else -1
        hot = rule.memory.hot_faults
    elif gpu_node is not None and host.node_memory_mb.get(gpu_node, 0) > 0:
        home, hot = gpu_node, 8
    return CompiledRule(cpus=cpus, home_node=home, demote_node=demote, hot_faults=hot)


def compile_document(doc: PolicyDocument, host: HostFacts) -> list[CompiledRule]:
    return [compile_rule(rule, host) for rule in doc.rules]


def cgroup_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The cgroup v2 path of a process, as '/a/b'."""
    try:
        for line in (proc / str(pid) / "cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:] or "/"
    except OSError:
        return None
    return None


def touchable(pid: int, guard: Guardrails, proc: Path = Path("/proc")) -> bool:
    """Whether llamas may change this process at all: never pid 1, kernel threads, itself, a
    denylisted process, or one outside the host's scope."""
    if pid <= 1 or pid == os.getpid() or pid in guard.deny_pids:
        return False
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return False
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    flags = int(stat.rsplit(")", 1)[1].split()[6])
    if flags & PF_KTHREAD or comm in guard.denied_comms:
        return False
    if guard.scope_cgroups:
        cgroup = cgroup_of(pid, proc) or ""
        return any((cgroup + "/").startswith(s.rstrip("/") + "/") for s in guard.scope_cgroups)
    return True


def rule_for(doc: PolicyDocument, pid: int, proc: Path = Path("/proc")) -> int | None:
    """The first rule that takes this process, by the process's own pid, comm, exe or cgroup."""
    comm = exe = cgroup = None
    for index, rule in enumerate(doc.rules):
        m = rule.match
        if m.pid is not None and m.pid == pid:
            return index
        if m.comm is not None:
            if comm is None:
                try:
                    comm = (proc / str(pid) / "comm").read_text().rstrip("\n")
                except OSError:
                    return None
            if comm == m.comm:
                return index
        if m.exe is not None:
            if exe is None:
                try:
                    exe = os.readlink(proc / str(pid) / "exe")
                except OSError:
                    exe = ""
            if exe == m.exe:
                return index
        if m.cgroup is not None:
            if cgroup is None:
                cgroup = cgroup_of(pid, proc) or ""
            if (cgroup + "/").startswith(m.cgroup.rstrip("/") + "/"):
                return index
    return None


def classify(doc: PolicyDocument, guard: Guardrails, proc: Path = Path("/proc")) -> dict[int, int]:
    """tgid -> rule index for every running process a rule takes and llamas may touch."""
    result = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        pid = int(entry)
        index = rule_for(doc, pid, proc)
        if index is not None and touchable(pid, guard, proc):
            result[pid] = index
    return result


def cgroup_id(path: str) -> int | None:
    try:
        return os.stat(CGROUP_ROOT / path.lstrip("/")).st_ino
    except OSError:
        return None
