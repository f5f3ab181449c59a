"""LookupGuard on the embedded memory store: every quota, the order, sync and async."""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path
from typing import Any

import pytest

from nirguard import (
    AuditEvent,
    ConfigurationError,
    EnumerationSuspected,
    GuardUnavailable,
    InvalidNIR,
    LookupDenied,
    LookupGuard,
    PolicyError,
    PractitionerLocked,
    Pseudonymiser,
    QuotaExceeded,
    QuotaPolicy,
    nir,
)
from nirguard.guard import Alert, EphemeralKeyWarning, Notice
from nirguard.testing import NIRGenerator
from tests.conftest import assert_no_nir
from tests.guard_helpers import KEY, Clock, only

NIRS = NIRGenerator(seed=2022).many(400)


class Spy:
    """A lookup function that records every call."""

    def __init__(self, result: Any = None) -> None:
        self.calls: list[str] = []
        self.result = result

    def __call__(self, practitioner_id: str, nir: str) -> Any:
        self.calls.append(nir)
        return {"name": "Jeanne"} if self.result is None else self.result


def make(
    policy: QuotaPolicy, **kwargs: Any
) -> tuple[LookupGuard, Clock, list[AuditEvent], list[Alert]]:
    clock = Clock()
    events: list[AuditEvent] = []
    alerts: list[Alert] = []
    guard = LookupGuard(
        policy,
        clock=clock,
        audit=events.append,
        alert=alerts.append,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        hooks="inline",
        **kwargs,
    )
    return guard, clock, events, alerts


def test_lookups_quota_refuses_before_the_function_runs() -> None:
    guard, clock, events, _ = make(only(lookups="3/minute"))
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    for value in NIRS[:3]:
        assert wrapped("dr-a", value) == {"name": "Jeanne"}
    with pytest.raises(QuotaExceeded) as info:
        wrapped("dr-a", NIRS[3])
    assert info.value.code == "lookups"
    assert 0 < info.value.retry_after <= 60
    assert len(spy.calls) == 3
    # Another practitioner has their own budget; the window frees up after a minute.
    wrapped("dr-b", NIRS[3])
    clock.advance(61)
    wrapped("dr-a", NIRS[3])
    assert [e.outcome for e in events].count("denied") == 1


def test_lookups_is_not_lockout_class() -> None:
    guard, clock, _, alerts = make(only(lookups="1/minute"))
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    wrapped("dr", NIRS[0])
    with pytest.raises(QuotaExceeded):
        wrapped("dr", NIRS[1])
    clock.advance(60)
    wrapped("dr", NIRS[1])
    assert alerts == []
    assert not guard.status("dr").locked


def test_distinct_patients_counts_new_patients_only_and_locks_out() -> None:
    guard, clock, events, alerts = make(only(distinct_patients="3/day", lockout="1 hour"))
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    for value in NIRS[:3]:
        wrapped("dr", value)
    for _ in range(5):  # repeats of known patients are not new
        wrapped("dr", nir.format(NIRS[0]))
    with pytest.raises(QuotaExceeded) as info:
        wrapped("dr", NIRS[3])
    assert info.value.code == "distinct_patients"
    assert info.value.retry_after == 3600
    # Now locked out of everything, even known patients.
    with pytest.raises(PractitionerLocked) as locked:
        wrapped("dr", NIRS[0])
    assert 0 < locked.value.retry_after <= 3600
    assert len(spy.calls) == 8
    assert len(alerts) == 1
    assert alerts[0].signal == "distinct_patients"
    assert [e.outcome for e in events][-2:] == ["lockout", "locked"]
    clock.advance(3601)
    wrapped("dr", NIRS[0])  # lockout over; known patient


def test_refused_new_patient_does_not_become_known() -> None:
    guard, clock, _, _ = make(only(distinct_patients="1/day", lockout="1 minute"))
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    wrapped("dr", NIRS[0])
    with pytest.raises(QuotaExceeded):
        wrapped("dr", NIRS[1])
    clock.advance(61)
    # Retrying the refused patient is still a new patient: refused again.
    with pytest.raises(QuotaExceeded):
        wrapped("dr", NIRS[1])
    assert spy.calls == [NIRS[0]]


