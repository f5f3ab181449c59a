"""The portal's session id through the public API: ``guard.protect(session=...)``,
``guard.lookup(..., session=)``, ``guard.open_lookup(..., session=)`` (issue 17).

What the engine does with it is tested with the engines; here: the id reaches the
engine's :class:`~nirguard._engine.Request` as the fingerprint of its keyed pseudonym,
the same for the same id whichever way it came, ``b""`` when unknown, refused (before
the lookup runs) when not a str, and never written anywhere in the clear.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from nirguard import AuditEvent, LookupDenied, LookupGuard, Pseudonymiser, QuotaPolicy
from nirguard.alerts import Alert
from nirguard.testing import NIRGenerator
from tests.guard_helpers import KEY, Clock, Recording, record_requests

NIRS = NIRGenerator(seed=1717).many(20)
#: A session id no other value of a test could contain by chance.
RAW = "sess-Q7v2xK9pLm4RtZ"
RAW2 = "sess-Hb3nW8cY1dFsJu"
WATCHED = "dr-sessions"


def _guard(
    policy: QuotaPolicy | None = None, **kwargs: Any
) -> tuple[LookupGuard, Recording, list[AuditEvent], list[Alert]]:
    events: list[AuditEvent] = []
    alerts: list[Alert] = []
    guard = LookupGuard(
        policy or QuotaPolicy.only(lookups="1000/hour", session_overlap="30 minutes"),
        clock=Clock(),
        audit=events.append,
        alert=alerts.append,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        hooks="inline",
        **kwargs,
    )
    return guard, record_requests(guard), events, alerts


def _through_lookup(
    guard: LookupGuard, session: object, nir: str = NIRS[0], who: str = WATCHED
) -> None:
    with guard.lookup(who, nir, session=session) as lookup:  # type: ignore[arg-type]
        lookup.record({"name": "x"})


def test_every_entry_point_hands_the_same_fingerprint_for_the_same_id() -> None:
    guard, recording, _, _ = _guard()
    calls: list[str] = []

    @guard.protect(practitioner="who", nir="nir", session="sid")
    def by_name(who: str, nir: str, sid: str | None = None) -> dict[str, str]:
        calls.append(nir)
        return {"name": "x"}

    @guard.protect(practitioner="who", nir="nir", session=lambda who, nir, ctx: ctx["sid"])
    async def by_callable(who: str, nir: str, ctx: dict[str, str]) -> dict[str, str]:
        calls.append(nir)
        return {"name": "x"}

    async def opened(session: str) -> None:
        lookup = await guard.open_lookup(WATCHED, NIRS[3], session=session)
        lookup.record({"name": "x"})

    async def async_with(session: str) -> None:
        async with guard.lookup(WATCHED, NIRS[4], session=session) as lookup:
            lookup.record({"name": "x"})

    _through_lookup(guard, RAW)
    by_name(WATCHED, NIRS[1], sid="".join(["sess-", "Q7v2xK9pLm4RtZ"]))  # built, not interned
    by_name(WATCHED, NIRS[1], RAW)  # positionally
    asyncio.run(by_callable(WATCHED, NIRS[2], {"sid": RAW}))
    asyncio.run(opened(RAW))
    asyncio.run(async_with(RAW))
    sessions = {r.session for r in recording.requests}
    assert len(recording.requests) == 6 and len(calls) == 3
    assert len(sessions) == 1
    (seen,) = sessions
    assert seen and RAW.encode() not in seen  # a fingerprint, not the id


def test_a_different_id_or_key_gives_a_different_fingerprint() -> None:
    guard, recording, _, _ = _guard()
    for i, session in enumerate((RAW, RAW + "x", RAW.upper(), RAW[:-1])):
        _through_lookup(guard, session, who=f"dr-{i}")  # one session each: no signal
    assert len({r.session for r in recording.requests}) == 4
    other, other_recording, _, _ = _guard()
    other._path._sessions = Pseudonymiser(  # another portal's key
        KEY.__class__(bytes(range(1, 33)), "other"), purpose="guard"
    ).derive("session")
    _through_lookup(other, RAW)
    assert other_recording.requests[0].session != recording.requests[0].session


@pytest.mark.parametrize("session", [None, ""])
def test_no_session_is_an_empty_fingerprint(session: str | None) -> None:
    guard, recording, _, _ = _guard()

    def lookup(who: str, nir: str, sid: str | None) -> dict[str, str]:
        return {"name": "x"}

    guard.protect(practitioner="who", nir="nir", session="sid")(lookup)(WATCHED, NIRS[0], session)
    _through_lookup(guard, session)
    guard.protect(practitioner="who", nir="nir")(lookup)(WATCHED, NIRS[0], RAW)  # no session=
    assert [r.session for r in recording.requests] == [b"", b"", b""]


def test_the_session_is_only_read_when_session_overlap_is_on() -> None:
    guard, recording, _, _ = _guard(QuotaPolicy.only(lookups="10/hour"))
    _through_lookup(guard, RAW)
    assert recording.requests[0].session == b""


def test_a_session_that_is_not_a_str_is_a_bug_even_with_the_signal_off() -> None:
    # turning session_overlap on later must not turn working calls into errors
    guard, recording, _, _ = _guard(QuotaPolicy.only(lookups="10/hour"))
    opened = guard.lookup(WATCHED, NIRS[0], session=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="session must be a str"), opened:
        pass
    assert recording.requests == []


@pytest.mark.parametrize("session", [b"sess-1", 42, 4.2, ["s"], object()])
def test_a_session_that_is_not_a_str_is_refused_before_the_lookup_runs(session: object) -> None:
    guard, recording, events, _ = _guard()
    calls: list[str] = []

    @guard.protect(practitioner="who", nir="nir", session="sid")
    def lookup(who: str, nir: str, sid: object) -> dict[str, str]:
        calls.append(nir)
        return {"name": "x"}

    @guard.protect(practitioner="who", nir="nir", session="sid")
    async def alookup(who: str, nir: str, sid: object) -> dict[str, str]:
        calls.append(nir)
        return {"name": "x"}

    ran: list[bool] = []
    with pytest.raises(TypeError, match="session must be a str"):
        lookup(WATCHED, NIRS[0], session)
    with pytest.raises(TypeError, match="session must be a str"):
        asyncio.run(alookup(WATCHED, NIRS[0], session))
    opened = guard.lookup(WATCHED, NIRS[0], session=session)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="session must be a str"), opened:
        ran.append(True)
    with pytest.raises(TypeError, match="session must be a str"):
        asyncio.run(guard.open_lookup(WATCHED, NIRS[0], session=session))  # type: ignore[arg-type]
    assert calls == [] and ran == [] and recording.requests == [] and events == []


def test_protect_refuses_a_session_parameter_the_function_does_not_have() -> None:
    from nirguard import ConfigurationError

    guard, _, _, _ = _guard()
    with pytest.raises(ConfigurationError, match="session"):
        guard.protect(practitioner="who", nir="nir", session="sid")(lambda who, nir: None)


def _leaks(text: str) -> bool:
    return any(raw.lower() in text.lower() for raw in (RAW, RAW2))


def test_the_raw_session_id_is_written_nowhere(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    policy = QuotaPolicy.only(
        lookups="3/hour", distinct_patients="4/hour", lockout="1 hour", session_overlap="1 hour"
    )
    guard, recording, events, alerts = _guard(policy, on_break_glass=lambda grant: None)
    texts: list[str] = [repr(guard)]
    for value in NIRS[:6]:
        try:  # two sessions interleaving: the session signal's alert and evidence too
            with guard.lookup(
                WATCHED, value, session=RAW if value in NIRS[::2] else RAW2
            ) as lookup:
                lookup.record({"name": "x"})
                texts.append(repr(lookup))
        except LookupDenied as exc:
            texts += [str(exc), repr(exc), repr(exc.__dict__)]
    try:
        _through_lookup(guard, 7)
    except TypeError as exc:
        texts += [str(exc), repr(exc)]
    guard.flush()
    assert any(e.quota == "session" for e in events) and alerts  # the signal's reports too
    texts += [repr(e) + e.model_dump_json() for e in events]
    texts += [repr(a) for a in alerts]
    texts += [repr(r) for r in recording.requests]
    texts += [
        record.getMessage() + repr(record.args) + repr(record.__dict__) for record in caplog.records
    ]
    texts.append(repr(guard.status(WATCHED)))
    assert not [t for t in texts if _leaks(t)]
