"""The audit's findings: what in a window looks misplaced, ranked by estimated impact, with the
evidence for each.

Each finding uses the metrics and thresholds the heuristic advisor decides by
(llamas_ebpf.metrics) and the same Topology, so a finding and the rule that answers it come from
one reading of the window (tests/unit/test_findings.py checks that they agree).

Impact is an estimate in events per second that better placement could make local: remote
allocations and hinting faults for misplaced memory (or its events times its off-node share,
when only the resident pages show it), write faults for writers on write-slow memory, faults for
hot processes on a slow tier, and 100 per cross-node CPU migration (each one leaves a cache and
a node behind).
"""

from __future__ import annotations

from typing import Any

from llamas_ebpf.advise.summary import ProcSummary, WindowSummary
from llamas_ebpf.advise.topology import Topology
from llamas_ebpf.devices.inventory import Inventory
from llamas_ebpf.metrics import (
    BUSY_EVENTS,
    CROSS_NODE_MOVES_PER_S,
    MAJORITY,
    REMOTE_ENTER,
    WRITE_HEAVY,
    majority,
)

CPU_MIGRATION_COST = 100  # events a cross-node CPU migration is worth, for ranking


def findings(window: WindowSummary, inventory: Inventory,
             policy: dict[str, Any] | None) -> list[dict[str, Any]]:
    topo = Topology(inventory)
    slow_ids, write_slow_ids = topo.slow_ids(), topo.write_slow_ids()
    seconds = max(window.seconds, 1e-3)
    rule_by_pid: dict[int, str] = {}
    rule_by_comm: dict[str, str] = {}
    for rule in (policy or {}).get("rules", []):
        match = rule.get("match", {})
        if "pid" in match:
            rule_by_pid[match["pid"]] = rule["name"]
        if "comm" in match:
            rule_by_comm[match["comm"]] = rule["name"]
    out: list[dict[str, Any]] = []

    def add(kind: str, p: ProcSummary, impact: float, summary: str, evidence: dict[str, Any]) -> None:
        # comm raw: the faces make it safe where they render it
        out.append({"kind": kind, "pid": p.pid, "comm": p.comm[:16], "impact": round(impact, 1),
                    "summary": summary, "evidence": evidence,
                    "rule": rule_by_pid.get(p.pid) or rule_by_comm.get(p.comm)})

    for p in window.processes:
        busy = p.activity >= BUSY_EVENTS
        if not busy and p.gpu_calls == 0 and p.cross_node_moves == 0:
            continue
        pages = p.pages_by_node
        node, share = majority(pages)
        base = {"faults": p.faults, "read_faults": p.read_faults, "write_faults": p.write_faults,
                "alloc_local": p.alloc_local, "alloc_remote": p.alloc_remote, "hint_local": p.hint_local,
                "hint_remote": p.hint_remote, "pages_by_node": pages, "cpu_node": p.cpu_node}
        fraction = p.remote_fraction
        if busy and fraction >= REMOTE_ENTER:
            remote = p.alloc_remote + p.hint_remote
            add("remote-memory", p, (remote or p.activity * fraction) / seconds,
                f"{round(100 * fraction)}% of its allocations, hinting faults or resident pages are remote "
                f"(it runs on node {p.cpu_node if p.cpu_node is not None else '?'}, "
                f"{round(100 * share)}% of its pages are on node {node})", base)
        if node in write_slow_ids and share >= MAJORITY and p.write_fraction >= WRITE_HEAVY:
            add("writes-on-write-slow-memory", p, p.write_faults / seconds,
                f"{round(100 * p.write_fraction)}% of its faults are writes and {round(100 * share)}% of its "
                f"pages are on node {node}, which writes slowly", base)
        elif (node in slow_ids and node not in write_slow_ids and share >= MAJORITY
              and p.faults >= BUSY_EVENTS):
            add("hot-on-slow-tier", p, p.faults / seconds,
                f"{p.faults} faults in {window.seconds:g} s with {round(100 * share)}% of its pages on "
                f"node {node}, a slower tier", base)
        if p.cross_node_moves / seconds >= CROSS_NODE_MOVES_PER_S:
            add("cross-node-cpu-migrations", p, CPU_MIGRATION_COST * p.cross_node_moves / seconds,
                f"{p.cross_node_moves} moves between nodes' CPUs in {window.seconds:g} s",
                {**base, "cross_node_moves": p.cross_node_moves})
        if p.gpu_calls and inventory.gpus and p.cpu_node is not None:
            far = [g for g in inventory.gpus if g.numa_node is not None and g.numa_node != p.cpu_node]
            if len(far) == len(inventory.gpus):
                add("gpu-far-from-cpu", p, p.gpu_calls / seconds,
                    f"{p.gpu_calls} CUDA calls from node {p.cpu_node}; its GPU is on node {far[0].numa_node}",
                    {**base, "gpu_calls": p.gpu_calls, "gpu_bytes": p.gpu_bytes})
    out.sort(key=lambda f: (-f["impact"], f["pid"], f["kind"]))
    for rank, finding in enumerate(out, 1):
        finding["rank"] = rank
    return out


def kernel_alternative(inventory: Inventory, policy: dict[str, Any] | None,
                       balancing_now: int | None) -> dict[str, Any]:
    """Whether the kernel's own NUMA balancing would do what the recommended policy does, and
    which setting: with several nodes of CPUs, `numa_balancing=1` (pages and tasks come
    together); with a slower memory tier, 2 (tiering: hot pages promoted by the kernel's hinting
    faults, cold ones demoted under pressure); both, 3. It is not enough where a device needs what the kernel
    does not know: a node that writes slowly (the kernel moves by access, not by writes), a
    GPU's node, a device whose wear makes moves to it costly. Each need is said."""
    topo = Topology(inventory)
    nodes_with_cpus = [n for n in inventory.nodes if n.cpus]
    # a bit mask: 1 moves pages (and tasks) between nodes of CPUs, 2 promotes hot pages from a
    # slower tier (and lets cold ones be demoted)
    setting = (1 if len(nodes_with_cpus) > 1 else 0) | (2 if topo.slow else 0) or None
    needs: list[str] = []
    for node in topo.write_slow_nodes():
        needs.append(f"node {node.id} writes slowly: the kernel's tiering moves pages by access, not "
                     "by writes, and would put written pages there")
    for node in inventory.nodes:
        if node.persistent or (node.endurance or "unlimited").lower() != "unlimited":
            needs.append(f"node {node.id} wears with writes ({node.endurance or 'persistent'}): "
                         "moves to it are budgeted (max_mbps)")
    rules = policy.get("rules", []) if isinstance(policy, dict) else []
    if any(isinstance(r, dict) and "gpu" in r for r in rules):
        needs.append("a process is placed by its GPU's node, which the kernel does not know of")
    needs = list(dict.fromkeys(needs))
    enough = setting is not None and not needs and bool(rules)
    name = {1: "NUMA balancing", 2: "tiering", 3: "NUMA balancing and tiering"}.get(setting or 0, "")
    now = "" if balancing_now is None else f" (now {balancing_now})"
    if enough:
        say = (f"the kernel's own {name} would do what these rules do here: sysctl kernel.numa_balancing="
               f"{setting}{now}, and no rule; llamas adds a budget per rule, a journal and rollback")
    elif needs and setting is not None:
        say = f"the kernel's {name} (kernel.numa_balancing={setting}) is not enough here: " + "; ".join(needs)
    else:
        say = ""  # one node, or nothing recommended: nothing to compare
    return {"enough": enough, "setting": setting, "now": balancing_now, "needs": needs, "say": say}
