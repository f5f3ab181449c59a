"""The ``sequence`` signal's documented edges, which the model tests of
``tests/test_sequence_model.py`` reach only by chance (found by mutation testing,
docs/testing.md): twins, the exact ends of the heat and of the window, the share,
what a breach by the account's history reports, the last order number, and how the
control's distance is drawn from the pseudonym.

The scenarios give every new patient no control (the control probes are
:data:`ABSENT`), so that a neighbour seen by somebody else is the only evidence: the
sign test then needs :data:`Z2` new patients with a neighbour only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from nirguard import Pseudonymiser, QuotaPolicy, SecretKey
from nirguard._engine import Decision, Engine, Request, fingerprint
from nirguard._sequence import ABSENT, SPACING, TWINS, Z2, neighbours, spacing
from nirguard.nir import compute_key
from tests.engine_helpers import DAY, ENGINES, HOUR, T0, engines, sequence_policy

LIMIT = 3
HOT = 2 * HOUR


def _policy(share: float = 0.5, seen: str = "7 days", limit: int = LIMIT) -> QuotaPolicy:
    """One window (a day) of ``limit``, ``share``, a heat that never turns hot and only
    remembers whom it saw for :data:`HOT`; new patients known for ``seen``."""
    return sequence_policy(f"{limit}/day", share=share, seen=seen)


POLICY = _policy()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from engines(request)


class Portal:
    """Lookups on one engine under one policy, by short labels (``run`` keeps them apart)."""

    def __init__(self, engine: Engine, policy: QuotaPolicy = POLICY) -> None:
        self.engine, self.policy, self.run = engine, policy, uuid.uuid4().hex[:8]

    def label(self, cohort: int, order: int) -> str:
        return f"{self.run}-c{cohort}-{order:03d}"

    def ask(self, who: str, cohort: int, order: int, now: float, control: int = 0) -> Decision:
        """A lookup whose probes are its two neighbours and, as its control, number
        ``control`` of the cohort (none when 0)."""
        orders = (order - 1, order + 1, control)
        near = b"".join(fingerprint(self.label(cohort, m)) if m else ABSENT for m in orders)
        request = Request(
            f"{self.run}-{who}", self.policy._compiled, self.label(cohort, order),
            f"{self.run}-cohort-{cohort}", now=now, neighbours=near + ABSENT,
        )  # fmt: skip
        return self.engine.decide(request)

    def next_to_x(self, who: str, cohort: int, at: float, wait: float = 1.0) -> Decision:
        """``x`` looks up number 10 of ``cohort`` at ``at``, ``who`` number 11 ``wait`` later."""
        assert self.ask("x", cohort, 10, at).outcome == "allowed"
        return self.ask(who, cohort, 11, at + wait)

    def breach(self, who: str, cohort: int, now: float) -> tuple[int | None, int | None]:
        """``who``'s next new patient with a neighbour only (:meth:`next_to_x`) breaches
        ``sequence``: the breach's count and limit."""
        decision = self.next_to_x(who, cohort, now)
        assert (decision.outcome, decision.quota) == ("suspected", "sequence")
        return decision.count, decision.limit

    def controls(self, who: str, seen: tuple[int, ...], now: float) -> float:
        """``x`` looks up numbers ``seen`` of cohorts 300 and 301, ``who`` number 11 of
        each a second later with number 20 as its control, let through; the time after."""
        for cohort in (300, 301):
            for order in seen:
                assert self.ask("x", cohort, order, now).outcome == "allowed"
            assert self.ask(who, cohort, 11, now + 1.0, control=20).quota is None
            now += 60.0
        return now

    def evidence(self, who: str, n: int, first: int, now: float) -> float:
        """``who`` gets ``n`` new patients with a neighbour only, one a minute, in fresh
        cohorts from ``first``, all let through; the time after."""
        for cohort in range(first, first + n):
            decision = self.next_to_x(who, cohort, now)
            assert (decision.outcome, decision.quota) == ("allowed", None)
            now += 60.0
        return now


