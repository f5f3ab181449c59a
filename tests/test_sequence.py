"""The ``sequence`` signal: new patients next to people the portal saw lately, against
a keyed control.

Every engine (memory, Redis, Redis Cluster) is checked against a small model of the
rule written here from its documentation (docs/guard.md), on random traffic and on
walks; then the two properties the signal is for: a walk shared by accounts is always
refused, random lookups on a portal of realistic density are not, even a dense one;
then the guard's side (the probes' fingerprints, never a number) and the policy's checks.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey, profiles
from nirguard._engine import Decision, Engine, Keys, Request, fingerprint
from nirguard._memory import MemoryEngine
from nirguard._sequence import ABSENT, SPACING, TWINS, Z2, neighbours, spacing
from nirguard.errors import EnumerationSuspected, PolicyError, PractitionerLocked
from nirguard.nir import compute_key
from tests.engine_helpers import (
    DAY,
    ENGINES,
    HOUR,
    T0,
    cleanup,
    engines,
    redis_engine,
    sequence_policy,
)
from tests.redis_helpers import WORKER_PREFIX

LIMIT = 3
#: Never hot: the heat only remembers whom it saw, for two hours; new patients stay known
#: for 7 days.
POLICY = sequence_policy(f"{LIMIT}/day;{2 * LIMIT}/7 days")
HOT = 2 * HOUR
STEPS = (HOUR, DAY, None)  # the default lockout, then its escalation


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from engines(request)


def _label(run: str, cohort: int, order: int) -> str:
    return f"{run}-c{cohort}-{order:03d}"


def _d(cohort: int, order: int) -> int:
    """The control's distance in these tests (the guard's is keyed: :func:`spacing`)."""
    return SPACING[0] + (7 * order + cohort) % (SPACING[1] - SPACING[0] + 1)


def _orders(cohort: int, order: int) -> tuple[int, int, int, int]:
    """The probes' order numbers: the neighbours, then the controls."""
    d = _d(cohort, order)
    return order - 1, order + 1, order - d, order + d


def _probes(run: str, cohort: int, order: int) -> bytes:
    return b"".join(
        fingerprint(_label(run, cohort, m)) if 1 <= m <= 999 else ABSENT
        for m in _orders(cohort, order)
    )


def _request(run: str, who: str, cohort: int, order: int, now: float) -> Request:
    near = _probes(run, cohort, order)
    return Request(
        f"{run}-{who}",
        POLICY._compiled,
        _label(run, cohort, order),
        f"{run}-cohort-{cohort}",
        now=now,
        neighbours=near,
    )


# -- a model of the rule, from docs/guard.md ---------------------------------------------------


@dataclass
class _Account:
    own: dict[tuple[int, int], float] = field(default_factory=dict)
    # per window: its end, new patients with a neighbour only, a control only, new patients
    windows: list[list[float]] = field(default_factory=lambda: [[0.0, 0, 0, 0], [0.0, 0, 0, 0]])
    locked: float = 0.0
    level: int = 0
    level_end: float = 0.0
    history: float = 0.0  # until when it is remembered as having breached `sequence`


