"""Putting a policy in force and keeping it there.

`Enforcer.apply` writes a validated document into the idle slot of the pinned maps, switches it
in, pins the processes it takes that are already running, and logs the generation;
`apply_raw` validates a document first and logs a refusal. `rollback` takes the policy out and
restores every original mask. `RequestServer` (for `llamas run`) loads bpf/enforce.c on the same
pinned maps and serves its requests: processes that exec under a rule, threads seen on a CPU
outside their rule, and a periodic sweep for pid, exe and cgroup rules.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamas_ebpf import bpf_headers
from llamas_ebpf.actuator.affinity import AffinityActuator, Journal
from llamas_ebpf.actuator.cold import ColdTracker
from llamas_ebpf.actuator.pages import (
    REGION,
    PageJournal,
    PageMover,
    Room,
    TokenBucket,
    by_heat,
    held_back,
    is_written,
    pages_of,
    resident_regions,
)
from llamas_ebpf.config import Guardrails
from llamas_ebpf.errors import LlamasError
from llamas_ebpf.failpoints import failpoint
from llamas_ebpf.kernel import mounts, procfs
from llamas_ebpf.metrics import PLACEMENT_PERIOD_S, PLACEMENT_WAIT_S, RECHECK_S, WRITES_WAIT_S
from llamas_ebpf.paths import Paths
from llamas_ebpf.policy import compile as policy_compile
from llamas_ebpf.policy.document import PolicyDocument
from llamas_ebpf.policy.lock import state_lock, tighten
from llamas_ebpf.policy.maps import CTL_EPOCH, FLAG_EXE_RULES, CompiledRule, PolicyMaps
from llamas_ebpf.policy.state import AuditLog, PolicyState, diff, digest
from llamas_ebpf.policy.validate import HostFacts, validate
from llamas_ebpf.snapshot import AccessRegion

_H = bpf_headers.defines("llamas_policy.h")
REQ_CLASSIFIED, REQ_VIOLATION, REQ_HOT_REGION, REQ_EXEC = (
    _H["REQ_CLASSIFIED"], _H["REQ_VIOLATION"], _H["REQ_HOT_REGION"], _H["REQ_EXEC"])
MOVE_CHUNK = 16384  # pages asked about per move_pages query


class Refused(LlamasError):
    """A document validation refused (logged as such); nothing changed."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source} refused, nothing changed ({len(errors)} problems)")
        self.errors = errors


@dataclass(frozen=True)
class Applied:
    generation: int
    processes: int  # running processes the policy took
    threads_pinned: int
    diff: dict[str, list[str]]


def _flags(doc: PolicyDocument | None) -> int:
    """The control flags a document's slot runs with: exe rules make the kernel side ask."""
    return FLAG_EXE_RULES if doc is not None and any(r.match.exe is not None for r in doc.rules) else 0


