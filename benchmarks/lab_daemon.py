"""`llamas run --advisor heuristic` for the lab benchmarks (convergence_lab.py, steady_lab.py,
write_slow_lab.py): its own state, config and pin directory under `work`, the harness (and
helpers named in `deny_comm`) in its deny list, since what they hold idle is not the workload
being judged; ready once it says "deciding every". Every line it says is kept, with when it said it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Llamas:
    def __init__(self, work: Path, decide_every: float, pin_dir: str, prefix: tuple[str, ...] = (),
                 deny_comm: tuple[str, ...] = ()) -> None:
        """`prefix`: run it under this (numactl, to keep its own memory off a node); `deny_comm`:
        names of helpers started after it, denied by name."""
        work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work / "state", ignore_errors=True)
        env = {**os.environ, "LLAMAS_STATE_DIR": str(work / "state"), "LLAMAS_CONFIG_DIR": str(work),
               "LLAMAS_PIN_DIR": pin_dir}
        names = ", ".join(json.dumps(name) for name in deny_comm)
        (work / "config.toml").write_text(
            f"[guardrails]\ndeny_pids = [{os.getpid()}]\ndeny_comm = [{names}]\n")
        self.audit = work / "state" / "audit.jsonl"
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [*prefix, "llamas", "run", "--advisor", "heuristic", "--decide-every", str(decide_every),
             "--devices", str(ROOT / "devices")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(600):
            raise SystemExit(f"llamas run did not start: {self.lines}")
        self.startup_s = time.monotonic() - started

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.strip()))
            if "deciding every" in line:
                self.ready.set()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)
