"""DAMON's sysfs interface (/sys/kernel/mm/damon/admin), as llamas uses it.

llamas owns at most one kdamond: the one it added to a DAMON that had none. It never stops,
reconfigures or renumbers a kdamond it did not start, and writing `nr_kdamonds` rebuilds every
kdamond directory, so llamas writes it only when it is 0 (or when the kdamonds there are the
ones its own marker file names, after a crash of llamas). Where another kdamond runs paddr
monitoring, its aggregations can still be read passively through the `damon:damon_aggregated`
tracepoint, which fires in the kdamond's own thread: llamas filters by that thread's pid and
touches nothing in sysfs.

Every function takes `root`, standing for /sys/kernel/mm/damon/admin, so unit tests drive fixture
trees. The kernel's ABI: Documentation/ABI/testing/sysfs-kernel-mm-damon.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llamas_ebpf.kernel import procfs
from llamas_ebpf.kernel.nodes import read_int

ADMIN = Path("/sys/kernel/mm/damon/admin")

# The intervals llamas asks of its own kdamond. A sample checks one page per region for an
# access since the previous sample, so a sample interval longer than the time a workload takes
# to sweep its working set sees that set as accessed at every sample; 50 ms keeps the page-table
# checks to 20 per region per second (DAMON keeps the regions of all its targets together to
# about MAX_REGIONS: some 2,000 checks a second at worst, however many processes it watches).
# One aggregation is 20 samples; the targets' mappings are read again every second, so a
# process that maps new memory is covered within a second.
SAMPLE_US = 50_000
AGGR_US = 1_000_000
UPDATE_US = 1_000_000
MIN_REGIONS = 10
MAX_REGIONS = 100  # of all targets together: DAMON's cost grows with regions, not with memory
# Where the kernel tunes the intervals itself (intervals_goal, Linux 6.15+): aim at 4% of the
# samples seeing an access in 3 aggregations (the kernel documentation's own recommendation),
# never sampling more often than SAMPLE_US nor less often than once a second.
GOAL_ACCESS_BP = 400
GOAL_AGGRS = 3
GOAL_MAX_SAMPLE_US = 1_000_000


class DamonUnavailable(Exception):
    """DAMON cannot be used for this; the message says why, in one line."""


@dataclass(frozen=True)
class Kdamond:
    index: int
    state: str  # "on" or "off"
    pid: int | None  # the kdamond thread, while on
    operations: tuple[str, ...]  # each context's operations set (vaddr, fvaddr, paddr)


@dataclass(frozen=True)
class Survey:
    """What DAMON offers here and who is using it."""

    available: bool
    reason: str  # why not, when not available
    operations: frozenset[str] = frozenset()  # avail_operations
    kdamonds: tuple[Kdamond, ...] = ()
    auto_tune: bool = False  # monitoring_attrs/intervals/intervals_goal exists

    @property
    def running(self) -> list[Kdamond]:
        return [k for k in self.kdamonds if k.state == "on"]


def _read(path: Path) -> str:
    return path.read_text().strip()


def _write(path: Path, value: object) -> None:
    try:
        with open(path, "w") as out:
            out.write(f"{value}\n")
    except OSError as exc:
        raise DamonUnavailable(f"writing {value} to {path}: {exc.strerror}") from None


def survey(root: Path = ADMIN) -> Survey:
    kdamonds_dir = root / "kdamonds"
    count = read_int(kdamonds_dir / "nr_kdamonds")
    if count is None:
        return Survey(False, f"no DAMON sysfs interface at {root} (CONFIG_DAMON_SYSFS)")
    kdamonds = []
    operations: set[str] = set()
    for index in range(count):
        base = kdamonds_dir / str(index)
        try:
            state = _read(base / "state")
        except OSError:
            continue
        contexts = []
        for context in range(read_int(base / "contexts/nr_contexts") or 0):
            ctx = base / "contexts" / str(context)
            with contextlib.suppress(OSError):
                contexts.append(_read(ctx / "operations"))
            with contextlib.suppress(OSError):
                operations.update(_read(ctx / "avail_operations").split())
        pid = read_int(base / "pid")
        kdamonds.append(Kdamond(index, state, pid if pid and pid > 0 else None, tuple(contexts)))
    goal = "contexts/0/monitoring_attrs/intervals/intervals_goal"
    auto_tune = any((kdamonds_dir / str(k.index) / goal).is_dir() for k in kdamonds)
    return Survey(True, "", frozenset(operations), tuple(kdamonds), auto_tune)


@dataclass
class Marker:
    """/run/llamas/damon.json: the kdamond llamas started, so that a llamas that crashed can be
    told from someone else by the next one."""

    path: Path

    def read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}

    def write(self, **values: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(values))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Intervals:
    sample_us: int
    aggr_us: int
    update_us: int

    @property
    def samples_per_aggregation(self) -> int:
        return max(1, self.aggr_us // max(1, self.sample_us))


@dataclass
class OwnKdamond:
    """The one kdamond llamas runs: `operations` (vaddr or paddr), its targets, its thread."""

    root: Path
    index: int
    operations: str
    created: bool  # nr_kdamonds was 0 and llamas made it 1: put back to 0 on stop
    marker: Marker
    auto_tune: bool = False
    pids: list[int] = field(default_factory=list)  # target slot -> pid (0: paddr's one target)
    running: bool = False

    @property
    def base(self) -> Path:
        return self.root / "kdamonds" / str(self.index)

    @property
    def ctx(self) -> Path:
        return self.base / "contexts/0"

    @classmethod
    def claim(cls, operations: str, root: Path = ADMIN, marker: Marker | None = None) -> OwnKdamond:
        """A kdamond of llamas's own for `operations`, configured and not yet started; raises
        DamonUnavailable with the reason when DAMON is absent, lacks the operations set, or is
        someone else's."""
        marker = marker or default_marker()
        found = survey(root)
        reason = why_not(found, operations, marker)
        if reason is not None:
            raise DamonUnavailable(reason)
        if found.kdamonds:
            # ours, left behind by a llamas that died: stop it and use it again
            for k in found.running:
                _write(root / "kdamonds" / str(k.index) / "state", "off")
            created = bool(marker.read().get("created"))
        else:
            _write(root / "kdamonds/nr_kdamonds", 1)
            created = True
        own = cls(root, 0, operations, created, marker, auto_tune=found.auto_tune)
        marker.write(llamas_pid=os.getpid(), nr_kdamonds=1, created=int(created))
        try:
            _write(own.base / "contexts/nr_contexts", 1)
            avail = own.ctx / "avail_operations"
            offered = _read(avail).split() if avail.exists() else []
            if operations not in offered:
                raise DamonUnavailable(f"DAMON here has no {operations} monitoring "
                                       f"(avail_operations: {' '.join(offered) or 'none'})")
            own._configure()
        except DamonUnavailable:
            own.stop()
            raise
        return own

    def _configure(self) -> None:
        _write(self.ctx / "operations", self.operations)
        attrs = self.ctx / "monitoring_attrs"
        _write(attrs / "intervals/sample_us", SAMPLE_US)
        _write(attrs / "intervals/aggr_us", AGGR_US)
        _write(attrs / "intervals/update_us", UPDATE_US)
        _write(attrs / "nr_regions/min", MIN_REGIONS)
        _write(attrs / "nr_regions/max", MAX_REGIONS)
        goal = attrs / "intervals/intervals_goal"
        self.auto_tune = goal.is_dir()
        if self.auto_tune:
            _write(goal / "access_bp", GOAL_ACCESS_BP)
            _write(goal / "aggrs", GOAL_AGGRS)
            _write(goal / "min_sample_us", SAMPLE_US)
            _write(goal / "max_sample_us", GOAL_MAX_SAMPLE_US)

    def set_targets(self, pids: list[int], fresh: dict[int, list[tuple[int, int]]] | None = None) -> bool:
        """Monitor these processes (vaddr), in this slot order; started or committed online.
        `fresh`: slot -> the initial regions of a process new to its slot (initial_regions; on a
        commit the kernel keeps a slot's regions, and their ages, when no regions are given: the
        previous process's). False when there is nothing to monitor (off)."""
        targets = self.ctx / "targets"
        if not pids:
            self.pids = []
            if self.running:
                _write(self.base / "state", "off")
                self.running = False
            return False
        _write(targets / "nr_targets", len(pids))
        if self.operations != "paddr":
            for slot, pid in enumerate(pids):
                _write(targets / str(slot) / "pid_target", pid)
                given = (fresh or {}).get(slot)
                if given and self.running:
                    regions = targets / str(slot) / "regions"
                    _write(regions / "nr_regions", len(given))
                    for index, (start, end) in enumerate(given):
                        _write(regions / str(index) / "start", start)
                        _write(regions / str(index) / "end", end)
        self.pids = list(pids)
        self._start_or_commit()
        return True

    def monitor_physical(self) -> None:
        """paddr: one target, the whole of physical memory DAMON picks (the largest System RAM)."""
        self.set_targets([0])

    def _start_or_commit(self) -> None:
        state = self.base / "state"
        if self.running and self.state() == "on":
            _write(state, "commit")
        else:
            _write(state, "on")
            self.running = True

    def state(self) -> str:
        try:
            return _read(self.base / "state")
        except OSError:
            return "off"

    def thread(self) -> int | None:
        """The kdamond's pid while it runs (the tracepoint fires in that thread)."""
        pid = read_int(self.base / "pid")
        return pid if pid and pid > 0 else None

    def intervals(self) -> Intervals:
        """The intervals in force (tuned by the kernel, where it tunes them)."""
        attrs = self.ctx / "monitoring_attrs/intervals"
        if self.auto_tune and self.running:
            with contextlib.suppress(DamonUnavailable):
                _write(self.base / "state", "update_tuned_intervals")
        return read_intervals(attrs)

    def stop(self) -> None:
        """Off, and DAMON left as llamas found it."""
        if self.running or self.state() == "on":
            with contextlib.suppress(DamonUnavailable):
                _write(self.base / "state", "off")
        self.running = False
        if self.created:
            with contextlib.suppress(DamonUnavailable):
                _write(self.root / "kdamonds/nr_kdamonds", 0)
        self.marker.clear()


