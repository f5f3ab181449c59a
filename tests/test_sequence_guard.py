"""The ``sequence`` signal from the guard's side: the probes it sends (the pseudonyms'
fingerprints, never a number), the control's keyed distance, a guard refusing a walk
shared by accounts; the policy's checks of its fields; and what the signal adds to an
account's record on Redis.
"""

from __future__ import annotations

import uuid

import pytest

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey, profiles
from nirguard._engine import Keys, Request, fingerprint
from nirguard._sequence import ABSENT, SPACING, neighbours, spacing
from nirguard.errors import EnumerationSuspected, PolicyError, PractitionerLocked
from nirguard.nir import compute_key
from tests.engine_helpers import T0, cleanup, redis_engine
from tests.redis_helpers import WORKER_PREFIX
from tests.sequence_helpers import POLICY, label, probes


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
                    near = probes("m", cohort, order)
                    request = Request(
                        "dr", policy._compiled, label("m", cohort, order), f"m-{cohort}",
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
