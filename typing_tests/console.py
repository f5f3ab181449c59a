"""Checked by ``mypy --strict`` in CI (never run): the console's and the SQL store's types."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from nirguard import LookupGuard, Pseudonymiser, SecretKey
from nirguard.audit_sql import SqlAuditStore
from nirguard.console import Console, Officer

key = SecretKey.generate("k")
store = SqlAuditStore("sqlite://", prefix="portal_", queue_size=1000)
guard = LookupGuard(
    pseudonymiser=Pseudonymiser(key, purpose="guard"),
    audit=store.audit,
    alert=store.alert,
    on_break_glass=store.break_glass,
)


def authorize(request: Any) -> Officer | None:
    return Officer("m.dupont", "officer") if request else None


async def authorize_async(request: Any) -> Officer | None:
    return None


console = Console(store, authorize=authorize, guard=guard, keys=key)
Console(store, authorize=authorize_async)
assert_type(store.flush(), bool)
assert_type(store.purge(365), dict[str, int])
assert_type(store.dropped, int)
assert_type(Officer("x").can_act, bool)
Officer("x", "admin")  # type: ignore[arg-type]