@dataclass
class Model:
    """The portal's recent people (:data:`HOT`), each account's own (7 days), the two windows
    (a day, a week: new patients with a neighbour only, with a control only, new
    patients), lockouts, and whether the account breached `sequence` in the last 7 days
    (then any new patient with a neighbour only breaches)."""

    portal: dict[tuple[int, int], float] = field(default_factory=dict)
    accounts: dict[str, _Account] = field(default_factory=dict)
    share: float = 0.5

    def _evidence(self, a: _Account, cohort: int, orders: tuple[int, ...], t: float) -> bool:
        return any(  # the portal saw it; not the account's own from the last 10 minutes
            self.portal.get((cohort, m), 0.0) > t
            and a.own.get((cohort, m), 0.0) <= t + 7 * DAY - TWINS
            for m in orders
        )

    def _over(self, a: _Account, t: float) -> bool:
        for w, amount in zip(a.windows, (LIMIT, 2 * LIMIT)):
            nb, ctl, new = (w[1], w[2], w[3]) if w[0] > t else (0, 0, 0)
            excess = nb + 1 - ctl
            tested = excess > amount and excess**2 >= Z2 * (nb + 1 + ctl)
            if tested and excess >= self.share * (new + 1):
                return True
        return a.history > t

    def look(self, who: str, cohort: int, order: int, t: float) -> tuple[str, str]:
        a = self.accounts.setdefault(who, _Account())
        if a.locked > t:
            return "locked", "locked"
        if a.own.get((cohort, order), 0.0) > t:
            return "allowed", ""
        if self.portal.get((cohort, order), 0.0) <= t:
            self.portal[(cohort, order)] = t + HOT
        probes = _orders(cohort, order)
        nb = self._evidence(a, cohort, probes[:2], t)
        ctl = self._evidence(a, cohort, probes[2:], t)
        if nb and not ctl and self._over(a, t):
            a.history = t + 7 * DAY
            level = a.level if a.level_end > t else 0
            step = STEPS[min(level, 2)]
            a.locked = t + (step if step is not None else 1e12)
            a.level, a.level_end = level + 1, t + 7 * DAY
            return "suspected", "sequence"
        for w, seconds in zip(a.windows, (DAY, 7 * DAY)):
            if w[0] <= t:
                w[:] = [t + seconds, 0, 0, 0]
            w[1] += int(nb and not ctl)
            w[2] += int(ctl and not nb)
            w[3] += 1
        a.own[(cohort, order)] = t + 7 * DAY
        return "allowed", ""


steps = st.lists(
    st.tuples(
        st.integers(0, 4),  # account
        st.integers(0, 2),  # cohort
        st.integers(1, 24),  # order number
        st.sampled_from([0.0, 60.0, 1800.0, HOUR, 5 * HOUR]),  # time before the lookup
    ),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps)
def test_every_engine_decides_as_the_model(
    engine: Engine, traffic: list[tuple[int, int, int, float]]
) -> None:
    run, model, now = uuid.uuid4().hex[:8], Model(), T0
    for who, cohort, order, wait in traffic:
        now += wait
        decision = engine.decide(_request(run, f"a{who}", cohort, order, now))
        assert (decision.outcome, decision.quota or "") == model.look(f"a{who}", cohort, order, now)
        _check_evidence(decision)


def _check_evidence(decision: Decision) -> None:
    if decision.quota == "sequence":
        evidence = decision.evidence
        assert (evidence["neighbour_only"], evidence["control_only"]) == (
            decision.count,
            decision.limit,
        )
        assert decision.lockout_started


walks = st.tuples(
    st.integers(2, 5),  # accounts sharing the walk
    st.integers(2, 12),  # cohorts walked at once
    st.sampled_from([30.0, 120.0, 600.0, 1800.0]),  # seconds between its lookups
    st.lists(  # others' lookups in between: (cohort, order), after walk lookup i
        st.tuples(st.integers(0, 80), st.integers(0, 11), st.integers(1, 40)), max_size=30
    ),
)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(walks)
def test_every_engine_decides_a_walk_as_the_model(
    engine: Engine, walk: tuple[int, int, float, list[tuple[int, int, int]]]
) -> None:
    """Walks long enough for the sign test and the memory of ``sequence`` to decide, with
    other accounts' lookups (controls seen, neighbours seen) in between."""
    accounts, cohorts, step, others = walk
    run, model, now, turn = uuid.uuid4().hex[:8], Model(), T0, 0
    extra: dict[int, list[tuple[int, int]]] = {}
    for at, cohort, order in others:
        extra.setdefault(at, []).append((cohort % cohorts, order))
    for order in range(1, 41):
        for cohort in range(cohorts):
            for other, (c, m) in enumerate(extra.pop(turn, [])):
                who = f"o{other % 3}"
                decision = engine.decide(_request(run, who, c, m, now))
                assert (decision.outcome, decision.quota or "") == model.look(who, c, m, now)
            who = f"a{turn % accounts}"
            turn += 1
            decision = engine.decide(_request(run, who, cohort, order, now))
            assert (decision.outcome, decision.quota or "") == model.look(who, cohort, order, now)
            _check_evidence(decision)
            now += step