def test_invalid_nirs_count_and_lock_out() -> None:
    guard, _, events, alerts = make(only(invalid_nirs="2/hour"))
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    bad = [NIRS[0][:-2] + f"{(int(NIRS[0][-2:]) % 97) + 1:02d}", "1850578006084", "garbage"]
    for value in bad[:2]:
        with pytest.raises(InvalidNIR):
            wrapped("dr", value)
    with pytest.raises(QuotaExceeded) as info:
        wrapped("dr", bad[2])
    assert info.value.code == "invalid_nirs"
    with pytest.raises(PractitionerLocked):
        wrapped("dr", NIRS[1])
    assert spy.calls == []
    assert alerts[0].signal == "invalid_nirs"
    assert [e.outcome for e in events][:2] == ["invalid", "invalid"]
    assert all(e.patient is None for e in events[:3])


def test_misses_budget_is_checked_before_the_lookup() -> None:
    guard, _, events, alerts = make(only(misses="2/hour"))
    calls: list[str] = []

    @guard.protect(practitioner="practitioner_id", nir="nir", is_miss=lambda r: r is None)
    def lookup(practitioner_id: str, nir: str) -> None:
        calls.append(nir)

    lookup("dr", NIRS[0])
    lookup("dr", NIRS[1])
    with pytest.raises(QuotaExceeded) as info:
        lookup("dr", NIRS[2])
    assert info.value.code == "misses"
    assert len(calls) == 2
    assert [e.outcome for e in events] == ["miss", "miss", "lockout"]
    assert alerts[0].signal == "misses"


def test_portal_quota_is_shared_and_not_lockout_class() -> None:
    guard, clock, _, alerts = make(only(portal="3/hour"))
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    for i, who in enumerate(["a", "b", "c"]):
        wrapped(who, NIRS[i])
    with pytest.raises(QuotaExceeded) as info:
        wrapped("d", NIRS[3])
    assert info.value.code == "portal"
    assert alerts == []
    clock.advance(3601)
    wrapped("d", NIRS[3])


def test_order_lockout_before_validation() -> None:
    guard, _, events, _ = make(only(distinct_patients="1/day"))
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    wrapped("dr", NIRS[0])
    with pytest.raises(QuotaExceeded):
        wrapped("dr", NIRS[1])
    with pytest.raises(PractitionerLocked):
        wrapped("dr", "not a nir")  # locked first, then validation
    assert events[-1].outcome == "locked"


def test_escalating_lockout_until_unlock() -> None:
    policy = only(invalid_nirs="1/day", lockout="1 hour", lockout_escalation=("1 day", None))
    guard, clock, _, alerts = make(policy)
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    durations = []
    for _ in range(3):
        with pytest.raises(LookupDenied) as info:
            for _attempt in range(3):
                try:
                    wrapped("bot", "x")
                except InvalidNIR:
                    continue
        durations.append(info.value.retry_after)
        if info.value.retry_after is not None:
            clock.advance(info.value.retry_after + 1)
    assert durations[:2] == [3600, 86400]
    assert durations[2] is None
    clock.advance(30 * 86400)
    status = guard.status("bot")
    assert status.locked_until == float("inf")
    with pytest.raises(PractitionerLocked) as info:
        wrapped("bot", NIRS[0])
    assert info.value.retry_after is None
    assert len(alerts) == 1  # three lockouts within lockout_memory: one incident, one alert
    guard.unlock("bot")
    assert not guard.status("bot").locked
    wrapped("bot", NIRS[0])