def initial_regions(vmas: Sequence[tuple[int, int]], pieces: int = MIN_REGIONS,
                    page: int = 4096) -> list[tuple[int, int]]:
    """A process's first regions, chosen as DAMON chooses them when it starts on a process
    itself: its mappings as three regions (from its lowest to its highest address, less the two
    widest gaps between mappings), cut into `pieces` even pieces all told, page-aligned. llamas
    gives them on a commit, where the kernel would otherwise keep the slot's old regions."""
    if not vmas:
        return []
    vmas = sorted(vmas)
    gaps = sorted(((vmas[i + 1][0] - vmas[i][1], i) for i in range(len(vmas) - 1)
                   if vmas[i + 1][0] > vmas[i][1]), reverse=True)[:2]
    spans, start = [], vmas[0][0]
    for i in sorted(i for _gap, i in gaps):
        spans.append((start, vmas[i][1]))
        start = vmas[i + 1][0]
    spans.append((start, max(end for _start, end in vmas)))
    size = max(page, sum(end - start for start, end in spans) // max(pieces, 1))
    out = []
    for low, high in spans:
        count = max(1, (high - low) // size)
        edges = [low + (high - low) * i // count // page * page for i in range(count)] + [high]
        out += [(a, b) for a, b in itertools.pairwise(edges) if b > a]
    return out


def default_marker() -> Marker:
    return Marker(Path(os.environ.get("LLAMAS_RUN_DIR", "/run/llamas")) / "damon.json")


def why_not(found: Survey, operations: str, marker: Marker) -> str | None:
    """Why llamas cannot run a kdamond of its own for `operations` (None: it can)."""
    if not found.available:
        return found.reason
    if found.operations and operations not in found.operations:
        return (f"DAMON here has no {operations} monitoring "
                f"(avail_operations: {' '.join(sorted(found.operations))})")
    if not found.kdamonds:
        return None
    mine = marker.read()
    owner = mine.get("llamas_pid")
    if (owner is not None and owner != os.getpid() and not procfs.alive(owner)
            and mine.get("nr_kdamonds") == len(found.kdamonds)):
        return None  # left by a llamas that died
    busy = found.running
    if busy:
        who = ", ".join(f"kdamond {k.index} ({'/'.join(k.operations) or 'no context'}"
                        f"{f', pid {k.pid}' if k.pid else ''})" for k in busy)
        if owner is not None and procfs.alive(owner):
            who += f", started by llamas pid {owner}"
        return (f"DAMON is busy with someone else's work: {who} running; "
                "llamas does not take over a kdamond it did not start")
    return (f"DAMON has {len(found.kdamonds)} kdamond(s) configured by someone else (off); "
            "llamas leaves them as they are")


def read_intervals(attrs: Path) -> Intervals:
    return Intervals(read_int(attrs / "sample_us") or SAMPLE_US, read_int(attrs / "aggr_us") or AGGR_US,
                     read_int(attrs / "update_us") or UPDATE_US)


def passive_paddr(found: Survey, root: Path = ADMIN) -> tuple[Kdamond, Intervals] | None:
    """Someone else's running paddr kdamond, whose aggregations can be read through the
    tracepoint without touching it (one context, paddr, and its thread known)."""
    for k in found.running:
        if k.operations == ("paddr",) and k.pid is not None:
            attrs = root / "kdamonds" / str(k.index) / "contexts/0/monitoring_attrs/intervals"
            return k, read_intervals(attrs)
    return None
