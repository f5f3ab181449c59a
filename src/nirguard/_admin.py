"""The guard's administrative calls: status, unlock, and the replay's snapshots.

:class:`Admin` does what :meth:`LookupGuard.status` and
:meth:`LookupGuard.unlock` promise: key the id as lookups do, ask the store,
audit an ``unlocked`` event with who did it and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from nirguard._engine import Engine, RawStatus, escape
from nirguard._inputs import practitioner_id
from nirguard._lookup import LookupPath
from nirguard._reports import Said
from nirguard.errors import ConfigurationError

__all__ = ["MAX_NOTE", "Admin", "GuardStatus"]

#: Longest administrator's note kept in the audit trail (characters).
MAX_NOTE: Final = 1000
#: A lockout longer than this is "until unlocked".
_FOREVER: Final = 365 * 86400


@dataclass(frozen=True, slots=True)
class GuardStatus:
    """What an admin screen shows for one practitioner.

    Attributes:
        practitioner: the practitioner id, as the guard keys it.
        remaining: lookups left per quota (smallest over its windows);
            ``None`` for a quota that is off.
        locked_until: POSIX time the lockout ends; ``None`` when not locked,
            ``float('inf')`` when locked until :meth:`LookupGuard.unlock`.
        lockout_level: lockouts counted towards escalation.
        baseline: the account's own normal as the store keeps it (new
            patients per day, share of repeats...: counts, never a
            pseudonym); ``None`` while it has no history, or with a store
            that keeps none.
    """

    practitioner: str
    remaining: dict[str, int | None]
    locked_until: float | None
    lockout_level: int
    baseline: dict[str, float] | None = None

    @property
    def locked(self) -> bool:
        """Whether the practitioner is locked out now."""
        return self.locked_until is not None


class Admin:
    """Status and unlock of one guard (internal)."""

    __slots__ = ("_engine", "_path")

    def __init__(self, engine: Engine, path: LookupPath) -> None:
        self._engine = engine
        self._path = path

    def _args(self, practitioner: str) -> tuple[str, str, Any]:
        who = practitioner_id(practitioner, folded=self._path.folded)
        return who, escape(who), self._path.policies.compiled(who)

    def status(self, practitioner: str) -> GuardStatus:
        who, key, compiled = self._args(practitioner)
        try:
            raw = self._engine.status(key, compiled)
        except self._engine.outages as exc:
            raise self._path.store_error(exc) from None
        return self._status(who, raw)

    async def astatus(self, practitioner: str) -> GuardStatus:
        who, key, compiled = self._args(practitioner)
        try:
            raw = await self._engine.astatus(key, compiled)
        except self._engine.outages as exc:
            raise self._path.store_error(exc) from None
        return self._status(who, raw)

    def _status(self, who: str, raw: RawStatus) -> GuardStatus:
        locked_for = raw.locked_for
        if locked_for is None:
            until = None
        elif locked_for > _FOREVER:
            until = float("inf")
        else:
            until = self._path.reports.clock() + locked_for
        baseline = getattr(raw, "baseline", None)
        return GuardStatus(who, raw.remaining, until, raw.level, baseline)

    @staticmethod
    def _check(by: object, reason: object) -> None:
        for name, value in (("by", by), ("reason", reason)):
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"unlock {name} must be a string or None")

    def _unlocked(self, who: str, by: str | None, reason: str | None) -> None:
        reports = self._path.reports
        note = reason[:MAX_NOTE] if reason else None
        reports.audit(Said(who, reports.clock()), "unlocked", actor=by or None, note=note)

    def unlock(self, practitioner: str, by: str | None, reason: str | None) -> None:
        self._check(by, reason)
        who, key, compiled = self._args(practitioner)
        try:
            self._engine.unlock(key, compiled)
        except self._engine.outages as exc:
            raise self._path.store_error(exc) from None
        self._unlocked(who, by, reason)

    async def aunlock(self, practitioner: str, by: str | None, reason: str | None) -> None:
        self._check(by, reason)
        who, key, compiled = self._args(practitioner)
        try:
            await self._engine.aunlock(key, compiled)
        except self._engine.outages as exc:
            raise self._path.store_error(exc) from None
        self._unlocked(who, by, reason)

    def snapshot(self) -> Any:
        engine = self._engine
        take = getattr(engine, "snapshot", None)
        if engine.kind != "memory" or take is None:
            raise ConfigurationError("only a memory:// guard can be snapshot")
        return take()

    def restore(self, state: Any) -> None:
        engine = self._engine
        put = getattr(engine, "restore", None)
        if engine.kind != "memory" or put is None:
            raise ConfigurationError("only a memory:// guard can be restored")
        put(state)