def test_cohort_detection_catches_order_walking() -> None:
    guard, _, events, alerts = make(only(cohort="3/day", lookups="1000/day"))
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    prefix = "1850578006"  # sex, year, month, place held fixed; order numbers walked
    walked = [
        f"{prefix}{order:03d}{nir.compute_key(f'{prefix}{order:03d}'):02d}"
        for order in range(1, 10)
    ]
    for value in walked[:3]:
        wrapped("bot", value)
    with pytest.raises(EnumerationSuspected) as info:
        wrapped("bot", walked[3])
    assert info.value.signal == "cohort"
    assert events[-1].outcome == "lockout"
    assert len(alerts) == 1
    assert alerts[0].evidence["cohort_patients"] == 4
    with pytest.raises(PractitionerLocked):
        wrapped("bot", walked[4])
    assert len(alerts) == 1  # once per lockout
    text = repr(alerts) + repr(events)
    assert prefix not in text
    assert_no_nir(text, *walked)


def test_a_walk_spread_across_accounts_heats_its_cohort_then_catches_the_walkers() -> None:
    policy = only(hot_cohort=4.0, hot_cohort_min=3, portal_cohort="2/day")
    notices: list[Notice] = []
    guard, _, events, alerts = make(policy, notice=notices.append)
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    prefix = "2900275056"
    walked = [f"{prefix}{o:03d}{nir.compute_key(f'{prefix}{o:03d}'):02d}" for o in range(1, 30)]
    for i, value in enumerate(walked[:5]):  # five accounts, one person each
        wrapped(f"acct-{i}", value)
    assert alerts == []  # evidence about the portal names no practitioner: a notice
    assert len(notices) == 1
    assert notices[0].signal == "hot_cohort"
    assert notices[0].cohort is not None
    assert "hot_cohort" in events[-1].signals
    wrapped("acct-0", walked[5])
    wrapped("acct-0", walked[6])
    with pytest.raises(EnumerationSuspected) as info:
        wrapped("acct-0", walked[7])  # its third new patient in a hot cohort: all of its own
    assert info.value.signal == "portal_cohort"
    assert alerts[-1].practitioner == "acct-0"
    assert alerts[-1].lockout


def test_miss_ratio_detection() -> None:
    policy = only(miss_ratio=0.5, miss_ratio_min_lookups=10)
    guard, _, _, alerts = make(policy)

    @guard.protect(practitioner="practitioner_id", nir="nir", is_miss=lambda r: r is None)
    def lookup(practitioner_id: str, nir: str) -> dict[str, str] | None:
        return None if int(nir[10:13]) % 4 else {"name": "x"}  # ~75% misses

    with pytest.raises(EnumerationSuspected) as info:
        for value in NIRS[:50]:
            lookup("bot", value)
    assert info.value.signal == "miss_ratio"
    assert alerts[0].evidence["ratio"] > 0.5


def test_a_gp_week_is_not_refused() -> None:
    """25 lookups a working day among 1,500 own patients, with repeats: never refused."""
    guard, clock, events, alerts = make(QuotaPolicy())
    gen = NIRGenerator(seed=7)
    patients = gen.many(1500)
    import random

    rng = random.Random(7)
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    for _day in range(5):
        for _ in range(25):
            wrapped("gp", rng.choice(patients))
            clock.advance(rng.uniform(300, 1200))
        clock.advance(86400 - 25 * 750)
    assert alerts == []
    assert {e.outcome for e in events} == {"allowed"}


def test_async_protect_and_async_with() -> None:
    guard, _, events, _ = make(only(lookups="2/minute"))
    calls: list[str] = []

    @guard.protect(practitioner=lambda request, nir: request["user"], nir="nir")
    async def lookup(request: dict[str, str], nir: str) -> dict[str, str]:
        calls.append(nir)
        await asyncio.sleep(0)
        return {"name": "x"}

    assert inspect.iscoroutinefunction(lookup)

    async def main() -> None:
        await lookup({"user": "dr"}, NIRS[0])
        async with guard.lookup("dr", NIRS[1]) as guarded:
            guarded.record({"name": "y"})
            assert guarded.nir == NIRS[1]
        with pytest.raises(QuotaExceeded):
            await lookup({"user": "dr"}, NIRS[2])
        with pytest.raises(QuotaExceeded):
            async with guard.lookup("dr", NIRS[2]):
                raise AssertionError("body must not run")

    asyncio.run(main())
    assert calls == [NIRS[0]]
    assert [e.outcome for e in events] == ["allowed", "allowed", "denied", "denied"]


