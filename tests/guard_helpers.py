"""Shared helpers for the guard tests (also used by worker processes)."""

from __future__ import annotations

from typing import Any

from nirguard import LookupDenied, LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey

KEY = SecretKey(bytes(range(32)), "test")


class Clock:
    """A clock the tests move by hand."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recording:
    """A guard's engine, recording every request it is asked to decide (``.requests``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests: list[Any] = []

    def decide(self, request: Any) -> Any:
        self.requests.append(request)
        return self.inner.decide(request)

    async def adecide(self, request: Any) -> Any:
        self.requests.append(request)
        return await self.inner.adecide(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def record_requests(guard: LookupGuard) -> Recording:
    """Put a :class:`Recording` between ``guard`` and its engine."""
    recording = Recording(guard._path._engine)
    guard._path._engine = recording  # type: ignore[assignment]
    return recording


def session_fingerprint(guard: LookupGuard, session: str) -> bytes:
    """What ``guard`` hands its engine for ``session`` (when ``session_overlap`` is on)."""
    return guard._path._session(session)


def only(**quotas: Any) -> QuotaPolicy:
    """A policy with every check off except those given."""
    return QuotaPolicy.only(**quotas)


def redis_worker(args: tuple[str, str, int, list[str]]) -> int:
    """Run in a separate process: try every NIR once, return how many were allowed."""
    url, prefix, quota, nirs = args
    guard = LookupGuard(
        only(lookups=f"{quota}/hour"),
        storage=url,
        key_prefix=prefix,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
    )
    allowed = 0
    for value in nirs:
        try:
            with guard.lookup("shared-account", value) as lookup:
                lookup.record({"ok": True})
            allowed += 1
        except LookupDenied:
            pass
    return allowed
