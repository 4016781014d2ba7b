"""The audit log survives a writer that died mid-line: the torn line is skipped and counted on
read, and the next record is fenced off from it instead of glued on."""

from __future__ import annotations

from llamas_ebpf.policy.state import AuditLog


def test_a_torn_tail_is_skipped_and_fenced(tmp_path):
    log = AuditLog(tmp_path)
    log.append("apply", generation=1)
    with open(log.path, "a") as out:
        out.write('{"event": "apply", "generation": 2, "docu')  # kill -9 mid-write
    assert [e["generation"] for e in log.entries()] == [1] and log.torn == 1
    log.append("rollback", generation=1)
    entries = log.entries()
    assert [e["event"] for e in entries] == ["apply", "rollback"] and log.torn == 1
    lines = log.path.read_text().splitlines()
    assert len(lines) == 3 and lines[1] == '{"event": "apply", "generation": 2, "docu'  # fenced, not glued
