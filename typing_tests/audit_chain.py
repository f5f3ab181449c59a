"""Checked by ``mypy --strict`` in CI (never run): the sealed audit trail's types."""

from __future__ import annotations

from typing_extensions import assert_type

from nirguard import LookupGuard
from nirguard.audit_chain import (
    AuditChain,
    AuditKey,
    Problem,
    Report,
    SealedAuditLog,
    WriterSummary,
    verify_files,
    verify_lines,
)
from nirguard.audit_sql import SqlAuditStore

audit_key = AuditKey.from_file("audit.key")
assert_type(AuditKey.generate("audit-2026"), AuditKey)
trail = SealedAuditLog("audit.jsonl", audit_key, writer="web1", checkpoint=60.0)
guard = LookupGuard(audit=trail)
trail.checkpoint()
trail.close()
assert_type(trail.chain.writer, str)
store = SqlAuditStore("sqlite://", chain=AuditChain(audit_key, writer="portal-1"))
report = verify_lines(store.sealed_lines(), [audit_key, AuditKey.from_env("OLD_AUDIT_KEY")])
assert_type(report, Report)
assert_type(report.ok, bool)
problems: list[Problem] = report.problems
writers: list[WriterSummary] = report.writers
files = verify_files(["audit.jsonl.1.gz", "audit.jsonl"], audit_key, partial=True, now=0.0)
assert_type(files.text(), str)
