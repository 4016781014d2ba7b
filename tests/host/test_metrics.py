"""`llamas run --metrics` scraped by a real Prometheus server on 127.0.0.1 (Debian's prometheus),
and the series read back through Prometheus's own HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.conftest import require
from tests.helpers.children import faulting, wait_for_line
from tests.host.test_run import DEVICES


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())["data"]["result"]


def test_prometheus_scrapes_the_daemon(env, busy, tmp_path):
    prometheus = shutil.which("prometheus")
    require(prometheus is not None, "prometheus missing: scripts/setup --test")
    values, _ = env
    exporter_port, prometheus_port = _free_port(), _free_port()
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "llamas"), "run", "--dry-run", "--decide-every",
                               "2", "--devices", str(DEVICES), "--metrics", f"127.0.0.1:{exporter_port}"],
                              env={**os.environ, **values}, stderr=subprocess.PIPE, text=True)
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: llamas\n"
                      f"    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n")
    server = None
    busy_now = faulting(busy, 64, 0.2, limit=600)
    busy_now.__enter__()
    try:
        assert wait_for_line(daemon.stderr, "advisor deciding every", 120), "daemon did not start"
        server = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        up = decided = faults = []
        while True:
            try:
                up = _query(prometheus_port, 'llamas_probe_up{probe="faults"}')
                decided = _query(prometheus_port, 'llamas_decisions_total')
                faults = _query(prometheus_port, f'llamas_process_faults_per_second{{pid="{busy.pid}"}}')
                if up and decided and faults:
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"the series never reached Prometheus: {up}, {decided}, {faults}"
            time.sleep(1)
        assert up[0]["value"][1] == "1" and up[0]["metric"]["job"] == "llamas"
        assert float(decided[0]["value"][1]) >= 1 and decided[0]["metric"]["outcome"] in ("unchanged", "dry-run")
        assert float(faults[0]["value"][1]) > 0 and faults[0]["metric"]["comm"]
        generation = _query(prometheus_port, "llamas_policy_generation")
        assert generation and generation[0]["value"][1] == "0"  # a dry run applies nothing
        assert _query(prometheus_port, "process_resident_memory_bytes")  # the daemon's own RSS
    finally:
        busy_now.__exit__(None, None, None)
        for proc in (server, daemon):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