def _walk(engine: Engine, run: str, accounts: list[str], cohorts: int, step: float,
          now: float, orders: int = 60) -> tuple[dict[str, Decision], dict[str, int], float]:  # fmt: skip
    """``accounts`` share a walk of ``cohorts`` cohorts at once (round robin), one lookup
    every ``step`` seconds, each account stopping at its first refusal."""
    refused: dict[str, Decision] = {}
    got: dict[str, int] = {}
    turn = 0
    for order in range(1, orders + 1):
        for cohort in range(cohorts):
            who = accounts[turn % len(accounts)]
            turn += 1
            if who in refused:
                continue
            decision = engine.decide(_request(run, who, cohort, order, now))
            if decision.outcome == "allowed":
                got[who] = got.get(who, 0) + 1
            else:
                refused[who] = decision
            now += step
    return refused, got, now


def test_a_walk_shared_by_accounts_is_refused_with_the_evidence(engine: Engine) -> None:
    """16 cohorts at once, a lookup every 2 minutes: a cohort's next number every 32
    minutes, its neighbour seen, its controls (4 numbers back or more) out of the heat."""
    run = uuid.uuid4().hex[:8]
    refused, got, _ = _walk(engine, run, ["a0", "a1", "a2", "a3"], 16, 120.0, T0)
    assert set(refused) == {"a0", "a1", "a2", "a3"}
    for decision in refused.values():
        assert (decision.outcome, decision.quota) == ("suspected", "sequence")
        # the sign test's least evidence: Z2 new patients with a neighbour only, no control
        assert decision.evidence["neighbour_only"] == Z2
        assert decision.evidence["control_only"] == 0
    # each account got its share of the first round (nobody next to anyone) and Z2 - 1 more
    assert max(got.values()) <= 16 // 4 + Z2 - 1


def test_a_walk_dense_enough_to_cancel_the_controls_heats_its_cohort() -> None:
    """The limit of the control: a walk that looks up each cohort's numbers ``d`` apart
    within the heat window sees its controls too, and ``sequence`` stays silent; such a
    walk is what ``hot_cohort`` sees (its own tests)."""
    engine = MemoryEngine(lambda: T0, prefix="dense")
    refused, got, _ = _walk(engine, "d", ["a0", "a1", "a2"], 1, 120.0, T0)
    assert refused == {} and sum(got.values()) == 60


def test_an_account_that_walked_breaches_again_at_its_next_neighbour(engine: Engine) -> None:
    """Back from its lockouts, a day later, the walker's evidence has aged out of the
    windows and its neighbours out of the heat; its next new patient with a neighbour
    only breaches at once (limit 0), where an account with no history is let through."""
    run = uuid.uuid4().hex[:8]
    refused, _, now = _walk(engine, run, ["w1", "w2"], 16, 120.0, T0)
    assert set(refused) == {"w1", "w2"}
    now += 2 * DAY  # past the lockout, the day window and the heat window
    engine.decide(_request(run, "x", 20, 10, now))  # somebody else's patients: 10 and 20
    engine.decide(_request(run, "x", 20, 20, now))
    fresh = engine.decide(_request(run, "y", 20, 11, now + 60.0))
    assert (fresh.outcome, fresh.quota) == ("allowed", None)  # no history: under the quota
    walker = engine.decide(_request(run, "w1", 20, 21, now + 60.0))
    assert (walker.outcome, walker.quota, walker.limit) == ("suspected", "sequence", 0)
    assert walker.lockout_started  # its week's evidence, or its history
    now += 8 * DAY  # "w2"'s history ended 7 days after its breach: treated as anyone's
    engine.decide(_request(run, "x", 21, 10, now))
    late = engine.decide(_request(run, "w2", 21, 11, now + 60.0))
    assert (late.outcome, late.quota) == ("allowed", None)


