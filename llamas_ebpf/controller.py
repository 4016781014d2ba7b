"""The controller behind `llamas run`: observe, ask an advisor each decision window, validate,
apply, measure the effect, revert what made things worse; with no advisor, only keep the policy
in force (serve the kernel side's requests, sweep, place pages).

The effect of a generation is judged on the metric its rules target, per process taken: the
remote fraction of its allocations and hinting faults, or the off-node share of its resident
pages when there was too little traffic (metrics.judged_remote_fraction). Only rules that aim at
locality are judged (a cpu set, or a home node that is the node the process runs on); a rule that
puts memory away from the CPU on purpose (read-mostly data on a slower node) has no locality
target and is left to the advisor's next window. When the mean over a generation's processes is
worse than before the decision by more than `revert_threshold` for two intervals in a row, the
controller rolls back (every page and mask the policy changed goes back) and re-applies the
previous document, at once, and logs why. A generation is watched for at least WATCH_INTERVALS
intervals, across decision windows if those are shorter, so that pages still moving when the
next window begins are judged too; then its effect is logged.

Everything it knows about processes comes from the Sensor's snapshots: it reads no /proc itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llamas_ebpf.advise import change
from llamas_ebpf.advise.base import Advice, Advisor, AdvisorInput
from llamas_ebpf.advise.summary import ProcSummary, WindowSummary, summarize
from llamas_ebpf.advise.topology import Topology
from llamas_ebpf.devices.inventory import Inventory
from llamas_ebpf.enforce import Enforcer, RequestServer
from llamas_ebpf.faces.text import safe
from llamas_ebpf.policy import compile as policy_compile
from llamas_ebpf.policy.document import PolicyDocument
from llamas_ebpf.policy.state import diff, digest
from llamas_ebpf.policy.validate import validate
from llamas_ebpf.sense import Sensor, paced
from llamas_ebpf.snapshot import Snapshot

RECENT = 10  # decisions the advisor sees
WATCH_INTERVALS = 10  # snapshots a generation is judged on at least
WAIT_STEP = 0.25  # seconds between looks for a policy while none is in force


def log(message: str) -> None:
    """One line on stderr; what it quotes from processes or the LLM (names, rationales) made inert."""
    print(f"llamas: {safe(message)}", file=sys.stderr, flush=True)


@dataclass
class Options:
    decide_every: float = 10.0
    interval: float = 1.0
    dry_run: bool = False
    once: bool = False
    revert_threshold: float = 0.2


@dataclass
class Watch:
    """A generation under observation."""

    generation: int
    document: PolicyDocument
    previous: PolicyDocument | None
    baseline: dict[int, float]  # pid -> remote fraction before the decision
    worse_streak: int = 0
    samples: list[dict[int, float]] = field(default_factory=list)


@dataclass
class Activity:
    """What the controller did since it started, for the metrics."""

    decisions: dict[str, int] = field(default_factory=dict)  # outcome -> count
    reverts: int = 0
    skipped: int = 0  # decisions a costly advisor was not asked for: nothing changed materially
    llm_calls: int = 0
    llm_input_tokens: int = 0
    llm_output_tokens: int = 0
    llm_cost_usd: float = 0.0

    def decided(self, outcome: str, advice: Advice) -> None:
        self.decisions[outcome] = self.decisions.get(outcome, 0) + 1
        self.llm_calls += advice.usage.calls
        self.llm_input_tokens += advice.usage.input_tokens
        self.llm_output_tokens += advice.usage.output_tokens
        self.llm_cost_usd += advice.usage.cost_usd


def judged_pids(doc: PolicyDocument, taken: dict[int, int], cpu_node: dict[int, int | None],
                node_cpus: dict[int, list[int]]) -> list[int]:
    """Processes whose rule aims at locality."""
    out = []
    for pid, index in taken.items():
        rule = doc.rules[index]
        memory = rule.memory
        at_home = (memory is not None and cpu_node.get(pid) == memory.home_node
                   and bool(node_cpus.get(memory.home_node)))
        if rule.cpu is not None or rule.gpu is not None or at_home:
            out.append(pid)
    return out


def _mean(values: dict[int, float], pids: list[int]) -> float:
    return sum(values[p] for p in pids) / len(pids)


class Controller:
    def __init__(self, enforcer: Enforcer, sensor: Sensor | None, server: RequestServer | None,
                 advisor: Advisor | None, inventory: Inventory, options: Options,
                 description_texts: dict[str, str] | None = None, fallback: Advisor | None = None,
                 say: Callable[[str], None] = log) -> None:
        """`advisor` None: keep the policy in force and decide nothing (`llamas run --advisor
        none`); `sensor` may then be None too. `server` None: no kernel side (unit tests)."""
        self.enforcer, self.sensor, self.server = enforcer, sensor, server
        self.advisor, self.fallback = advisor, fallback
        self.inventory, self.options = inventory, options
        self.description_texts = description_texts or {}
        self.say = say
        self.watch: Watch | None = None
        self.activity = Activity()
        self.last_snapshot: Snapshot | None = None
        self.reload_requested = False  # set by SIGHUP; acted on between intervals
        self.decide_requested = False  # set by SIGUSR1: end the window now, and ask the advisor
        self.asked_facts: change.Facts | None = None  # what the costly advisor was last asked on
        self.reverted_since_asked = False
        self.on_reload: Callable[[Controller], None] | None = None

    # ---- observing ----
    def _catch_up(self) -> None:
        """Take in a generation another process put in force (or took out): `llamas policy
        apply` from another shell is kept in force from then on."""
        if self.enforcer.refresh():
            state = self.enforcer.state
            if state.document is None:
                self.say(f"generation {state.generation} was taken out by another process; "
                         "waiting for a policy")
            else:
                self.say(f"generation {state.generation} in force ({state.advisor}, "
                         "applied by another process)")
                self.enforcer.sweep()
            self._end_watch()

    def _wait(self, seconds: float) -> None:
        """Spend an interval serving the kernel side's requests, then sweep and place pages; with
        no policy in force, look for one every WAIT_STEP seconds."""
        if self.reload_requested and self.on_reload is not None:
            self.reload_requested = False
            self.on_reload(self)
        deadline = time.monotonic() + seconds
        self._catch_up()
        while self.enforcer.state.document is None and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(WAIT_STEP, left))
            self._catch_up()
        left = max(deadline - time.monotonic(), 0.0)
        if self.server is not None and self.enforcer.state.document is not None:
            self.server.serve(left)
            self.server.tick()
        else:
            time.sleep(left)

    def _detail(self) -> None:
        """The processes the sensor details (and the access probe watches first) in every
        snapshot, busy or idle: the ones a generation took, and the ones its watch judges. The
        enforcer places the taken ones by the regions the sensor sees for them."""
        if self.sensor is None:
            return
        watched = set(self.watch.baseline) if self.watch is not None else set()
        self.sensor.detail_pids = watched | set(self.enforcer.rule_of)
        self.enforcer.access_regions = self.sensor.access_regions
        self.enforcer.access_full = self.sensor.access_samples
        topology = Topology(self.inventory)
        self.enforcer.write_slow = topology.write_slow_ids()
        self.enforcer.read_fast = frozenset(n.id for n in topology.reads_near_dram())

    def observe(self, seconds: float) -> list[Snapshot]:
        snaps: list[Snapshot] = []
        for _ in paced(self.options.interval, duration=seconds, wait=self._wait):
            if self.sensor is not None:
                self._detail()
                snap = self.sensor.collect()
                self.last_snapshot = snap
                snaps.append(snap)
                self.measure(snap)
            if self.decide_requested and snaps:
                break  # the operator asked: decide on what this window saw so far
        return snaps

    def measure(self, snap: Snapshot) -> None:
        watch = self.watch
        if watch is None or self.enforcer.state.generation != watch.generation:
            return
        now: dict[int, float] = {}
        for pid in watch.baseline:
            sample = snap.process(pid)
            fraction = ProcSummary.of(sample).judged_remote_fraction if sample is not None else None
            if fraction is not None:
                now[pid] = fraction
        watch.samples.append(now)
        common = [pid for pid in now if pid in watch.baseline]
        if not common:
            return
        before, after = _mean(watch.baseline, common), _mean(now, common)
        if after - before > self.options.revert_threshold:
            watch.worse_streak += 1
        else:
            watch.worse_streak = 0
        if watch.worse_streak >= 2:
            self.revert(watch, before, after)

    def _end_watch(self) -> None:
        self.watch = None
        self._detail()

    def revert(self, watch: Watch, before: float, after: float) -> None:
        detected = time.monotonic()
        reason = (f"remote fraction of the processes generation {watch.generation} took rose from "
                  f"{before:.2f} to {after:.2f} (threshold +{self.options.revert_threshold:.2f})")
        self.enforcer.rollback(f"auto-revert: {reason}")
        if watch.previous is not None:
            raw = watch.previous.to_json().encode()
            self.enforcer.apply(watch.previous, digest(raw), "revert", reverted=watch.generation)
        latency = time.monotonic() - detected
        self.enforcer.audit.append(
            "revert", generation=watch.generation, reason=reason, before=round(before, 4),
            after=round(after, 4), revert_s=round(latency, 3),
            reverted_document=watch.document.model_dump(by_alias=True, exclude_none=True),
            restored_generation=self.enforcer.state.generation if watch.previous is not None else None)
        self.activity.reverts += 1
        self.reverted_since_asked = True
        self.say(f"reverted generation {watch.generation} in {latency:.2f} s: {reason}")
        self._end_watch()

    # ---- deciding ----
    def recent(self) -> list[dict[str, Any]]:
        wanted = ("apply", "decision", "refused", "revert", "effect")
        return self.enforcer.audit.tail(count=RECENT, keep=lambda e: e.get("event") in wanted)

    def decide(self, snaps: list[Snapshot]) -> dict[str, Any]:
        """One decision; returns what was logged."""
        assert self.advisor is not None
        started = time.perf_counter()
        window = summarize(snaps)
        self._log_effect()
        given = AdvisorInput(self.inventory, window, self.enforcer.state.document, self.recent(),
                             self.enforcer.guard, self.enforcer.host, self.description_texts)
        asked, reasons = None, []
        if getattr(self.advisor, "on_change", False):
            asked = change.facts(window, self.inventory, self.enforcer.state.document,
                                 exclude=frozenset({os.getpid()}))
            reasons = change.what_changed(self.asked_facts, asked)
            if self.reverted_since_asked:
                reasons.append("a generation was reverted")
            if self.decide_requested:
                reasons.insert(0, "the operator asked (SIGUSR1)")
            self.decide_requested = False
            if not reasons:
                return self._skip(window, given, asked)
        self.decide_requested = False
        advice = self.advisor.advise(given)
        if asked is not None and not advice.unavailable:
            self.asked_facts, self.reverted_since_asked = asked, False
        if advice.unavailable and self.fallback is not None:
            self.say(f"{advice.unavailable}; the {self.fallback.name} advisor decides this window")
            first = advice
            advice = self.fallback.advise(given)
            advice.usage = first.usage
            advice.unavailable = None
            advice.rationale = f"fallback after: {first.unavailable}. {advice.rationale}"
        entry = self._act(advice, window, given, time.perf_counter() - started,
                          asked_because=reasons or None)
        if self.asked_facts is asked and asked is not None:
            # the policy the answer put in force is the one the next window compares against
            self.asked_facts = {**asked, "policy": change.policy_digest(self.enforcer.state.document)}
        event = entry.get("event")
        self.activity.decided("applied" if event == "apply" else "refused" if event == "refused"
                              else str(entry.get("outcome")), advice)
        return entry

    def _skip(self, window: WindowSummary, given: AdvisorInput, asked: change.Facts) -> dict[str, Any]:
        """Nothing changed materially since the advisor was last asked: the policy stays."""
        assert self.advisor is not None
        generation = self.enforcer.state.generation
        self.activity.skipped += 1
        self.activity.decisions["skipped"] = self.activity.decisions.get("skipped", 0) + 1
        reason = ("inputs unchanged since the last call (the same busy processes, remote fractions, hot "
                  "memory per node, descriptions and policy; llamas_ebpf/advise/change.py)")
        self.say(f"the {self.advisor.name} advisor was not asked: {reason}; keeping generation {generation}")
        return self.enforcer.audit.append(
            "decision", advisor=self.advisor.name, applied=False, outcome="skipped", reason=reason,
            inputs_digest=_inputs_digest(window, given), material_digest=change.digest(asked),
            skipped_total=self.activity.skipped, window_s=window.seconds)

    def _act(self, advice: Advice, window: WindowSummary, given: AdvisorInput,
             seconds: float, asked_because: list[str] | None = None) -> dict[str, Any]:
        enforcer = self.enforcer
        fields = {
            "inputs_digest": _inputs_digest(window, given),
            "asked_because": asked_because,
            "model": advice.usage.model,
            "usage": advice.usage.to_dict(),
            "tokens": {"input": advice.usage.input_tokens, "output": advice.usage.output_tokens},
            "decide_s": round(seconds, 4),
            "window_s": window.seconds,
            "explanations": advice.explanations,
        }
        generation = enforcer.state.generation
        if advice.unavailable:
            self.say(f"{advice.unavailable}; keeping generation {generation}")
            return enforcer.audit.append("decision", advisor=advice.advisor, applied=False,
                                         outcome="unavailable", reason=advice.unavailable, **fields)
        if advice.keep_current or advice.raw is None:
            self.say(f"the {advice.advisor} advisor keeps generation {generation}: {advice.rationale[:200]}")
            return enforcer.audit.append("decision", advisor=advice.advisor, applied=False,
                                         outcome="unchanged", rationale=advice.rationale, **fields)
        raw_digest = digest(advice.raw)
        checked = validate(advice.raw, enforcer.host, enforcer.guard)
        if not checked.ok or checked.document is None:
            self.say(f"the {advice.advisor} advisor's document was refused ({len(checked.errors)} problems: "
                     f"{checked.errors[0]}); keeping generation {generation}")
            document = _as_json(advice.raw)
            enforcer.refuse(raw_digest, advice.advisor, checked.errors, document=document, **fields)
            return enforcer.audit.tail(count=1)[-1]
        doc = checked.document
        changes = diff(enforcer.state.document, doc)
        if self.options.dry_run:
            self.say(f"dry run: would apply {advice.advisor}'s document ({len(doc.rules)} rules; added "
                     f"{changes['added']}, removed {changes['removed']}, changed {changes['changed']})")
            return enforcer.audit.append(
                "decision", advisor=advice.advisor, applied=False, outcome="dry-run", validation="ok",
                digest=raw_digest, document=doc.model_dump(by_alias=True, exclude_none=True),
                diff=changes, **fields)
        previous = enforcer.state.document
        taken = policy_compile.classify(doc, enforcer.guard)
        before = {pid: self._before(pid, window) for pid in taken}
        cpu_node = {pid: p.cpu_node for pid, p in before.items() if p is not None}
        judged = judged_pids(doc, taken, cpu_node, enforcer.host.node_cpus)
        baseline = {pid: f for pid in judged
                    if (p := before[pid]) is not None and (f := p.judged_remote_fraction) is not None}
        applied = enforcer.apply(doc, raw_digest, advice.advisor, rationale=advice.rationale or doc.rationale,
                                 **fields)
        self.say(f"generation {applied.generation} in force ({advice.advisor}): "
                 f"{applied.processes} processes taken, {applied.threads_pinned} threads pinned; "
                 f"added {changes['added']}, "
                 f"removed {changes['removed']}, changed {changes['changed']}")
        if not self.options.once and baseline:
            self.watch = Watch(applied.generation, doc, previous, baseline)
            self._detail()
        return enforcer.audit.tail(count=1)[-1]

    def _before(self, pid: int, window: WindowSummary) -> ProcSummary | None:
        """A process as it was before the decision: the window's summary where the sensor gave it
        its /proc facts, else those facts now (a process idle in the window)."""
        p = window.process(pid)
        if p is not None and p.cpu_node is not None:
            return p
        sample = self.sensor.describe(pid) if self.sensor is not None else None
        return ProcSummary.of(sample) if sample is not None else p

    def _log_effect(self) -> None:
        """The measured effect of the generation watched so far, once its window is over."""
        watch = self.watch
        if watch is None or len(watch.samples) < WATCH_INTERVALS:
            return  # still being judged (a new generation replaces it)
        last = watch.samples[-1]
        common = [p for p in last if p in watch.baseline]
        if common:
            self.enforcer.audit.append("effect", generation=watch.generation, metric="remote_fraction",
                                       processes=len(common), before=round(_mean(watch.baseline, common), 4),
                                       after=round(_mean(last, common), 4), verdict="kept")
        self._end_watch()

    def run(self) -> dict[str, Any]:
        """Decide every window (with no advisor, only keep the policy in force); with `once`, one
        cycle, returning what was logged."""
        while True:
            snaps = self.observe(self.options.decide_every)
            if self.advisor is None:
                continue
            entry = self.decide(snaps)
            if self.options.once:
                return entry


def _inputs_digest(window: WindowSummary, given: AdvisorInput) -> str:
    data = {
        "window": [p.to_dict() for p in window.processes[:200]],
        "nodes": [dataclasses.asdict(n) for n in window.nodes],
        "inventory": given.inventory.model_dump(mode="json", exclude={"host"}),
        "current": given.current.model_dump(by_alias=True, exclude_none=True) if given.current else None,
        "guard": given.guard.model_dump(),
    }
    return digest(json.dumps(data, sort_keys=True, default=str).encode())


def _as_json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw[:2000].decode("utf-8", "replace")
