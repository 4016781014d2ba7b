"""The daemon's memory while 100,000 short-lived processes come and go.

Usage (root): .venv/bin/python benchmarks/churn_rss.py [--processes 100000] [--parallel 4]

Two arms, one after the other, each a `llamas run` in a private state directory:
- `observe`: the heuristic advisor deciding every 5 s on a dry run, so every probe counts every
  process (faults, allocations, migrations, access) and every window is aggregated and judged;
- `enforce`: `--advisor none` with a policy whose rule takes every one of the short-lived
  processes by comm, so that bpf/enforce.c classifies each at exec and the controller pins it.

benchmarks/churn.c forks and execs benchmarks/churn_child.c (it touches 64 KiB and exits),
PARALLEL at a time. The daemon's VmRSS is sampled every 0.5 s; reported: RSS when the churn
starts, its peak, RSS at the end, and the growth over the second half of the churn, per 10,000
processes (bounded memory: about zero).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LLAMAS = Path(sys.executable).parent / "llamas"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def build(work: Path) -> tuple[Path, Path]:
    churn, child = work / "churn", work / "churn_child"
    subprocess.run(["gcc", "-O2", "-o", str(churn), str(HERE / "churn.c")], check=True)
    subprocess.run(["gcc", "-O2", "-o", str(child), str(HERE / "churn_child.c")], check=True)
    return churn, child


def arm(name: str, argv: list[str], ready: str, env: dict[str, str], churn: Path, child: Path,
        processes: int, parallel: int) -> dict[str, float]:
    daemon = subprocess.Popen([str(LLAMAS), "run", *argv], env=env, stderr=subprocess.PIPE, text=True)
    assert daemon.stderr is not None
    for line in daemon.stderr:
        if ready in line:
            break
    else:
        raise SystemExit(f"{name}: the daemon ended before it was ready")
    # keep the pipe drained
    threading.Thread(target=lambda: [None for _ in daemon.stderr], daemon=True).start()
    time.sleep(3)
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    load = subprocess.Popen([str(churn), str(processes), str(parallel), str(child)], stdout=subprocess.PIPE,
                            text=True)
    while load.poll() is None:
        samples.append((time.monotonic() - started, rss_kb(daemon.pid)))
        time.sleep(0.5)
    took = time.monotonic() - started
    time.sleep(2)
    end = rss_kb(daemon.pid)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=120)
    half = [s for s in samples if s[0] >= took / 2]
    # growth over the second half, as a least-squares slope, per 10,000 processes
    n = len(half)
    mean_t = sum(t for t, _ in half) / n
    mean_r = sum(r for _, r in half) / n
    spread = max(sum((t - mean_t) ** 2 for t, _ in half), 1e-9)
    slope = sum((t - mean_t) * (r - mean_r) for t, r in half) / spread
    per_10k = slope * took / processes * 10_000 / 1024
    result = {"arm": name, "processes": processes, "seconds": round(took, 1),
              "rss_start_mb": round(samples[0][1] / 1024, 1),
              "rss_peak_mb": round(max(r for _, r in samples) / 1024, 1),
              "rss_end_mb": round(end / 1024, 1), "growth_mb_per_10k_second_half": round(per_10k, 2)}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=100_000)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--arms", default="observe,enforce", help="which arms, comma-separated")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("root needed (BPF)")
    work = Path(tempfile.mkdtemp(prefix="llamas-churn-"))
    churn, child = build(work)
    policy = work / "policy.json"
    # CPU 0 only: each process's threads are really pinned, and their originals journalled
    rule = {"name": "churn", "match": {"comm": "churn_child"}, "cpu": {"cpus": "0"}}
    policy.write_text(json.dumps({"schema": "llamas.policy/v1", "rationale": "churn", "rules": [rule]}))
    for name, argv, ready in (
        ("observe", ["--advisor", "heuristic", "--dry-run", "--decide-every", "5"], "deciding every"),
        ("enforce", ["--advisor", "none", "--policy", str(policy)], "keeping generation"),
    ):
        if name not in args.arms.split(","):
            continue
        state = work / name
        env = {**os.environ, "LLAMAS_STATE_DIR": str(state), "LLAMAS_CONFIG_DIR": str(state),
               "LLAMAS_PIN_DIR": f"/sys/fs/bpf/llamas-churn-{os.getpid()}-{name}"}
        arm(name, argv, ready, env, churn, child, args.processes, args.parallel)
        subprocess.run(["rm", "-rf", env["LLAMAS_PIN_DIR"]], check=False)


if __name__ == "__main__":
    main()