def test_context_manager_records_misses_through_is_miss() -> None:
    guard, _, events, _ = make(only(misses="5/hour"))
    with guard.lookup("dr", nir.format(NIRS[0])) as lookup:
        assert lookup.nir == NIRS[0]
        assert lookup.record(None) is None
    with guard.lookup("dr", NIRS[1]) as lookup:
        lookup.record({"name": "x"})
    assert [e.outcome for e in events] == ["miss", "allowed"]
    assert guard.status("dr").remaining["misses"] == 4


def test_signature_and_metadata_are_kept() -> None:
    guard = LookupGuard()

    @guard.protect(practitioner="practitioner_id", nir="nir")
    def infopatient(practitioner_id: str, nir: str, *, full: bool = False) -> dict[str, bool]:
        """Docstring."""
        return {"full": full}

    assert infopatient.__name__ == "infopatient"
    assert infopatient.__doc__ == "Docstring."
    assert list(inspect.signature(infopatient).parameters) == ["practitioner_id", "nir", "full"]
    assert infopatient(practitioner_id="dr", nir=NIRS[0], full=True) == {"full": True}


def test_bad_parameter_names_are_refused_at_decoration() -> None:
    guard = LookupGuard()
    with pytest.raises(ConfigurationError):
        guard.protect(practitioner="who", nir="nir")(lambda practitioner_id, nir: None)


def test_missing_practitioner_is_refused() -> None:
    guard = LookupGuard()
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    with pytest.raises(LookupDenied):
        wrapped("", NIRS[0])
    with pytest.raises(LookupDenied):
        wrapped(None, NIRS[0])
    assert spy.calls == []