def test_the_sign_test_alone_holds_a_walk_under_z2(engine: Engine) -> None:
    """The setting of the tests below: Z2 - 1 new patients with a neighbour only pass
    (over the quota, under the test), the Z2-th breaches and reports them all."""
    portal = Portal(engine)
    now = portal.evidence("a", Z2 - 1, 100, T0)
    assert portal.breach("a", 200, now) == (Z2, 0)


def test_the_upper_neighbour_is_evidence_as_the_lower_is(engine: Engine) -> None:
    """A walk down a cohort: each new patient next to number ``n + 1``, seen by somebody
    else; no control seen. The Z2-th breaches as a walk up does."""
    portal = Portal(engine)
    now = T0
    for cohort in range(Z2):
        assert portal.ask("x", cohort, 12, now).outcome == "allowed"
        decision = portal.ask("a", cohort, 11, now + 1.0)
        now += 60.0
    assert (decision.outcome, decision.quota) == ("suspected", "sequence")
    assert (decision.count, decision.limit) == (Z2, 0)


def test_twins_looked_up_together_are_no_evidence(engine: Engine) -> None:
    """A practice looks up numbers 10 and 11 of fresh cohorts together: 11 is next to the
    account's own patient of a moment ago (a twin), which is no evidence however often."""
    portal = Portal(engine)
    now = T0
    for cohort in range(3 * Z2):
        assert portal.ask("gp", cohort, 10, now).outcome == "allowed"
        assert (portal.ask("gp", cohort, 11, now + 1.0).quota) is None
        now += 60.0


def test_an_own_patient_the_account_still_knows_is_a_twin(engine: Engine) -> None:
    """New patients known for 5 minutes only, under :data:`TWINS`: an own patient looked
    up 299.5 s ago (still known) is a twin, however close to its end; one looked up
    more than ``TWINS`` ago is somebody the account forgot, and is evidence."""
    portal = Portal(engine, _policy(share=0.0, seen="5 minutes"))  # no share to pass
    assert TWINS > 300.0
    now = T0
    for cohort in range(2 * Z2):
        assert portal.ask("gp", cohort, 10, now).outcome == "allowed"
        assert portal.ask("gp", cohort, 11, now + 299.5).quota is None
        now += 600.0
    for cohort in range(100, 100 + Z2):  # forgotten own patients: evidence
        portal.ask("gp2", cohort, 10, now)
        decision = portal.ask("gp2", cohort, 11, now + TWINS + 1.0)
        now += 2 * TWINS
    assert (decision.outcome, decision.quota, decision.count) == ("suspected", "sequence", Z2)


def test_an_own_patient_looked_up_twins_ago_is_evidence(engine: Engine) -> None:
    """An account's own patient looked up :data:`TWINS` ago or more is evidence (an
    account walking its own cohorts side by side), one looked up a second less long ago
    is a twin."""
    for wait, breach in ((TWINS - 1.0, False), (TWINS, True)):
        portal = Portal(engine, _policy(share=0.0))  # its own patients have no evidence
        now = T0
        for cohort in range(Z2):
            assert portal.ask("gp", cohort, 10, now).outcome == "allowed"
            decision = portal.ask("gp", cohort, 11, now + wait)
            now += 2 * TWINS
        assert (decision.quota == "sequence") is breach, wait
        assert decision.count == (Z2 if breach else None)


def test_a_neighbour_seen_exactly_the_heat_window_ago_is_forgotten(engine: Engine) -> None:
    """The heat remembers a person for ``hot_cohort_window``, its end excluded: a neighbour
    seen exactly that long ago is no evidence (the Z2-th neighbour does not breach),
    one seen a second less long ago is."""
    portal = Portal(engine)
    now = portal.evidence("a", Z2 - 1, 100, T0)
    assert portal.ask("x", 200, 10, now).outcome == "allowed"
    # somebody else looked up "a"'s patient a minute later: the heat, which knows it
    # already, is not touched by "a"'s lookup and still holds number 10's entry
    assert portal.ask("y", 200, 11, now + 60.0).outcome == "allowed"
    late = portal.ask("a", 200, 11, now + HOT)
    assert (late.outcome, late.quota) == ("allowed", None)
    now += HOT + 60.0
    decision = portal.next_to_x("a", 201, now, wait=HOT - 1.0)
    assert (decision.outcome, decision.quota, decision.count) == ("suspected", "sequence", Z2)