class Enforcer:
    def __init__(self, paths: Paths, guard: Guardrails, host: HostFacts) -> None:
        if os.geteuid() != 0:
            raise LlamasError("not root: policy maps and affinity changes need root")
        mounts.ensure_mounted()
        tighten(paths.state_dir)
        self.paths, self.guard, self.host = paths, guard, host
        self.maps = PolicyMaps.open(paths.pin_dir, create=True)
        self.journal = Journal(paths.state_dir / "originals.json")
        self.affinity = AffinityActuator(self.journal)
        self.audit = AuditLog(paths.state_dir)
        self.state = PolicyState.load(paths.state_dir)
        self.compiled: list[CompiledRule] = []
        page_journal = PageJournal(paths.state_dir / "pages.jsonl")
        self.pages = PageMover(TokenBucket(guard.total_max_mbps), page_journal)
        self.budgets: dict[int, TokenBucket] = {}
        self.queue: dict[int, list[tuple[int, int, int]]] = {}  # tgid -> (start, end, node) to place
        self.cold = ColdTracker()
        self.rule_of: dict[int, int] = {}
        # a taken process's regions by heat, where the access probe watches it (the controller
        # sets this to Sensor.access_regions; None: no figures, placement goes by mapping)
        self.access_regions: Callable[[int], list[AccessRegion] | None] = lambda tgid: None
        # the accesses per aggregation of a region read at every sample (Sensor.access_samples)
        self.access_full: Callable[[], float] = lambda: 0.0
        self.write_slow: set[int] = set()  # nodes that write slowly: no written region is demoted there
        # write-slow nodes that read nearly as fast as DRAM: read-mostly memory may make room there
        self.read_fast: frozenset[int] = frozenset()
        self.judged_at: dict[int, float] = {}  # tgid -> when its regions were last judged by heat
        self.by_heat: set[int] = set()  # taken processes placed by their regions' heat
        self.awaiting: dict[int, float] = {}  # tgid -> since when the access probe has had no regions
        self.watched_since: dict[int, float] = {}  # tgid -> when its first regions came
        self.judgements: dict[int, dict[str, object]] = {}  # tgid -> its last `judged` line
        self.whole: set[int] = set()  # taken processes whose every page goes home (by mapping)
        # rule name -> back end -> pages it moved, in the generation in force
        self.served_by: dict[str, dict[str, int]] = {}
        self._logged_served: dict[str, dict[str, int]] = {}
        # since this process started, for the metrics
        self.threads_pinned_total = 0
        self.pages_moved_total = 0
        self.notes: list[str] = []  # what was found damaged or left over, for the command to say
        with state_lock(paths.state_dir):
            self._recover()
        self._take(self.state)

    def _recover(self) -> None:
        """Make the state, the maps and the journals agree after a crash or a damaged file:
        - a policy.json rebuilt from the audit log (PolicyState.load) is written back whole;
        - maps switched to a slot that policy.json does not record (an apply or rollback killed
          between switching the maps and saving the state) are switched back to the state's
          slot, whose rules the killed command never touched: the generation that was in force
          before it is again, whole;
        - a damaged originals.json, or lines of pages.jsonl, are said."""
        state = self.state
        if state.recovered:
            self.notes.append(state.recovered)
            state.save(self.paths.state_dir)
        # generations only grow: the newest apply logged has the highest (read from the log's end)
        last = self.audit.tail(count=1, keep=lambda e: e.get("event") == "apply"
                               and isinstance(e.get("generation"), int))
        logged = last[0]["generation"] if last else 0
        if state.document is not None and state.generation > logged:
            # put in force (policy.json is the commit point) by an apply killed before it logged
            # it: logged now, so that the audit log has every generation that was ever in force
            document = state.document.model_dump(by_alias=True, exclude_none=True)
            self.audit.append("apply", generation=state.generation, digest=state.digest,
                              advisor=state.advisor, document=document,
                              validation="ok", diff=diff(None, state.document),
                              recovered="the apply that put it in force was cut short before it logged it")
            self.notes.append(f"generation {state.generation} was put in force by a command cut short; "
                              "logged now")
        active = self.maps.active_slot
        if active != state.slot:
            # switching clears the other slot, so the state's slot is written again whole
            if state.slot is not None and state.document is not None:
                self._write_slot(state.slot, state.document)
            self.maps.switch_to(state.slot, _flags(state.document))
            now = (f"generation {state.generation} is in force again" if state.document
                   else "no policy is in force")
            self.notes.append(f"the maps had slot {active} in force where policy.json says {state.slot} "
                              f"(a change cut short): {now}")
        if self.journal.damaged:
            self.notes.append(f"{self.journal.damaged}; set aside as {self.journal.path.name}.damaged: "
                              "a rollback gives the processes the policy took their cgroup's CPUs")
        pages = self.pages.journal
        pages.entries()
        if pages.damaged:
            self.notes.append(f"{pages.path}: {pages.damaged} lines do not read back; "
                              "the pages they recorded stay where they are on rollback")

    def _take(self, state: PolicyState) -> None:
        """Make `state` the one this enforcer works from: its rules compiled, its budgets, and no
        pages left queued by another generation (with no policy, nothing is remembered at all)."""
        self.state = state
        doc = state.document
        self.compiled = policy_compile.compile_document(doc, self.host) if doc is not None else []
        self.budgets = {
            i: TokenBucket(rule.memory.max_mbps)
            for i, rule in enumerate(doc.rules if doc else [])
            if rule.memory is not None
        }
        self.queue.clear()
        self.whole.clear()
        self.served_by = {}
        self.judged_at.clear()  # a new generation: every taken process is judged afresh
        if doc is None:
            self.rule_of.clear()
            self.cold.marked.clear()
            self.by_heat.clear()
            self.awaiting.clear()

    def refresh(self) -> bool:
        """Catch up with a generation put in force (or taken out) by another process, such as
        `llamas policy apply` from another shell while `llamas run` keeps the policy in force.
        True when it changed."""
        with state_lock(self.paths.state_dir):
            on_disk = PolicyState.load(self.paths.state_dir)
            if (on_disk.generation, on_disk.slot) == (self.state.generation, self.state.slot):
                return False
            self.journal.reload()
            self._take(on_disk)
            return True

    def close(self) -> None:
        self.maps.close()

    # ---- generations ----
    def apply(self, doc: PolicyDocument, digest: str, advisor: str, **audit_fields: object) -> Applied:
        with state_lock(self.paths.state_dir):
            self.refresh()  # the generation number comes from what is on disk now
            return self._apply(doc, digest, advisor, **audit_fields)

    def _write_slot(self, slot: int, doc: PolicyDocument) -> dict[int, int]:
        """A document's rules into one slot of the maps (not yet in force): compiled rules, comm
        and cgroup keys, and the running processes it takes (tgid -> rule), which it returns."""
        compiled = policy_compile.compile_document(doc, self.host)
        self.maps.clear_slot(slot)
        for index, compiled_rule in enumerate(compiled):
            self.maps.write_rule(slot, index, compiled_rule)
        for index, rule in enumerate(doc.rules):
            if rule.match.comm is not None:
                self.maps.add_comm(slot, rule.match.comm, index)
            if rule.match.cgroup is not None:
                cgid = policy_compile.cgroup_id(rule.match.cgroup)
                if cgid is not None:
                    self.maps.add_cgroup(slot, cgid, index)
        taken = policy_compile.classify(doc, self.guard)
        for tgid, index in taken.items():
            self.maps.add_tgid(slot, tgid, index)
        return taken

    def _apply(self, doc: PolicyDocument, digest: str, advisor: str, **audit_fields: object) -> Applied:
        generation = self.state.generation + 1
        slot = generation % 2
        taken = self._write_slot(slot, doc)
        failpoint("apply.slot-written")
        self.maps.switch_to(slot, _flags(doc))
        failpoint("apply.switched")
        changes = diff(self.state.document, doc)
        state = PolicyState(generation, slot, doc, digest, advisor, time.time())
        state.save(self.paths.state_dir)  # the commit point: what a crash after this recovers to
        failpoint("apply.saved")
        self._take(state)
        released, released_threads, released_pages = self._release(set(taken))
        pinned = 0
        for tgid, index in taken.items():
            pinned += self.pin(tgid, index)
            failpoint("apply.pinning")
        self.audit.append("apply", generation=generation, digest=digest, advisor=advisor,
                          document=doc.model_dump(by_alias=True, exclude_none=True),
                          validation="ok", diff=changes, processes=len(taken), threads_pinned=pinned,
                          released=sorted(released), threads_restored=released_threads,
                          pages_restored=released_pages, **audit_fields)
        return Applied(generation, len(taken), pinned, changes)

    def _release(self, still_taken: set[int]) -> tuple[set[int], int, int]:
        """Processes an earlier generation changed that no rule takes now get back what it
        changed: their original masks and pages. (released, threads, pages restored)."""
        self.journal.reload()
        had = self.affinity.taken() | self.pages.journal.pids()
        released = had - still_taken
        if not released:
            return released, 0, 0
        threads = self.affinity.rollback(only=released)
        pages = self.pages.restore(only=released)
        for tgid in released:
            self._drop(tgid)
        return released, threads, pages

    def _drop(self, tgid: int) -> None:
        """Everything this enforcer remembers of one process (not its journals)."""
        self.rule_of.pop(tgid, None)
        self.queue.pop(tgid, None)
        self.cold.forget(tgid)
        self.by_heat.discard(tgid)
        self.awaiting.pop(tgid, None)
        self.judged_at.pop(tgid, None)
        self.watched_since.pop(tgid, None)
        self.judgements.pop(tgid, None)
        self.whole.discard(tgid)

    def apply_raw(self, raw: bytes, advisor: str, source: str) -> Applied:
        """Validate a document as written (JSON bytes) and put it in force; a refusal is logged
        and raised as Refused, and changes nothing."""
        checked = validate(raw, self.host, self.guard)
        if not checked.ok or checked.document is None:
            self.refuse(digest(raw), advisor, checked.errors, source=source)
            raise Refused(source, checked.errors)
        return self.apply(checked.document, digest(raw), advisor, source=source)

    def rollback(self, reason: str) -> int:
        with state_lock(self.paths.state_dir):
            self.refresh()
            self.journal.reload()  # what another process pinned is restored too
            return self._rollback(reason)

    def _rollback(self, reason: str) -> int:
        before = self.state.document
        # processes the policy took whose originals a damaged journal lost: their cgroup's CPUs
        unrecorded: set[int] = set()
        if self.journal.damaged and before is not None:
            if self.state.slot is not None:
                unrecorded |= set(self.maps.tgid_rules(self.state.slot))
            unrecorded |= set(policy_compile.classify(before, self.guard))
            unrecorded -= self.affinity.taken()
        self.maps.switch_to(None)
        failpoint("rollback.switched")
        restored = self.affinity.rollback(unrecorded=unrecorded)
        if unrecorded:
            self.notes.append(f"{len(unrecorded)} processes had no recorded originals (the journal was "
                              "damaged): given their cgroup's CPUs")
        pages_back = self.pages.restore()
        state = PolicyState(self.state.generation, None, None, None, None, None)
        state.save(self.paths.state_dir)
        self._take(state)
        self.audit.append("rollback", generation=self.state.generation, reason=reason,
                          diff=diff(before, None), threads_restored=restored, pages_restored=pages_back)
        return restored

    def refuse(self, digest: str, advisor: str, errors: list[str], **audit_fields: object) -> None:
        self.audit.append("refused", digest=digest, advisor=advisor, validation=errors, **audit_fields)

    # ---- acting on processes ----
    def pin(self, tgid: int, rule_index: int) -> int:
        """Take a process: pin its threads now; queue its resident memory for placement."""
        if rule_index >= len(self.compiled) or not policy_compile.touchable(tgid, self.guard):
            return 0
        rule = self.compiled[rule_index]
        if rule.home_node >= 0 and self.rule_of.get(tgid) != rule_index:
            self.rule_of[tgid] = rule_index
            by_access = self._by_access(tgid, rule_index)
            if by_access is not None:
                self.queue[tgid] = by_access
            else:
                self.queue[tgid] = [(start, end, rule.home_node) for start, end in resident_regions(tgid)]
                self.whole.add(tgid)  # everything home: one migrate_pages(2) where the budget allows
                if rule.demote_node >= 0:
                    self.cold.mark(tgid)  # coldness is measured from now
        pinned = self.affinity.enforce(tgid, set(rule.cpus)) if rule.cpus else 0
        self.threads_pinned_total += pinned
        return pinned

    def hot_region(self, tgid: int, rule_index: int, region: int) -> None:
        """A region the kernel side saw faulting hard: place it before the rest."""
        if self.rule_of.get(tgid) != rule_index:
            self.pin(tgid, rule_index)
        if rule_index >= len(self.compiled):
            return
        start = region * REGION
        pending = self.queue.setdefault(tgid, [])
        pending.insert(0, (start, start + REGION, self.compiled[rule_index].home_node))

    def _by_access(self, tgid: int, rule_index: int) -> list[tuple[int, int, int]] | None:
        """Where each region of a taken process belongs, by its heat (pages.by_heat, with the
        rule's nodes and cold_seconds). None where the access probe gives no figures for it, or
        gave none for PLACEMENT_WAIT_S since it began to watch it: placement by mapping then; []
        while it waits for the first aggregation (nothing moves before heat is known)."""
        regions = self.access_regions(tgid)
        if regions is None:
            return None
        now = time.monotonic()
        if not regions:  # watched, nothing aggregated yet: wait for it, a while
            waiting = self.awaiting.setdefault(tgid, now)
            if now - waiting >= PLACEMENT_WAIT_S:
                self.awaiting.pop(tgid, None)
                return None
            self.by_heat.add(tgid)
            self.judged_at[tgid] = now - PLACEMENT_PERIOD_S + RECHECK_S  # look again soon
            return []
        self.awaiting.pop(tgid, None)
        since = self.watched_since.setdefault(tgid, now)
        rule, doc = self.compiled[rule_index], self.state.document
        memory = doc.rules[rule_index].memory if doc is not None else None
        cold_seconds = memory.cold_seconds if memory is not None else 30
        # its writes are measured once any region has a written fraction (soft-dirty's first
        # window, or write faults); until then, or WRITES_WAIT_S, a home short of room waits
        measuring = all(r.written_fraction is None for r in regions) and now - since < WRITES_WAIT_S
        room = Room(self.pages.free_bytes(rule.home_node), self.read_fast, hold_unknown=measuring)
        full = self.access_full()
        placed = by_heat(regions, resident_regions(tgid), rule.home_node, rule.demote_node, cold_seconds,
                         self.write_slow, room, full)
        # a hot region held back is judged again after DAMON's next aggregation: a convergence
        # run here moved 81% of the hot pages at the first judgement and the rest 5 s later
        held = held_back(regions, rule.home_node, full)
        self.judged_at[tgid] = now - PLACEMENT_PERIOD_S + RECHECK_S if held else now
        self.by_heat.add(tgid)
        self._log_judgement(tgid, rule_index, placed, room, regions)
        return placed

    def _log_judgement(self, tgid: int, rule_index: int, placed: list[tuple[int, int, int]], room: Room,
                       regions: list[AccessRegion]) -> None:
        """An audit line (`judged`) when what a process's regions were judged to need changes:
        MiB bound for each node, what the home node had room for, whether its writes were
        measured yet and how much of it is written, so a placement can be read back and explained."""
        bound: dict[int, int] = {}
        for start, end, node in placed:
            bound[node] = bound.get(node, 0) + end - start
        measured = any(r.written_fraction is not None for r in regions)
        written = sum(r.end - r.start for r in regions if is_written(r))
        fields = {"bound_mib": {str(node): size >> 20 for node, size in sorted(bound.items())},
                  "home_free_mib": room.free >> 20, "writes": "measured" if measured else "not measured yet",
                  "written_mib": written >> 20}
        if self.judgements.get(tgid) != fields:
            self.judgements[tgid] = fields
            name = self.state.document.rules[rule_index].name if self.state.document is not None else ""
            self.audit.append("judged", generation=self.state.generation, pid=tgid, rule=name, **fields)

    def demote_cold(self) -> int:
        """Where the access probe watches a taken process, judge its regions by heat again
        every PLACEMENT_PERIOD_S once what was queued is placed (_by_access: hot ones home, cold
        ones down). Otherwise, for rules with a demote_node: queue the mappings that went
        unaccessed for the rule's cold_seconds, then start the next measurement. Regions queued."""
        doc = self.state.document
        queued = 0
        for tgid, rule_index in list(self.rule_of.items()):
            if doc is None or rule_index >= len(self.compiled):
                self.cold.forget(tgid)
                continue
            if tgid in self.by_heat:
                due = time.monotonic() - self.judged_at.get(tgid, 0.0) >= PLACEMENT_PERIOD_S
                if tgid not in self.queue and due:
                    by_access = self._by_access(tgid, rule_index)
                    if by_access is not None:
                        self.queue[tgid] = by_access
                        queued += len(by_access)
                        continue
                    self.by_heat.discard(tgid)  # no figures any more: by mapping from now on
                else:
                    continue
            if self.compiled[rule_index].demote_node < 0:
                self.cold.forget(tgid)
                continue
            memory = doc.rules[rule_index].memory
            seconds = memory.cold_seconds if memory is not None else 30
            if tgid not in self.cold.marked:
                self.cold.mark(tgid)
            elif self.cold.due(tgid, seconds):
                node = self.compiled[rule_index].demote_node
                cold = [(start, end, node) for start, end in self.cold.cold_ranges(tgid)]
                self.queue.setdefault(tgid, []).extend(cold)
                queued += len(cold)
                if not self.cold.mark(tgid):  # gone
                    del self.rule_of[tgid]
        return queued

    def place_pages(self) -> int:
        """Work through the queued regions within the budgets; pages moved. Whatever a budget
        does not allow now stays queued for the next window."""
        moved = 0
        for tgid in list(self.queue):
            rule_index = self.rule_of.get(tgid)
            if rule_index is None or rule_index >= len(self.compiled):
                del self.queue[tgid]
                continue
            budget = self.budgets.get(rule_index)
            pending = self.queue[tgid]
            if tgid in self.whole and budget is not None:
                self.whole.discard(tgid)
                whole = self.pages.move_process(tgid, self.compiled[rule_index].home_node, budget)
                if whole is not None:  # done in one call (or gone); else in batches, below
                    moved += whole.moved
                    self._served(rule_index, "migrate_pages", whole.moved)
                    del self.queue[tgid]
                    continue
            while pending and budget is not None:
                # several regions per call, all to one node: one query syscall for up to
                # MOVE_CHUNK pages
                node = pending[0][2]
                take, addresses = 0, list[int]()
                while take < len(pending) and len(addresses) < MOVE_CHUNK and pending[take][2] == node:
                    addresses += pages_of(*pending[take][:2])
                    take += 1
                result = self.pages.move(tgid, addresses, node, budget)
                moved += result.moved
                self._served(rule_index, "move_pages, regions by heat" if tgid in self.by_heat else
                             "move_pages, mappings", result.moved)
                if result.gone:
                    pending.clear()
                    break
                if result.full:
                    # the node has no room: the rest waits for the next placement judgement
                    # (by heat, written regions first), not for a retry each window
                    pending.clear()
                    break
                if result.deferred:
                    # out of budget: the regions stay queued; the next window asks again, and the
                    # pages already moved are then skipped as already placed
                    break
                del pending[:take]
            if not pending:
                del self.queue[tgid]
        self.pages_moved_total += moved
        return moved

    def _served(self, rule_index: int, backend: str, pages: int) -> None:
        """Which back end moved how many pages for a rule, in this generation (doctor, audit)."""
        if pages and self.state.document is not None and rule_index < len(self.state.document.rules):
            name = self.state.document.rules[rule_index].name
            by = self.served_by.setdefault(name, {})
            by[backend] = by.get(backend, 0) + pages

    def log_placement(self) -> None:
        """An audit line when pages moved since the last one: by rule, which back end moved how
        many pages in this generation (`llamas doctor` shows the latest)."""
        if self.served_by != self._logged_served and self.state.document is not None:
            self._logged_served = {rule: dict(by) for rule, by in self.served_by.items()}
            self.audit.append("placed", generation=self.state.generation, served_by=self._logged_served)

    def forget_gone(self) -> int:
        """Once a window: what is remembered of processes that have exited goes (their original
        masks and pages, the rule each had, what was queued for them), so that a host where
        processes come and go by the hundred thousand does not grow the daemon or its journals.
        How many processes were forgotten."""
        gone = self.journal.prune()
        pages = self.pages.journal
        dead = {pid for pid in pages.pids() if not procfs.alive(pid)}
        if dead:
            pages.forget(dead)
        tracked = set(self.rule_of) | set(self.queue) | set(self.judged_at) | set(self.awaiting)
        gone |= dead | {tgid for tgid in tracked if not procfs.alive(tgid)}
        for tgid in gone:
            self._drop(tgid)
        return len(gone)

    def sweep(self) -> int:
        """Take running processes the kernel side cannot classify by itself (pid, exe, cgroup
        rules, and processes that exec'd before the controller started). Threads pinned."""
        doc, slot = self.state.document, self.state.slot
        if doc is None or slot is None:
            return 0
        known = self.maps.tgid_rules(slot)
        pinned = 0
        for tgid, index in policy_compile.classify(doc, self.guard).items():
            if known.get(tgid) != index:
                self.maps.add_tgid(slot, tgid, index)
            pinned += self.pin(tgid, index)
        return pinned


