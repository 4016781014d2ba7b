"""Sensor logic that needs no BPF: how often a busy process's numa_maps is read again."""

from __future__ import annotations

import subprocess
import sys
import time

from llamas_ebpf import sense
from llamas_ebpf.kernel import procfs
from llamas_ebpf.probes.base import ProbeOptions


def _bare_sensor() -> sense.Sensor:
    sensor = sense.Sensor.__new__(sense.Sensor)  # no probes: _resident_pages reads /proc only
    sensor.options = ProbeOptions(bpf_dir=sense.Path("."))
    sensor.detail_top = 16
    sensor._resident = {}
    return sensor


def test_resident_pages_are_read_again_when_the_process_faults_or_is_asked_about():
    # a child that maps 64 MiB once it reads a line, so what numa_maps says can change under us
    code = ("import sys; sys.stdin.readline(); b = bytearray(64 << 20); print('ok', flush=True); "
            "sys.stdin.readline()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdin is not None and child.stdout is not None
        time.sleep(0.3)
        sensor = _bare_sensor()
        started = procfs.stat(child.pid).start_ticks
        first = sensor._resident_pages(child.pid, started, faults=0)
        assert first and sum(first.values()) < 16384  # the interpreter alone, well under 64 MiB
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ok"
        # no faults counted in the interval: the pages read a moment ago stand
        assert sensor._resident_pages(child.pid, started, faults=0) == first
        # faults past RESIDENT_CHURN of what it had: read again, and the 64 MiB are there
        grown = sensor._resident_pages(child.pid, started, faults=sum(first.values()))
        assert grown is not None and sum(grown.values()) >= sum(first.values()) + 16000
        # a pid taken by another process (another start time) is never given the old pages
        sensor._resident[child.pid] = (started + 1, time.monotonic(), {0: 1})
        assert sensor._resident_pages(child.pid, started, faults=0) == grown
        # an asked-about process is read every time
        sensor._resident[child.pid] = (started, time.monotonic(), {0: 1})
        sensor.detail_pids = {child.pid}
        assert sensor._resident_pages(child.pid, started, faults=0) == grown
        # and, once old enough, any process is
        sensor.detail_pids = set()
        sensor._resident[child.pid] = (started, time.monotonic() - sense.RESIDENT_REFRESH_S, {0: 1})
        assert sensor._resident_pages(child.pid, started, faults=0) == grown
    finally:
        child.kill()
        child.wait()
    # gone: its stat cannot be read (no start time), so nothing, and forgotten
    assert sensor._resident_pages(child.pid, None, faults=0) is None
    assert child.pid not in sensor._resident