def test_the_window_ends_at_its_exact_end(engine: Engine) -> None:
    """The window starts at the first new patient and lasts its period, its end excluded:
    a new patient exactly a day after the first starts a new window."""
    portal = Portal(engine)
    portal.evidence("a", Z2 - 1, 100, T0 - 1.0)  # the first new patient at T0
    at_end = portal.next_to_x("a", 200, T0 + DAY - 1.0)
    assert (at_end.outcome, at_end.quota) == ("allowed", None)
    # ... and counts this patient: Z2 - 2 more pass, the next breaches with Z2
    now = portal.evidence("a", Z2 - 2, 300, T0 + DAY + 60.0)
    again = portal.next_to_x("a", 400, now)
    assert (again.outcome, again.quota, again.count) == ("suspected", "sequence", Z2)
    before = Portal(engine)
    before.evidence("a", Z2 - 1, 100, T0 - 1.0)
    inside = before.next_to_x("a", 200, T0 + DAY - 2.0)
    assert (inside.outcome, inside.quota, inside.count) == ("suspected", "sequence", Z2)


def test_the_share_holds_an_account_whose_new_patients_are_mostly_without_evidence(
    engine: Engine,
) -> None:
    """Under ``sequence_share`` 0.5, after 30 new patients with no evidence the excess must
    reach half of the window's new patients, this one counted: ``k >= 0.5 * (30 + k)``,
    so the 30th new patient with a neighbour only breaches, not the Z2-th."""
    portal = Portal(engine)
    now = T0
    for cohort in range(30):  # nobody next to them
        assert portal.ask("a", cohort, 500, now).outcome == "allowed"
        now += 60.0
    now = portal.evidence("a", 29, 100, now)
    assert portal.breach("a", 200, now) == (30, 0)


def test_new_patients_with_a_control_only_count_against_the_neighbours(
    engine: Engine,
) -> None:
    """Two new patients with a control only (somebody else saw number 20, 9 away; not 10
    or 12): the excess is ``k - 2`` and the sign test ``(k - 2)^2 >= Z2 * (k + 2)`` first
    holds at k = 22, which the breach reports as its count, the controls as its limit."""
    portal = Portal(engine)
    now = portal.controls("a", (20,), T0)  # only the control seen
    now = portal.evidence("a", 21, 100, now)
    assert portal.breach("a", 200, now) == (22, 2)


def test_a_new_patient_with_a_neighbour_and_a_control_counts_for_neither(
    engine: Engine,
) -> None:
    """Two new patients next to somebody else's patient with their control seen too
    (numbers 10 and 20): evidence both ways, counted as neither; the Z2-th new patient
    with a neighbour only then breaches as if they had not been, its limit 0."""
    portal = Portal(engine)
    now = portal.controls("a", (10, 20), T0)  # the neighbour and the control seen
    now = portal.evidence("a", Z2 - 1, 100, now)
    assert portal.breach("a", 200, now) == (Z2, 0)


def test_the_quota_must_be_exceeded_not_reached(engine: Engine) -> None:
    """Under a quota of ``Z2`` a day, the Z2-th new patient with a neighbour only passes
    (the excess equals the quota), the next breaches."""
    portal = Portal(engine, _policy(limit=Z2))
    now = portal.evidence("a", Z2, 100, T0)
    assert portal.breach("a", 200, now)[0] == Z2 + 1


def test_the_history_ends_lockout_memory_after_the_breach(engine: Engine) -> None:
    """The account is remembered as one that walked for ``lockout_memory`` (7 days) after
    its breach, the end excluded: its new patient with a neighbour only at the exact
    end is judged like anyone's, one a second earlier breaches at once."""
    ends = {}
    for late in (0.0, -1.0):
        portal = Portal(engine)
        now = portal.evidence("a", Z2 - 1, 100, T0)
        assert portal.next_to_x("a", 200, now - 1.0).quota == "sequence"  # breach at `now`
        ends[late] = portal.next_to_x("a", 300, now + 7 * DAY + late - 1.0)
    assert (ends[0.0].outcome, ends[0.0].quota) == ("allowed", None)
    assert (ends[-1.0].outcome, ends[-1.0].quota, ends[-1.0].limit) == (
        "suspected",
        "sequence",
        0,
    )


