"""Page migrations by reason, per process (bpf/page_migrate.c). Reason names come from the
tracepoint's format file, so a kernel that renumbers them is read correctly."""

from __future__ import annotations

from llamas_ebpf.kernel import tracefs
from llamas_ebpf.probes.base import AttachMethod, Probe, ProgramSource, SnapshotBuilder, needs_program


class PageMigrateProbe(Probe):
    name = "page_migrate"
    chain = (AttachMethod("tracepoint", needs_program("tracepoint", "migrate:mm_migrate_pages")),)

    def source(self, method: str) -> ProgramSource:
        self.reasons = tracefs.symbolic_values("migrate", "mm_migrate_pages", "reason")
        if not self.reasons:
            raise RuntimeError("no reason names in migrate:mm_migrate_pages's format file")
        return ProgramSource("page_migrate.c")

    def bind(self, method: str) -> None:
        self.proc_map = self.per_process("proc_migrations")

    def reason_name(self, code: int) -> str:
        return self.reasons.get(code, f"reason_{code}")

    def collect(self, out: SnapshotBuilder) -> None:
        for (pid, code), (succeeded, failed) in self.proc_map.read(out.alive).items():
            reason = self.reason_name(code)
            moved = out.process(pid).page_migrations
            moved[reason] = moved.get(reason, 0) + succeeded
            total_ok, total_failed = out.page_migrations.get(reason, (0, 0))
            out.page_migrations[reason] = (total_ok + succeeded, total_failed + failed)