def test_a_question_answered_with_a_reason_is_not_remembered(engine: Engine) -> None:
    """Only a lockout by ``sequence`` is remembered: an account that answers the question
    with a reason (break-glass) is judged on the quota, the test and the share again
    later, where one that moved on to another patient was locked and breaches at its
    next neighbour."""
    policy = sequence_policy(
        f"{LIMIT}/day;{10 * LIMIT}/7 days", heat=None, break_glass="5/day;10/7 days"
    )._compiled
    run, now = uuid.uuid4().hex[:8], T0

    def ask(who: str, cohort: int, order: int, at: float, reason: bool = False) -> Decision:
        return engine.decide(
            Request(f"{run}-{who}", policy, _label(run, cohort, order), f"{run}-c{cohort}",
                    reason=reason, now=at, neighbours=_probes(run, cohort, order))
        )  # fmt: skip

    last = {}
    for who, base in (("gp", 100), ("bot", 200)):  # each next to "x"'s patients until asked
        for step in range(1, 40):  # a fresh cohort each time: 10 seen, the controls not
            ask(f"x{step}", base + step, 10, now)
            first = ask(who, base + step, 11, now + 1.0)
            now += 60.0
            if first.outcome != "allowed":
                break
        assert (first.outcome, first.quota) == ("reason_required", "sequence")
        assert (first.count, first.limit) == (Z2, 0)
        last[who] = base + step
    assert ask("gp", last["gp"], 11, now, reason=True).outcome == "break_glass"
    moved = ask("bot", 1, 99, now)  # another patient, the question unanswered
    assert (moved.outcome, moved.quota, moved.lockout_started) == ("suspected", "sequence", True)
    now += 2 * DAY  # past the lockout and the day window
    ask("y", 2, 10, now)
    ask("y", 3, 10, now)
    assert ask("gp", 2, 11, now + 1.0).quota is None  # under the quota again
    again = ask("bot", 3, 11, now + 1.0)
    assert (again.outcome, again.quota, again.limit) == ("reason_required", "sequence", 0)


def test_unlock_forgets_that_an_account_walked(engine: Engine) -> None:
    run, now = uuid.uuid4().hex[:8], T0
    for step in range(1, 40):  # "a" alone next to "x"'s patients, a fresh cohort each time
        engine.decide(_request(run, "x", 100 + step, 10, now))
        decision = engine.decide(_request(run, "a", 100 + step, 11, now + 1.0))
        now += 60.0
        if decision.quota == "sequence":
            break
    assert decision.quota == "sequence"
    engine.unlock(f"{run}-a", POLICY._compiled)
    now += 2 * DAY  # past the day window: the week's holds Z2 - 1, under the test
    engine.decide(_request(run, "x", 1, 5, now))
    after = engine.decide(_request(run, "a", 1, 6, now + 1.0))
    assert (after.outcome, after.quota) == ("allowed", None)


def test_twins_and_a_practice_s_own_neighbours_are_no_evidence(engine: Engine) -> None:
    run, now = uuid.uuid4().hex[:8], T0
    for order in range(1, 41):  # one account looks up a whole run of one cohort
        decision = engine.decide(_request(run, "gp", 0, order, now))
        assert decision.outcome == "allowed"
        now += 60.0
    # another account next to them: the portal saw them, they are not its own
    outcomes = [engine.decide(_request(run, "other", 0, order, now)).quota for order in (41, 43)]
    assert outcomes == [None, None]  # counted, under the quota


def test_the_neighbours_are_forgotten_after_the_heat_window(engine: Engine) -> None:
    run, now = uuid.uuid4().hex[:8], T0
    for order in range(1, 30, 2):  # account "a" takes the odd numbers
        assert engine.decide(_request(run, "a", 0, order, now)).outcome == "allowed"
    now += HOT + 1.0  # the heat window later nobody remembers them: "b" walks the even ones
    for order in range(2, 30, 2):
        assert engine.decide(_request(run, "b", 0, order, now)).outcome == "allowed"
        now += 1.0


