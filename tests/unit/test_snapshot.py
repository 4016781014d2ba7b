from __future__ import annotations

import pytest

from llamas_ebpf.errors import LlamasError
from llamas_ebpf.snapshot import (
    FaultCounts,
    NodeSample,
    OtherProcesses,
    ProbeHealth,
    ProcessSample,
    Region,
    Snapshot,
    load,
    save,
)


def sample_snapshot() -> Snapshot:
    proc = ProcessSample(pid=42, comm="redis-server", faults=FaultCounts(user=10, kernel=1, read=4, write=7),
                         regions=[Region(start=0x7F0000000000, reads=3, writes=5)])
    proc.numa.alloc_local, proc.numa.alloc_pages_by_node = 9, {0: 9}
    proc.gpu.calls["cuMemAlloc_v2"] = 2
    return Snapshot(host="h", kernel="6.12", time=1.5, interval_s=1.0, processes=[proc],
                    nodes=[NodeSample(id=0, cpus=[0, 1], faults=11, alloc_from_cpu_node={0: 9})],
                    probes={"faults": ProbeHealth(name="faults", method="raw_tracepoint", status="ok")})


def test_json_round_trip(tmp_path):
    snap = sample_snapshot()
    again = Snapshot.from_json(snap.to_json())
    assert again == snap
    assert '"schema":"llamas.snapshot/v1"' in snap.to_json()
    path = tmp_path / "s.jsonl"
    save([snap, snap], path)
    assert list(load(path)) == [snap, snap]


def test_others_round_trip_and_count_in_totals():
    snap = sample_snapshot()
    assert snap.others is None and snap.counted == snap.processes  # as every file before them
    snap.others = OtherProcesses(processes=950, faults=FaultCounts(user=4000, kernel=10, read=1, write=4009))
    snap.others.numa.alloc_remote = 12
    again = Snapshot.from_json(snap.to_json())
    assert again == snap and again.others is not None and again.others.total_faults == 4010
    assert sum(p.total_faults for p in again.counted) == 4010 + 11
    assert sum(p.numa.alloc_remote for p in again.counted) == 12
    from llamas_ebpf.faces.observe import render

    table = render(again, 20).splitlines()
    assert table[-1].startswith("  others: 950 processes, faults 4010, allocations local 0 remote 12"), table
    from llamas_ebpf.advise.summary import summarize
    from llamas_ebpf.faces.audit import _left_out

    window = summarize([sample_snapshot(), again])
    assert window.process_count == 1 and window.left_out == 950
    assert "up to 950 a snapshot" in _left_out({"processes_left_out": window.left_out})


def test_load_names_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = sample_snapshot().to_json()
    path.write_text(good + "\n" + good.replace('"user":10', '"user":"ten"') + "\n")
    with pytest.raises(LlamasError) as err:
        list(load(path))
    message = str(err.value)
    assert f"{path}:2:" in message and "processes.0.faults.user" in message


def test_unknown_fields_are_refused():
    text = sample_snapshot().to_json().replace('"comm":"redis-server"', '"comm":"x","evil":1')
    with pytest.raises(ValueError):
        Snapshot.from_json(text)
