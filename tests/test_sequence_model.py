"""The ``sequence`` signal: new patients next to people the portal saw lately, against
a keyed control; here, every engine (memory, Redis, Redis Cluster) against a small model
of the rule written from its documentation (docs/guard.md), on random traffic and on
walks. Its scenarios and properties: ``tests/test_sequence_walks.py``; the guard's side
and the policy: ``tests/test_sequence_guard.py``; its documented edges:
``tests/test_sequence_mutants.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nirguard._engine import Decision, Engine
from nirguard._sequence import TWINS, Z2
from tests.engine_helpers import DAY, ENGINES, HOUR, T0, engines
from tests.sequence_helpers import HOT, LIMIT, probe_orders, sequence_request

STEPS = (HOUR, DAY, None)  # the default lockout, then its escalation


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from engines(request)


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
        probes = probe_orders(cohort, order)
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
        decision = engine.decide(sequence_request(run, f"a{who}", cohort, order, now))
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
                decision = engine.decide(sequence_request(run, who, c, m, now))
                assert (decision.outcome, decision.quota or "") == model.look(who, c, m, now)
            who = f"a{turn % accounts}"
            turn += 1
            decision = engine.decide(sequence_request(run, who, cohort, order, now))
            assert (decision.outcome, decision.quota or "") == model.look(who, cohort, order, now)
            _check_evidence(decision)
            now += step
