"""The ``sequence`` signal: new patients next to people the portal saw lately,
compared with a keyed control.

An enumerator walks a cohort's order numbers (001, 002, 003 ...); spread over
many stolen accounts and many cohorts at once, each account sees about one
person per cohort and no cohort looks hot, but the walk still shows at the
portal: the people of one cohort are looked up **in order**, each next to one
looked up a moment before, by another account. Legitimate lookups land on
order numbers at random, so a new patient is next to someone the portal saw
within the heat window about as often as any other number of its cohort is:
a few percent on a small portal, about 0.3 on a national one.

So each new patient is compared with a **control**: two numbers of the same
cohort, ``d`` away (order ``n - d`` and ``n + d``, ``d`` in :data:`SPACING`, chosen
by a byte of the patient's keyed pseudonym: nobody without the key knows it).
Per new patient, ``nb`` says a neighbour is evidence and ``ctl`` that a control
is (the same rule, :func:`own`). Under legitimate traffic the two are
exchangeable; a walk that looks up a cohort a few numbers a window makes
``nb`` nearly always true and ``ctl`` no likelier than for anyone (to cancel
the control it must look up ``d`` numbers around each patient within the
window, which is what heats a cohort). The account counts, per window, the
discordant new patients: ``nb`` only and ``ctl`` only. A new patient with a
neighbour only breaches when the excess ``e = nb_only - ctl_only`` (this one
counted) passes the quota, a one-sided sign test (McNemar: ``e * e >= Z2 *
(nb_only + ctl_only)``, z = 4) **and** ``sequence_share`` of the window's new
patients (a bias that grows with the count, such as the controls that fall
outside a small cohort more often than the neighbours, is held by the share;
chance, which grows with its square root, by the test).

How it is kept pseudonymous and cheap:

* the guard computes the four probes (their control keys recomputed) and sends
  the 6-byte fingerprints of their **patient pseudonyms**
  (:attr:`~nirguard._engine.Request.neighbours`, :data:`ABSENT` for a number
  outside 001-999): never an order number or a NIR; the cohort is the patient's,
  so the probes read the same heat key (one slot, one call);
* the cohort's heat record already remembers, by the same fingerprints, the
  people of the cohort new to some account within ``hot_cohort_window``
  (docs/guard.md, "Hot cohorts"): the heat step reads which probes are there
  (:func:`near`). Nothing more is stored portal-wide;
* the account step drops the probes the account itself looked up within the
  last ten minutes (twins are looked up together: :func:`own`), then counts, per
  account, its new patients with a neighbour only (``sequence``), with a control
  only (``sequence_ctl``) and all its new patients (``sequence_new``); the three
  share one fixed window per rate, which starts at the first new patient.

An account that ``sequence`` locked is remembered for ``lockout_memory``
(:data:`HISTORY` in its record, written by the lockout): its evidence is already
in, so its next new patient with a neighbour only breaches again, with no new
quota's worth of fresh evidence. A question answered with a reason is not
remembered: a GP who states one is judged on the quota, the test and the share
again. Without it a walk that waits out the one-day lockout comes back to
cohorts whose neighbours have aged out of ``hot_cohort_window`` and needs a
quota of new evidence, a second round of identities, before it is seen again.

The Redis twin is ``seq_*`` in ``_sequence.lua`` (called by ``_records.lua``,
``_admit.lua`` and ``_account.lua``); on a Cluster the heat step's answer (which probes it saw) reaches the account
step of the same lookup, in the second call's arguments.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Final

from nirguard._memory_account import SEQUENCE_HISTORY, Breach
from nirguard.pseudonym import fingerprints_canonical

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy
    from nirguard._engine import Decision
    from nirguard._memory_records import Heat, Recent
    from nirguard.pseudonym import Pseudonymiser

__all__ = [
    "ABSENT",
    "CONTROL",
    "HISTORY",
    "NEIGHBOUR",
    "SPACING",
    "TWINS",
    "Z2",
    "check",
    "count",
    "near",
    "neighbours",
    "own",
    "spacing",
]

#: Bytes of one neighbour's fingerprint in :attr:`Request.neighbours`.
FP: Final = 6
_CORSICA: Final = {"2A": "19", "2B": "18"}
#: Seconds within which an account's own neighbours are twins (looked up together), not
#: evidence; ``_sequence.lua`` agrees.
TWINS: Final = 600.0
#: The account record's field that says until when the account is remembered as one that
#: ``sequence`` locked (``lockout_memory`` after the lockout, written by the account step's
#: ``lock``); ``unlock()`` forgets it.
HISTORY: Final = SEQUENCE_HISTORY
#: The fingerprint that stands for a number outside 001-999 (no record holds it).
ABSENT: Final = bytes(FP)
#: The lowest and highest distance of the control probes from the patient's number.
SPACING: Final = (4, 8)
#: The sign test's z, squared (``_sequence.lua`` agrees): the excess ``e`` of new patients
#: with a neighbour only over those with a control only breaches when ``e * e >= Z2 * n``,
#: ``n`` the two counts' sum (one-sided, z = 4).
Z2: Final = 16
#: The order numbers 000-999 and the check keys 00-97, as the ASCII bytes of a NIR.
_ORDERS: Final = tuple(b"%03d" % m for m in range(1000))
_CHECKS: Final = tuple(b"%02d" % k for k in range(98))
#: :func:`own`'s answer: a neighbour is evidence (bit 1), a control is (bit 2).
NEIGHBOUR: Final = 1
CONTROL: Final = 2


def spacing(patient: str) -> int:
    """The keyed distance ``d`` of a patient's control probes, :data:`SPACING` apart from
    the lowest: from a byte of its pseudonym that its fingerprint does not hold, so that
    nobody without the key knows it (and no record reveals it). With ``b`` the byte
    written by the pseudonym's hex digits ``[-14:-12]`` (a label without them: the
    first byte of its BLAKE2b), ``d = 4 + b mod 5``: the guards of every process, old and
    new, probe the same controls.

    >>> spacing("k1:" + "0" * 50 + "07" + "0" * 12)
    6
    """
    try:
        byte = int(patient[-14:-12], 16)
    except ValueError:
        byte = hashlib.blake2b(patient.encode(), digest_size=1).digest()[0]
    return SPACING[0] + byte % (SPACING[1] - SPACING[0] + 1)


def neighbours(patients: Pseudonymiser, canonical: str, patient: str) -> bytes:
    """The fingerprints of the patient pseudonyms of four numbers of ``canonical``'s
    cohort: its neighbours (order ``n - 1``, ``n + 1``) then its controls (``n - d``,
    ``n + d``, ``d`` from :func:`spacing` of ``patient``, its pseudonym), concatenated:
    24 bytes, :data:`ABSENT` for a number outside 001-999. Nothing of the number itself.

    >>> from nirguard import Pseudonymiser, SecretKey
    >>> from nirguard._engine import fingerprint
    >>> p = Pseudonymiser(SecretKey(bytes(range(32)), "k"), purpose="guard")
    >>> near = neighbours(p, "185057800608491", p.pseudonymise_canonical("185057800608491"))
    >>> n = 1850578006085  # the body of the next order number, 085
    >>> len(near), near[6:12] == fingerprint(p.pseudonymise_canonical(f"{n}{97 - n % 97:02d}"))
    (24, True)
    """
    order = int(canonical[10:13])
    place = canonical[5:7]
    # the body as a number (2A read as 19, 2B as 18: docs/rules.md), without its order
    rest = int(canonical[:5] + _CORSICA.get(place, place) + canonical[7:10]) * 1000 % 97
    prefix = canonical[:10].encode()
    d = spacing(patient)
    probes = [  # a list, not a generator: resuming one costs more than the list
        prefix + _ORDERS[m] + _CHECKS[97 - (rest + m) % 97] if 1 <= m <= 999 else None
        for m in (order - 1, order + 1, order - d, order + d)
    ]
    return fingerprints_canonical(patients, probes, ABSENT)


def near(heat: Heat | None, fps: bytes, base: Decision, now: float) -> None:
    """Which of the four probes the cohort's heat saw within its window, as bits of
    ``base.adjacent`` (1, 2: the neighbours; 4, 8: the controls)."""
    if heat is None:
        return
    seen, mask = heat.seen, 0
    for i in range(0, len(fps) - FP + 1, FP):
        if seen.get(fps[i : i + FP], 0.0) > now:
            mask |= 1 << (i // FP)
    base.adjacent = mask


def own(base: Decision, recent: Recent, p: CompiledPolicy, fps: bytes, now: float) -> int:
    """Which probes the portal saw are evidence: somebody else's patient, or the
    account's own looked up at least :data:`TWINS` ago (twins are looked up together;
    an account walking its own cohorts side by side is not). :data:`NEIGHBOUR` when a
    neighbour is, plus :data:`CONTROL` when a control is."""
    mask = base.adjacent
    if not mask:
        return 0
    # an own patient's entry ends p.seen after it was looked up
    latest, seen, found = now + max(0.0, p.seen - TWINS), recent.seen, 0
    for i in range(0, len(fps) - FP + 1, FP):
        if mask & (1 << (i // FP)) and seen.get(fps[i : i + FP], 0.0) <= latest:
            found |= NEIGHBOUR if i < 2 * FP else CONTROL
    return found


def _window(record: dict[str, Any], p: CompiledPolicy, i: int, now: float) -> tuple[int, int, int]:
    """New patients with a neighbour only, with a control only, and new patients, in
    window ``i``. The three share one window, ``sequence_new``'s (it starts at the first
    new patient): counts over windows that started at different times would not compare."""
    nw = p.sequence_new[i]
    if record.get(nw.ends, 0.0) > now:
        get = record.get
        return (
            int(get(p.sequence[i].field, 0)),
            int(get(p.sequence_ctl[i].field, 0)),
            int(get(nw.field, 0)),
        )
    return 0, 0, 0


def check(record: dict[str, Any], p: CompiledPolicy, found: int, now: float) -> Breach | None:
    """The breach of a new patient with a neighbour but no control as evidence: the
    excess of such patients over those with a control only passes the quota, the
    sign test (:data:`Z2`) and ``sequence_share`` of the window's new patients; or at
    once, when ``sequence`` locked the account within ``lockout_memory``. Its count and
    limit are the window's patients with a neighbour only and with a control only."""
    if found != NEIGHBOUR:
        return None
    for i, sw in enumerate(p.sequence):
        nb, ctl, new = _window(record, p, i, now)
        excess = nb + 1 - ctl
        tested = excess * excess >= Z2 * (nb + 1 + ctl)
        if excess > sw.amount and tested and excess >= p.sequence_share * (new + 1):
            return "sequence", nb + 1, ctl
    if record.get(HISTORY, 0.0) > now:
        nb, ctl, _ = _window(record, p, 0, now)
        return "sequence", nb + 1, ctl
    return None


def count(
    record: dict[str, Any],
    changes: dict[str, Any],
    p: CompiledPolicy,
    found: int,
    now: float,
) -> None:
    """Count a new patient let through: with a neighbour only, a control only, or neither
    (or both) as evidence. A count is written when it changes (the window's first new
    patient resets all three); the record ends as ``seq_count`` leaves it."""
    get = record.get
    for sw, cw, nw in zip(p.sequence, p.sequence_ctl, p.sequence_new, strict=True):
        if get(nw.ends, 0.0) > now:
            changes[nw.field] = int(get(nw.field, 0)) + 1
            if found == NEIGHBOUR:
                changes[sw.field] = int(get(sw.field, 0)) + 1
            elif found == CONTROL:
                changes[cw.field] = int(get(cw.field, 0)) + 1
        else:
            changes[nw.ends] = now + nw.seconds
            changes[nw.field] = 1
            changes[sw.field] = int(found == NEIGHBOUR)
            changes[cw.field] = int(found == CONTROL)