# -- the properties the signal is for ----------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    accounts=st.integers(2, 19),
    cohorts=st.integers(2, 16),
    step=st.sampled_from([120.0, 300.0, 900.0, 1800.0]),
)
def test_a_walk_shared_over_n_accounts_always_trips_each_account(
    accounts: int, cohorts: int, step: float
) -> None:
    """A walk of ``cohorts`` cohorts at once (round robin, one number every ``step``
    seconds), each account taking the next number in turn: every account is refused
    within K new patients of its own, K = twice its share of the first round (nobody
    next to anyone yet) plus the sign test's least evidence (:data:`Z2`). The walk's
    round takes a quarter of the heat window to all of it: a cohort's previous number
    is still remembered, the controls (``d`` >= 4 numbers back) are not. Excluded: each
    account walking its own cohorts faster than twins (the ``cohort`` quota's case)."""
    round_ = cohorts * step
    assume(HOT / SPACING[0] < round_ < HOT)
    assume(cohorts % accounts != 0 or round_ >= TWINS)
    engine = MemoryEngine(lambda: T0, prefix="seq")
    names = [f"a{i}" for i in range(accounts)]
    refused, got, _ = _walk(engine, "w", names, cohorts, step, T0, orders=999)
    assert len(refused) == accounts
    assert max(got.values()) <= 2 * -(-cohorts // accounts) + Z2


def _random_week(seed: int, per_day: int, accounts: int = 40, cohorts: int = 40) -> int:
    """A week of ``accounts`` accounts, ``per_day`` new patients a day each, at random over
    ``cohorts`` full cohorts (999 people each), in office hours, under the default's
    values: how many lookups ``sequence`` refused."""
    policy = sequence_policy("6/day;8/7 days", share=0.3, heat=None)
    engine = MemoryEngine(lambda: T0, prefix="legit")
    rng = random.Random(seed)
    now, refused, daily = T0, 0, accounts * per_day
    for _ in range(7):
        for _ in range(daily):
            who, cohort, order = (
                rng.randrange(accounts),
                rng.randrange(cohorts),
                rng.randint(1, 999),
            )
            request = Request(
                f"gp{who}", policy._compiled, _label("p", cohort, order), f"c{cohort}",
                now=now, neighbours=_probes("p", cohort, order),
            )  # fmt: skip
            refused += engine.decide(request).quota == "sequence"
            now += DAY / daily / 2  # the day's lookups in half of it
        now += DAY / 2
    return refused


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_lookups_of_a_practice_never_trip(seed: int) -> None:
    """40 accounts, 10 new patients a day each (a GP's usual), over 40,000 people: 1% of
    them a day."""
    assert _random_week(seed, 10) == 0


def test_random_lookups_on_a_portal_as_dense_as_a_national_one_do_not_trip() -> None:
    """40 busy accounts, 30 new patients a day each, over 4,000 people: 30% of them a day,
    twice a national portal's share, so that a new patient's neighbour was seen within
    the day about half the time. The neighbour alone (the rule before the control)
    refused most of these accounts; against the control, none in 10 weeks (400
    account-weeks)."""
    assert sum(_random_week(seed, 30, cohorts=4) for seed in range(10)) == 0


# -- the guard's side and the policy -------------------------------------------------------------


def _nir(body: str) -> str:
    return f"{body}{compute_key(body):02d}"


def test_the_guard_sends_the_probes_pseudonyms_fingerprints_only() -> None:
    patients = Pseudonymiser(SecretKey.generate("k2026"), purpose="guard")
    nir = _nir("1850578006084")
    patient = patients.pseudonymise_canonical(nir)
    d = spacing(patient)
    assert SPACING[0] <= d <= SPACING[1]
    near = neighbours(patients, nir, patient)
    expected = b"".join(
        fingerprint(patients.pseudonymise_canonical(_nir(f"1850578006{m:03d}")))
        for m in (83, 85, 84 - d, 84 + d)
    )
    assert near == expected and len(near) == 24
    assert b"084" not in near and nir.encode() not in near
    first = _nir("1850578006001")
    probes = neighbours(patients, first, patients.pseudonymise_canonical(first))
    assert probes[:6] == ABSENT and probes[12:18] == ABSENT  # no order 000 or below
    last = _nir("1850578006999")
    probes = neighbours(patients, last, patients.pseudonymise_canonical(last))
    assert probes[6:12] == ABSENT and probes[18:] == ABSENT  # no order 1000 or above
    corsica = _nir("185052A010002")
    probes = neighbours(patients, corsica, patients.pseudonymise_canonical(corsica))
    assert probes[:6] != ABSENT and probes[6:12] != ABSENT  # 2A: keys computed as 19


def test_the_control_s_distance_is_keyed_and_spread() -> None:
    """Another key gives other distances, and every distance of :data:`SPACING` occurs
    about as often: an attacker who reads the code cannot tell which numbers to walk."""
    nirs = [_nir(f"1850578006{m:03d}") for m in range(1, 501)]
    one, two = (Pseudonymiser(SecretKey.generate(k), purpose="guard") for k in ("k1", "k2"))
    first = [spacing(one.pseudonymise_canonical(n)) for n in nirs]
    second = [spacing(two.pseudonymise_canonical(n)) for n in nirs]
    assert sum(a != b for a, b in zip(first, second)) > 300
    width = SPACING[1] - SPACING[0] + 1
    assert all(60 < first.count(d) < 140 for d in range(SPACING[0], SPACING[1] + 1)), width
    assert spacing("not-a-hex-pseudonym") in range(SPACING[0], SPACING[1] + 1)


def test_a_guard_refuses_a_walk_shared_by_accounts_and_alerts() -> None:
    """Five accounts share a walk of 16 cohorts, a lookup every 5 minutes."""
    t = [T0]
    guard = LookupGuard(
        policy=POLICY,
        storage="memory://",
        pseudonymiser=Pseudonymiser(SecretKey.generate("k2026"), purpose="guard"),
        clock=lambda: t[0],
    )
    refused, signals, turn = set(), [], 0
    for order in range(1, 40):
        for cohort in range(16):
            who = f"acct{turn % 5}"
            turn += 1
            try:
                with guard.lookup(who, _nir(f"2920375{100 + cohort:03d}{order:03d}")):
                    pass
            except EnumerationSuspected as exc:
                signals.append(exc.signal)
                refused.add(who)
            except PractitionerLocked:
                assert who in refused
            t[0] += 300.0
    assert refused == {f"acct{i}" for i in range(5)}
    assert set(signals) == {"sequence"}


def test_the_policy_checks_its_fields() -> None:
    with pytest.raises(PolicyError, match="sequence needs hot_cohort"):
        QuotaPolicy.only(sequence="5/day")
    with pytest.raises(PolicyError, match="sequence_share"):
        QuotaPolicy(sequence="5/day", sequence_share=1.5)
    with pytest.raises(PolicyError):
        QuotaPolicy(sequence="five a day")
    assert QuotaPolicy(sequence="5/day")._compiled.sequence[0].amount == 5
    # on by default (the control holds at a national portal's density), its share 0.3
    assert QuotaPolicy().sequence == "6/day;8/7 days"
    assert [w.amount for w in QuotaPolicy()._compiled.sequence] == [6, 8]
    assert QuotaPolicy().sequence_share == 0.3
    assert QuotaPolicy(sequence=None)._compiled.sequence == ()
    assert QuotaPolicy(hot_cohort=None)._compiled.sequence == ()
    assert QuotaPolicy(hot_cohort=None)._compiled.lua_policy.split("|")[30] == ""  # Lua too (31st)
    assert profiles.desk().sequence is None
    assert "5/86400" in QuotaPolicy(sequence="5/day")._compiled.lua_policy


@pytest.mark.redis
def test_the_account_record_grows_by_its_counters_only(redis_url: str) -> None:
    """Nothing more is kept portal-wide (the cohorts' heat already remembers who it saw);
    an account record holds three counts and an end per window (``MEMORY USAGE``:
    96 bytes more, 424 against 328, under the shipped values)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    sizes: dict[bool, int] = {}
    try:
        for on in (False, True):
            policy = QuotaPolicy(sequence="6/day;8/7 days" if on else None, sequence_share=0.3)
            prefix = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
            engine = redis_engine(redis_url, prefix)
            try:
                now = T0
                for i in range(60):  # a GP's two days of new patients
                    cohort, order = i % 30, 1 + 2 * (i // 30)
                    near = _probes("m", cohort, order)
                    request = Request(
                        "dr", policy._compiled, _label("m", cohort, order), f"m-{cohort}",
                        now=now, neighbours=near if on else b"",
                    )  # fmt: skip
                    assert engine.decide(request).outcome == "allowed"
                    now += 900.0
                keys = Keys(prefix, "dr", None, policy._compiled.heat_suffix)
                sizes[on] = client.memory_usage(keys.account, samples=0) or 0
            finally:
                engine.close()
                cleanup(redis_url, prefix)
    finally:
        client.close()
    assert 0 < sizes[True] - sizes[False] <= 160, sizes