def test_a_breach_by_history_reports_this_patient_alone(engine: Engine) -> None:
    """Two days after its lockout (the window ended), the account that walked breaches at
    its next new patient with a neighbour only; the count is that patient, the limit 0."""
    portal = Portal(engine)
    now = portal.evidence("a", Z2 - 1, 100, T0)
    assert portal.next_to_x("a", 200, now).quota == "sequence"
    again = portal.next_to_x("a", 300, now + 2 * DAY)
    assert (again.outcome, again.quota) == ("suspected", "sequence")
    assert (again.count, again.limit) == (1, 0)


# -- the guard's probes -------------------------------------------------------------------------


def _nir(body: str) -> str:
    return f"{body}{compute_key(body):02d}"


PATIENTS = Pseudonymiser(SecretKey.generate("k2026"), purpose="guard")


def test_the_last_number_of_a_cohort_is_a_neighbour() -> None:
    """Order 999 exists (001-999): it is 998's upper neighbour, and 999 - d its control."""
    nir = _nir("1850578006998")
    patient = PATIENTS.pseudonymise_canonical(nir)
    probes = neighbours(PATIENTS, nir, patient)
    last = fingerprint(PATIENTS.pseudonymise_canonical(_nir("1850578006999")))
    assert probes[6:12] == last
    assert probes[18:] == ABSENT  # 998 + d >= 1002


def _d_of(patient: str, position: int, digit: str) -> int:
    return spacing(patient[:position] + digit + patient[position + 1 :])


def test_the_control_s_distance_is_one_byte_of_the_pseudonym_outside_its_fingerprint() -> None:
    """``d`` is read from one byte of the pseudonym (two hex digits at a byte's place)
    that its fingerprint (the last 12 digits) does not hold; its 256 values give each
    distance of :data:`SPACING` 51 or 52 times."""
    patients = [PATIENTS.pseudonymise_canonical(_nir(f"1850578006{m:03d}")) for m in range(1, 9)]
    size = len(patients[0])
    assert all(len(p) == size for p in patients)
    digits = "0123456789abcdef"
    moving: set[int] = set()
    for patient in patients:
        d = spacing(patient)
        for position in range(size):
            if patient[position] in digits and any(
                _d_of(patient, position, c) != d for c in digits
            ):
                moving.add(-(size - position))
    assert len(moving) == 2, sorted(moving)
    low, high = sorted(moving)
    assert high == low + 1 and low % 2 == 0 and high < -12  # one byte, not the fingerprint
    patient = patients[0]
    counts = {d: 0 for d in range(SPACING[0], SPACING[1] + 1)}
    for byte in range(256):
        tail = patient[high + 1 :]
        d = spacing(f"{patient[:low]}{byte:02x}{tail}")
        counts[d] = counts.get(d, 0) + 1
    assert sorted(counts.values()) == [51, 51, 51, 51, 52], counts


def test_the_control_s_distance_is_four_plus_the_byte_mod_five() -> None:
    """The documented mapping, byte by byte: guards of two releases probe the same
    controls only if it never changes."""
    patient = PATIENTS.pseudonymise_canonical(_nir("1850578006001"))
    for byte in range(256):
        assert spacing(f"{patient[:-14]}{byte:02x}{patient[-12:]}") == 4 + byte % 5


def test_a_label_that_is_no_pseudonym_still_gets_a_spread_distance() -> None:
    """A label with no hex digest (a test's, a derived purpose's) is hashed, like its
    fingerprint (:func:`nirguard._engine.fingerprint`): its distances are spread too."""
    found = [spacing(f"label-{i}") for i in range(500)]
    assert set(found) == set(range(SPACING[0], SPACING[1] + 1))
    assert all(60 < found.count(d) < 140 for d in set(found))
