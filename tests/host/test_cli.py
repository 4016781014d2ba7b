"""The command line as a user runs it: doctor's truthfulness, observe's output, its refusals."""

from __future__ import annotations

import json

from tests.host.conftest import llamas


def _kernel_loads_fentry() -> bool:
    """Ask BCC itself, independently of llamas' own probe."""
    from bcc import BPF

    try:
        BPF(text=b"KFUNC_PROBE(task_numa_fault, int a, int b, int c, int d) { return 0; }")
    except Exception:
        return False
    return True


def test_doctor_json_is_truthful():
    result = llamas("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    probes = report["probes"]
    assert set(probes) >= {"faults", "numa_alloc", "numa_hint", "page_migrate", "cpu_migrate",
                           "cuda", "gpu_fence", "taskstats"}
    for name, probe in probes.items():
        assert probe["status"] in ("ok", "fallback", "unavailable"), name
        assert set(probe) == {"method", "status", "reason"}
    tracing = report["capabilities"]["program_types"]["tracing"]["available"]
    assert tracing == _kernel_loads_fentry()
    if not tracing:
        assert probes["numa_hint"]["status"] == "fallback"
        assert probes["numa_hint"]["method"] == "tracepoint+vmstat"
        assert "fentry" in probes["numa_hint"]["reason"]
    else:
        assert probes["numa_hint"]["method"] == "fentry"
    assert "available" in report["capabilities"]["program_types"]["lsm"]


def test_observe_json_lines(tmp_path):
    saved = tmp_path / "snaps.jsonl"
    result = llamas("observe", "--json", "--bpf-stats", "--save", str(saved), "0.5", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        snap = json.loads(line)
        assert snap["processes"], "a busy host has faulting processes"
        assert snap["probes"]["faults"]["events"] is not None  # --bpf-stats
        for proc in snap["processes"]:
            assert {"pid", "comm", "faults", "numa", "cpu_migrations", "gpu"} <= set(proc)
            assert set(proc["faults"]) == {"user", "kernel", "read", "write"}
            assert {"alloc_local", "alloc_remote", "hint_local", "hint_remote"} <= set(proc["numa"])
            assert set(proc["cpu_migrations"]) == {"same_node", "cross_node"}
            assert set(proc["gpu"]) == {"calls", "bytes"}
    from llamas_ebpf.snapshot import load

    loaded = list(load(saved))
    assert [s.to_json() for s in loaded] == lines


def test_not_root_is_one_line_exit_2():
    for args in (("doctor",), ("observe", "1", "1")):
        result = llamas(*args, user="nobody")
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().count("\n") == 0
        assert "not root" in result.stderr


def test_no_headers_is_one_line_exit_2(tmp_path):
    result = llamas("observe", "1", "1", env={"BCC_KERNEL_SOURCE": str(tmp_path)})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "kernel headers" in result.stderr and result.stderr.strip().count("\n") == 0


def test_bad_interval_is_refused():
    result = llamas("observe", "0", "1")
    assert result.returncode == 2 and "interval" in result.stderr
