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


def test_a_torn_page_journal_line_is_skipped_counted_and_fenced(tmp_path):
    """The page journal (pages.jsonl) as the audit log: a line torn by a crash does not take the
    next record with it, and reads as one damaged line whose pages stay where they are."""
    from llamas_ebpf.actuator.pages import PageJournal

    path = tmp_path / "pages.jsonl"
    journal = PageJournal(path)
    journal.record(10, [(4096, 1), (8192, 1)])
    with path.open("ab") as out:
        out.write(b'{"pid": 11, "pages": [[40')
    journal.record(12, [(4096, 0)])
    assert journal.entries() == {10: {4096: 1, 8192: 1}, 12: {4096: 0}} and journal.damaged == 1
    journal.forget({10})
    assert journal.entries() == {12: {4096: 0}} and journal.damaged == 1


def test_the_page_journal_writes_runs_and_refuses_a_run_out_of_bounds(tmp_path):
    from llamas_ebpf.actuator.pages import PageJournal

    path = tmp_path / "pages.jsonl"
    journal = PageJournal(path)
    moves = [(0x10000000 + i * 4096, 1) for i in range(20000)] + [(0x20000000, 2)]
    journal.record(7, moves)
    assert len(path.read_bytes()) < 100  # two runs, not 20,001 pairs
    assert journal.entries() == {7: dict(moves)}
    with path.open("a") as out:
        out.write('{"pid": 8, "runs": [[4096, 1000000000000, 0]]}\n')
    assert set(journal.entries()) == {7} and journal.damaged == 1


def test_the_tail_is_read_from_the_end_and_agrees_with_the_whole_log(tmp_path):
    """tail() gives what entries() would, for the newest records only, across block edges (a
    record of 40 KiB here, blocks of 64 KiB) and past a torn line."""
    log = AuditLog(tmp_path)
    for generation in range(1, 301):
        log.append("apply" if generation % 3 else "decision", generation=generation,
                   document={"rationale": "x" * (40_000 if generation % 50 == 0 else 10)})
        if generation == 150:
            with open(log.path, "a") as out:
                out.write('{"event": "apply", "gen')  # torn: skipped, as entries() does
    every = log.entries()
    assert log.tail() == every and len(every) == 300
    assert log.tail(count=7) == every[-7:]
    applies = [e for e in every if e["event"] == "apply"]
    assert log.tail(count=40, keep=lambda e: e["event"] == "apply") == applies[-40:]
    assert log.tail(count=1, keep=lambda e: e["event"] == "apply")[0]["generation"] == 299
    middle = every[200]["time"]
    assert log.tail(since=middle) == [e for e in every if e["time"] >= middle]
    assert AuditLog(tmp_path / "none").tail(count=3) == []
