"""Whether a decision's inputs changed materially since the advisor was last asked.

A costly advisor (the LLM) is asked again only when they did; otherwise the policy in force
stays, and the decision is logged as skipped with the reason. The facts compared are coarse on
purpose, each with its threshold in llamas_ebpf.metrics:
  - the busy processes among the CHANGE_PROCESSES busiest (one new, or one gone: below a
    CHANGE_QUIET_FACTOR-th of what made it busy, so that one near the line does not flap);
  - for each, its remote fraction in steps of CHANGE_REMOTE_STEP, its hot bytes per node in
    factors of CHANGE_BYTES_FACTOR from MIN_GAIN_BYTES up, and whether it writes (WRITE_HEAVY);
  - the device descriptions and topology (the inventory), and the policy in force.
A revert since the last call, and the operator asking (SIGUSR1, `llamas run --decide-now`), are
changes as well; the controller adds those.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llamas_ebpf import metrics
from llamas_ebpf.advise.summary import ProcSummary, WindowSummary
from llamas_ebpf.devices.inventory import Inventory
from llamas_ebpf.policy import state
from llamas_ebpf.policy.document import PolicyDocument

Facts = dict[str, Any]


def _bytes_step(nbytes: int) -> int:
    """0 below MIN_GAIN_BYTES, then 1, 2, ... per CHANGE_BYTES_FACTOR."""
    if nbytes < metrics.MIN_GAIN_BYTES:
        return 0
    return 1 + int(math.log(nbytes / metrics.MIN_GAIN_BYTES, metrics.CHANGE_BYTES_FACTOR))


def _process(p: ProcSummary) -> dict[str, Any]:
    return {
        "comm": p.comm,
        "remote": int(p.remote_fraction / metrics.CHANGE_REMOTE_STEP),
        "hot": {str(node): step for node, size in sorted(p.hot_bytes_by_node.items())
                if (step := _bytes_step(size))},
        "writer": p.write_fraction >= metrics.WRITE_HEAVY,
        "gpu": p.gpu_calls >= metrics.BUSY_GPU_CALLS,
    }


def _digest(data: object) -> str:
    return state.digest(json.dumps(data, sort_keys=True, default=str).encode())


def _active(p: ProcSummary) -> bool:
    """Still doing something: what a busy process must fall below before it counts as gone."""
    return (p.activity * metrics.CHANGE_QUIET_FACTOR >= metrics.BUSY_EVENTS
            or p.hot_bytes * metrics.CHANGE_QUIET_FACTOR >= metrics.BUSY_HOT_BYTES or p.gpu_calls > 0)


def facts(window: WindowSummary, inventory: Inventory, current: PolicyDocument | None,
          exclude: frozenset[int] = frozenset()) -> Facts:
    """`exclude`: pids that are not the advisor's business (llamas itself)."""
    top = [p for p in window.processes[: metrics.CHANGE_PROCESSES] if p.pid not in exclude]
    busy = [p for p in top if p.busy or p.gpu_calls >= metrics.BUSY_GPU_CALLS]
    return {
        "processes": {str(p.pid): _process(p) for p in busy},
        "active": sorted(str(p.pid) for p in window.processes if p.pid not in exclude and _active(p)),
        "inventory": _digest(inventory.model_dump(mode="json", exclude={"host"})),
        "policy": policy_digest(current),
    }


def policy_digest(current: PolicyDocument | None) -> str | None:
    """The policy in force, as the facts hold it: what the advisor's own answer put in force is
    no change for the next window."""
    return _digest(current.model_dump(by_alias=True, exclude_none=True)) if current else None


def digest(known: Facts) -> str:
    return _digest(known)


def what_changed(before: Facts | None, now: Facts) -> list[str]:
    """The material changes from `before` (the facts of the last call) to `now`, in words; empty
    when nothing changed materially."""
    if before is None:
        return ["first decision"]
    reasons = []
    if before["inventory"] != now["inventory"]:
        reasons.append("the device descriptions or the topology changed")
    if before["policy"] != now["policy"]:
        reasons.append("the policy in force changed")
    old, new = before["processes"], now["processes"]
    for pid in sorted(new.keys() - old.keys(), key=int):
        reasons.append(f"new busy process {pid} ({new[pid]['comm']})")
    # hysteresis: busy at the last call, it counts as gone only once it is hardly active at all
    for pid in sorted(old.keys() - new.keys() - set(now["active"]), key=int):
        reasons.append(f"process {pid} ({old[pid]['comm']}) no longer busy")
    for pid in sorted(new.keys() & old.keys(), key=int):
        was, now_p = old[pid], new[pid]
        moved = [key for key in ("remote", "hot", "writer", "gpu") if was[key] != now_p[key]]
        if moved:
            reasons.append(f"process {pid} ({now_p['comm']}): {', '.join(moved)} changed")
    return reasons
