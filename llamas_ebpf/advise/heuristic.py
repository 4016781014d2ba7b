"""The built-in advisor: a few placement rules a performance engineer would apply by hand, each
one explained. Deterministic: the same window, inventory and policy give the same document.

What it does, busiest process first, one rule per process at most:
  gpu        busy on a GPU (CUDA calls) -> its threads and memory on that GPU's node;
  dram       write-heavy with its pages on a write-slow node -> home on the fast node;
  readmostly reads, hardly any writes, and a node that reads fast but writes slowly -> home there
             (remote on purpose: such nodes are usually CPU-less);
  colocate   a high remote-allocation, remote-hint or remote-resident fraction -> CPUs and memory
             on one node (threads go to the memory when that node has CPUs and is on the fast
             tier, else memory comes home: hot pages stuck on a slow tier come back to DRAM);
  tier       big and busy on the fast tier, with a slower tier present -> cold mappings demoted.
Where the access probe watched a process, placement is judged by its memory's heat (DAMON): a
colocate rule from its hot bytes off the node it runs on, a tier rule from its cold bytes on the
fast tier. With at least BUSY_HOT_BYTES hot, fault counts do not overrule that; with less (a
process that allocates and drops, or one DAMON has only begun to watch) they still decide.
Memory rules get `demote_node` on the slowest tier, except a write-slow one for a writer.
Restraint: nothing for processes below BUSY_EVENTS events a window and BUSY_HOT_BYTES hot (or
BUSY_GPU_CALLS); nothing for one younger than MIN_RULE_AGE_S or busy in fewer than
MIN_BUSY_INTERVALS intervals of the window (start-up churn); nothing that would make fewer than
MIN_GAIN_BYTES hot bytes local (or demote fewer cold ones); nothing for what the guardrails
forbid, and at most the guardrails' rule count. Hysteresis: a rule it
wrote stays while its process lives (its evidence fades once the rule works, which is no reason
to drop it), unless the loop reverted it; rules an administrator wrote are kept as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from llamas_ebpf.advise.base import Advice, AdvisorInput
from llamas_ebpf.advise.summary import ProcSummary
from llamas_ebpf.advise.topology import Topology
from llamas_ebpf.kernel import procfs
from llamas_ebpf.metrics import (
    BIG_PAGES,
    BUSY_EVENTS,
    BUSY_GPU_CALLS,
    BUSY_HOT_BYTES,
    COLD_AGE_S,
    MAJORITY,
    MIN_BUSY_INTERVALS,
    MIN_GAIN_BYTES,
    MIN_RULE_AGE_S,
    READ_MOSTLY,
    REMOTE_ENTER,
    WRITE_HEAVY,
    majority,
)
from llamas_ebpf.policy import compile as policy_compile
from llamas_ebpf.policy.document import SCHEMA, PolicyDocument, Rule

MAX_MBPS = 200
PREFIX = "h-"


def _pct(x: float) -> str:
    return f"{round(100 * x)}%"


def _mib(nbytes: float) -> str:
    return f"{nbytes / (1 << 20):.0f} MiB"


HELD_LISTED = 5  # processes held back by restraint named in the rationale, at most


def restraint(p: ProcSummary, window_intervals: int) -> str | None:
    """Why a busy process gets no rule yet, or None."""
    if p.age_s is not None and p.age_s < MIN_RULE_AGE_S:
        return f"{p.age_s:.0f} s old, under MIN_RULE_AGE_S {MIN_RULE_AGE_S:.0f} s"
    needed = min(MIN_BUSY_INTERVALS, window_intervals)
    if p.busy_intervals < needed:
        return (f"busy in {p.busy_intervals} of {p.intervals} intervals, under MIN_BUSY_INTERVALS "
                f"{MIN_BUSY_INTERVALS}")
    return None


class HeuristicAdvisor:
    name = "heuristic"

    def __init__(self, touchable: Callable[[int], bool] | None = None,
                 alive: Callable[[int], bool] | None = None, match_by: str = "pid") -> None:
        """`match_by="comm"` writes rules by process name, for a policy meant for later (an audit
        of saved snapshots), when the pids seen may be gone."""
        self._touchable = touchable
        self._alive = alive or procfs.alive
        self.match_by = match_by

    def advise(self, given: AdvisorInput) -> Advice:
        touchable = self._touchable or (lambda pid: policy_compile.touchable(pid, given.guard))
        topo = Topology(given.inventory)
        reverted = _reverted_pids(given.recent)
        rules: list[dict[str, Any]] = []
        why: dict[str, str] = {}
        taken: set[int] = set()
        comms: set[str] = set()
        current = given.current.rules if given.current else []
        for rule in current:  # administrator's rules, and ours still standing
            pid = rule.match.pid
            ours = rule.name.startswith(PREFIX)
            if ours and (pid is None or not self._alive(pid) or pid in reverted):
                continue
            rules.append(rule.model_dump(by_alias=True, exclude_none=True))
            why[rule.name] = "kept: its process still runs" if ours else "kept: not written by this advisor"
            if pid is not None:
                taken.add(pid)
            if rule.match.comm is not None:
                comms.add(rule.match.comm)
        held: list[str] = []
        window_intervals = max((q.intervals for q in given.window.processes), default=0)
        for p in given.window.processes:
            if len(rules) >= given.guard.max_rules:
                break
            # a denylisted name is never matched (a recording judged elsewhere has no live pid
            # for the guardrails to check: its processes are matched by comm)
            if p.pid in taken or p.comm in comms or p.pid in reverted or p.comm in given.guard.denied_comms:
                continue
            if not p.busy and p.gpu_calls < BUSY_GPU_CALLS:
                continue
            proposal = self._rule_for(p, topo)
            if proposal is None or not touchable(p.pid):
                continue
            held_back = restraint(p, window_intervals)
            if held_back is not None:  # it would get a rule, but not yet
                held.append(f"{p.comm} ({p.pid}) for {proposal[0]['name']}: {held_back}")
                continue
            proposed, reason = proposal
            if proposed["name"] in why:
                continue  # by name, a second process of the same name is already covered
            rules.append(proposed)
            why[proposed["name"]] = reason
            taken.add(p.pid)
            if "comm" in proposed["match"]:
                comms.add(p.comm)
        rationale = "; ".join(f"{name}: {reason}" for name, reason in why.items()) or "no rule is warranted"
        if held:
            more = f" and {len(held) - HELD_LISTED} more" if len(held) > HELD_LISTED else ""
            rationale += f"; held back: {', '.join(held[:HELD_LISTED])}{more}"
        if len(rationale) > 4000:
            rationale = rationale[:3990] + " [more]"
        document = {"schema": SCHEMA, "rationale": rationale, "rules": rules}
        unchanged = given.current is not None and _same(given.current, document)
        return Advice(self.name, json.dumps(document).encode(), rationale, why,
                      keep_current=unchanged or (given.current is None and not rules))

    def _rule_for(self, p: ProcSummary, topo: Topology) -> tuple[dict[str, Any], str] | None:
        pages = p.pages_by_node
        mem_node, mem_share = majority(pages)
        writes = p.write_fraction
        by_comm = self.match_by == "comm" and 0 < len(p.comm) <= 15 and p.comm.isprintable()
        tag = re.sub(r"[^a-z0-9._-]", "-", p.comm.lower())[:40] if by_comm else str(p.pid)

        def name(kind: str) -> str:
            return f"{PREFIX}{kind}-{tag}"

        match = {"comm": p.comm} if by_comm else {"pid": p.pid}

        def memory(home: int, writer: bool) -> dict[str, Any]:
            spec: dict[str, Any] = {"home_node": home, "max_mbps": MAX_MBPS}
            demote = topo.demote_target(writer)
            if demote is not None and demote != home:
                spec["demote_node"] = demote
            return spec

        if p.gpu_calls >= BUSY_GPU_CALLS and topo.gpus:
            index = _gpu_of(p.pid, topo)
            if index is not None:
                node = topo.gpus[index].numa_node
                return ({"name": name("gpu"), "match": match, "gpu": {"device": index}},
                        f"{p.gpu_calls} CUDA calls in the window; threads and memory go to GPU {index}'s "
                        f"node {node}")
        slow_writer = mem_node is not None and mem_node in topo.write_slow_ids()
        if slow_writer and writes >= WRITE_HEAVY and mem_share >= MAJORITY:
            home = topo.home_for(p)
            if home is not None:
                return ({"name": name("dram"), "match": match, "memory": memory(home, True)},
                        f"write-heavy ({_pct(writes)} of faults are writes) with {_pct(mem_share)} of its "
                        f"pages on node {mem_node}, which writes slowly: home on node {home}")
        slow_readers = topo.reads_near_dram()
        if slow_readers and p.faults >= BUSY_EVENTS and writes <= READ_MOSTLY:
            target = slow_readers[0]
            return ({"name": name("readmostly"), "match": match,
                     "memory": {"home_node": target.id, "max_mbps": MAX_MBPS}},
                    f"read-mostly ({_pct(writes)} of faults are writes); node {target.id} reads nearly as "
                    f"fast as DRAM ({target.read_latency_ns} ns) but writes slowly: its pages go there, "
                    f"which frees DRAM for writers")
        if p.access_seen:
            decided = self._by_access(p, topo, name, match, memory)
            if decided is not None or p.hot_bytes >= BUSY_HOT_BYTES:
                return decided  # its hot memory says where it belongs; faults do not overrule it
        remote = p.remote_fraction
        if remote >= REMOTE_ENTER:
            if mem_node is not None and topo.has_cpus(mem_node) and topo.is_fast(mem_node):
                return ({"name": name("colocate"), "match": match, "cpu": {"nodes": [mem_node]},
                         "memory": memory(mem_node, writes >= WRITE_HEAVY)},
                        f"{_pct(remote)} of its allocations, hinting faults or resident pages are remote and "
                        f"{_pct(mem_share)} of its pages are on node {mem_node}: threads go there")
            home = topo.home_for(p)
            if home is not None:
                return ({"name": name("colocate"), "match": match, "cpu": {"nodes": [home]},
                         "memory": memory(home, writes >= WRITE_HEAVY)},
                        f"{_pct(remote)} remote, pages mostly on node {mem_node} (no CPUs or a slower "
                        f"tier): memory comes home to node {home}, threads stay there")
        big = sum(pages.values()) >= BIG_PAGES
        if big and mem_node is not None and topo.is_fast(mem_node):
            demote = topo.demote_target(writes >= WRITE_HEAVY)
            if demote is not None:
                return ({"name": name("tier"), "match": match,
                         "memory": {"home_node": mem_node, "demote_node": demote, "max_mbps": MAX_MBPS}},
                        f"{sum(pages.values()) * 4 // 1024} MiB and busy: hot pages stay on node {mem_node}, "
                        f"mappings left idle go to node {demote}")
        return None


    def _by_access(self, p: ProcSummary, topo: Topology, name: Callable[[str], str], match: dict[str, Any],
                   memory: Callable[[int, bool], dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
        """colocate and tier from where its hot and cold bytes are (the access probe's figures)."""
        writer = p.write_fraction >= WRITE_HEAVY
        hot = p.hot_bytes
        if p.cpu_node is not None and hot:
            off = p.hot_bytes_off(p.cpu_node)
            if off >= MIN_GAIN_BYTES and off / hot >= REMOTE_ENTER:
                hot_node, share = majority(p.hot_bytes_by_node)
                seen = (f"{_mib(off)} of its {_mib(hot)} hot memory ({_pct(off / hot)}, REMOTE_ENTER "
                        f"{_pct(REMOTE_ENTER)}) is off node {p.cpu_node}, where it runs; at least "
                        f"MIN_GAIN_BYTES {_mib(MIN_GAIN_BYTES)} would become local")
                if hot_node is not None and hot_node != p.cpu_node and topo.has_cpus(hot_node) \
                        and topo.is_fast(hot_node):
                    return ({"name": name("colocate"), "match": match, "cpu": {"nodes": [hot_node]},
                             "memory": memory(hot_node, writer)},
                            f"{seen}: threads go to node {hot_node}, which holds {_pct(share)} of it")
                home = p.cpu_node if topo.is_fast(p.cpu_node) else topo.home_for(p)
                if home is not None:
                    return ({"name": name("colocate"), "match": match, "cpu": {"nodes": [home]},
                             "memory": memory(home, writer)},
                            f"{seen}: hot memory comes home to node {home} (its node "
                            f"{hot_node} has no CPUs or is a slower tier)")
        cold_fast = sum(size for node, size in p.cold_bytes_by_node.items() if topo.is_fast(node))
        if cold_fast >= MIN_GAIN_BYTES and hot + p.cold_bytes >= BUSY_HOT_BYTES:
            fast = [node for node, size in p.cold_bytes_by_node.items() if size and topo.is_fast(node)]
            demote = topo.demote_target(writer)
            if demote is not None and fast:
                home = fast[0] if p.cpu_node is None or p.cpu_node not in fast else p.cpu_node
                return ({"name": name("tier"), "match": match,
                         "memory": {"home_node": home, "demote_node": demote, "max_mbps": MAX_MBPS}},
                        f"{_mib(cold_fast)} of its memory on the fast tier saw no access for COLD_AGE_S "
                        f"{COLD_AGE_S:.0f} s (MIN_GAIN_BYTES {_mib(MIN_GAIN_BYTES)}): hot memory stays "
                        f"on node {home}, cold memory goes to node {demote}")
        return None


def _gpu_of(pid: int, topo: Topology) -> int | None:
    placed = [(i, g) for i, g in enumerate(topo.gpus)
              if g.numa_node is not None and topo.has_cpus(g.numa_node)]
    for index, gpu in placed:
        if pid in gpu.process_memory_mb:
            return index
    return placed[0][0] if placed else None


def _reverted_pids(recent: list[dict[str, Any]]) -> set[int]:
    pids: set[int] = set()
    for entry in recent:
        if entry.get("event") == "revert":
            for rule in (entry.get("reverted_document") or {}).get("rules", []):
                pid = rule.get("match", {}).get("pid")
                if isinstance(pid, int):
                    pids.add(pid)
    return pids


def _same(current: PolicyDocument, document: dict[str, Any]) -> bool:
    return [r.model_dump(by_alias=True, exclude_none=True) for r in current.rules] == [
        Rule.model_validate(r).model_dump(by_alias=True, exclude_none=True) for r in document["rules"]
    ]