def test_exact_under_threads() -> None:
    guard, _, _, _ = make(only(lookups="50/hour"))
    allowed = []
    lock = threading.Lock()

    def worker(chunk: list[str]) -> None:
        for value in chunk:
            try:
                with guard.lookup("shared", value) as lookup:
                    lookup.record({"ok": 1})
            except QuotaExceeded:
                continue
            with lock:
                allowed.append(value)

    threads = [threading.Thread(target=worker, args=(NIRS[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 50


def test_store_failure_fails_closed_and_fail_open_is_audited() -> None:
    events: list[AuditEvent] = []
    spy = Spy()
    guard = LookupGuard(
        storage="redis://127.0.0.1:1/0",
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        audit=events.append,
    )
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    with pytest.raises(GuardUnavailable) as info:
        wrapped("dr", NIRS[0])
    assert info.value.code == "unavailable"
    assert "127.0.0.1" not in str(info.value)
    assert spy.calls == []
    assert events[-1].outcome == "unavailable"
    with pytest.raises(GuardUnavailable):
        guard.status("dr")

    open_guard = LookupGuard(
        storage="redis://127.0.0.1:1/0",
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        audit=events.append,
        fail_open=True,
    )
    wrapped = open_guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    assert wrapped("dr", NIRS[0]) == {"name": "Jeanne"}
    assert events[-1].outcome == "unguarded"
    with pytest.raises(InvalidNIR):
        wrapped("dr", "185057800608490")
    assert len(spy.calls) == 1


def test_shared_store_without_pseudonymiser_warns() -> None:
    with pytest.warns(EphemeralKeyWarning):
        LookupGuard(storage="redis://127.0.0.1:1/0")


@pytest.mark.parametrize(
    "bad",
    [
        {"lookups": "lots"},
        {"distinct_patients": "0/day"},
        {"lockout": "forever"},
        {"miss_ratio": 0},
        {"unknown": "1/day"},
        {"lockout_escalation": ("1 day", "soon")},
    ],
)
def test_policy_errors_are_clear(bad: dict[str, Any]) -> None:
    with pytest.raises(PolicyError) as info:
        QuotaPolicy(**bad)
    assert next(iter(bad)) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_policy_loaders(tmp_path: Path) -> None:
    toml = tmp_path / "policy.toml"
    toml.write_text(
        '[nirguard]\nlookups = "10/minute"\nportal = "off"\nlockout_escalation = ["2 hours", "off"]\n'
    )
    policy = QuotaPolicy.from_toml(toml, table="nirguard")
    assert policy.lookups == "10/minute"
    assert policy.portal is None
    assert policy.lockout_escalation == ("2 hours", None)
    assert QuotaPolicy.from_json('{"lookups": "5/minute", "cohort": null}').cohort is None
    env = {
        "NIRGUARD_POLICY_LOOKUPS": "7/minute",
        "NIRGUARD_POLICY_COHORT": "off",
        "NIRGUARD_POLICY_MISS_RATIO": "0.7",
    }
    policy = QuotaPolicy.from_env(environ=env)
    assert (policy.lookups, policy.cohort, policy.miss_ratio) == ("7/minute", None, 0.7)
    assert QuotaPolicy.from_dict({"misses": "3/hour"}).misses == "3/hour"
    with pytest.raises(PolicyError):
        QuotaPolicy.from_json("{not json")
    with pytest.raises(PolicyError):
        QuotaPolicy.from_toml("lookups = ")
    policy = QuotaPolicy()
    with pytest.raises(ValueError):
        policy.lookups = "1/day"  # type: ignore[misc]


def test_policy_callable_per_practitioner() -> None:
    desk = only(lookups="5/minute")
    gp = only(lookups="1/minute")
    guard = LookupGuard(lambda who: desk if who.startswith("desk") else gp)
    spy = Spy()
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(spy)
    for value in NIRS[:5]:
        wrapped("desk-1", value)
    wrapped("gp-1", NIRS[0])
    with pytest.raises(QuotaExceeded):
        wrapped("gp-1", NIRS[1])


def test_status_reports_remaining() -> None:
    guard, _, _, _ = make(only(lookups="10/minute;20/day", distinct_patients="5/day"))
    for value in NIRS[:3]:
        with guard.lookup("dr", value) as lookup:
            lookup.record(1)
    status = guard.status("dr")
    assert status.remaining["lookups"] == 7
    assert status.remaining["distinct_patients"] == 2
    assert status.remaining["portal"] is None
    assert not status.locked


def test_reprs_hold_no_secret() -> None:
    import base64

    material = bytes(range(32))
    guard = LookupGuard(storage="memory://", pseudonymiser=Pseudonymiser(KEY, purpose="guard"))
    with guard.lookup("dr", NIRS[0]) as lookup:
        shown = repr(guard) + repr(lookup) + repr(guard._path.reports.hooks)
        assert_no_nir(shown, NIRS[0])
    for form in (material.hex(), base64.urlsafe_b64encode(material).decode().rstrip("=")):
        assert form not in shown
        assert form[:16] not in shown


def test_a_failing_lookup_is_still_audited_and_counted() -> None:
    guard, _, events, _ = make(only(lookups="2/minute"))

    @guard.protect(practitioner="practitioner_id", nir="nir")
    def broken(practitioner_id: str, nir: str) -> None:
        raise ConnectionError("identity service down")

    with pytest.raises(ConnectionError):
        broken("dr", NIRS[0])
    assert [e.outcome for e in events] == ["allowed"]
    assert guard.status("dr").remaining["lookups"] == 1

    async def main() -> None:
        @guard.protect(practitioner="practitioner_id", nir="nir")
        async def broken_async(practitioner_id: str, nir: str) -> None:
            raise ConnectionError("identity service down")

        with pytest.raises(ConnectionError):
            await broken_async("dr", NIRS[1])

    asyncio.run(main())
    assert [e.outcome for e in events] == ["allowed", "allowed"]