class RequestServer:
    """Serves bpf/enforce.c's requests from its ring buffer, for the controller (llamas run)."""

    def __init__(self, enforcer: Enforcer, bpf_dir: Path) -> None:
        from llamas_ebpf.probes.base import compile_bpf

        self.enforcer = enforcer
        pin = str(enforcer.paths.pin_dir)
        self.bpf = compile_bpf(bpf_dir, "enforce.c", [f'-DPIN_DIR="{pin}"'])
        self.bpf["requests"].open_ring_buffer(self._on_request)
        self.served = {REQ_CLASSIFIED: 0, REQ_VIOLATION: 0, REQ_HOT_REGION: 0, REQ_EXEC: 0}
        self.handling_s = 0.0  # time spent serving requests, for the cost per request
        self.epoch = 0
        # A signal that stops the daemon must not raise inside a request: BCC calls
        # _on_request through ctypes, which prints and drops any exception raised there, the
        # KeyboardInterrupt of SIGTERM included, and the daemon would go on (a CI run here
        # outlived its SIGTERM that way). The handler sets stop_requested instead, and serve()
        # raises once the callback has returned.
        self.in_request = False
        self.stop_requested = False

    def _on_request(self, _ctx: object, data: int, _size: int) -> None:
        started = time.perf_counter()
        self.in_request = True
        try:
            self._serve(self.bpf["requests"].event(data))
        finally:
            self.in_request = False
            self.handling_s += time.perf_counter() - started

    def _serve(self, request: Any) -> None:
        kind, tgid, tid, rule = request.kind, request.tgid, request.tid, request.rule
        self.served[kind] = self.served.get(kind, 0) + 1
        enforcer = self.enforcer
        if kind == REQ_CLASSIFIED:
            enforcer.pin(tgid, rule)
        elif kind == REQ_VIOLATION:
            if rule < len(enforcer.compiled) and policy_compile.touchable(tgid, enforcer.guard):
                cpus = enforcer.compiled[rule].cpus
                if cpus and enforcer.affinity.enforce_thread(tgid, tid, set(cpus)):
                    enforcer.threads_pinned_total += 1
                    enforcer.journal.save()
        elif kind == REQ_HOT_REGION:
            if policy_compile.touchable(tgid, enforcer.guard):
                enforcer.hot_region(tgid, rule, request.value)
        elif kind == REQ_EXEC and enforcer.state.document is not None:
            index = policy_compile.rule_for(enforcer.state.document, tgid)
            if index is not None and policy_compile.touchable(tgid, enforcer.guard):
                if enforcer.state.slot is not None:
                    enforcer.maps.add_tgid(enforcer.state.slot, tgid, index)
                enforcer.pin(tgid, index)

    def tick(self) -> None:
        """Once a window: a new epoch (so requests may repeat), then the sweep."""
        self.epoch += 1
        self.enforcer.maps.set_ctl(CTL_EPOCH, self.epoch)
        self.enforcer.forget_gone()
        self.enforcer.sweep()
        self.enforcer.demote_cold()
        self.enforcer.place_pages()
        self.enforcer.log_placement()

    def serve(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.bpf.ring_buffer_poll(max(int(min(left, 0.1) * 1000), 1))
            if self.stop_requested:
                raise KeyboardInterrupt

    def program_fds(self) -> list[int]:
        return [fn.fd for fn in self.bpf.funcs.values()]

    def close(self) -> None:
        self.bpf.cleanup()
