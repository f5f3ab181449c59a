"""The ``sequence`` signal: new patients next to people the portal saw lately.

An enumerator walks a cohort's order numbers (001, 002, 003 ...); spread over
many stolen accounts and many cohorts at once, each account sees about one
person per cohort and no cohort looks hot, but the walk still shows at the
portal: the people of one cohort are looked up **in order**, each next to one
looked up a moment before, by another account. Legitimate lookups land on
order numbers at random, so a new patient is rarely next to someone the
portal saw within the heat window (the share of the population looked up in a
day, times two: about 5% on the replay's portal).

How it is kept pseudonymous and cheap:

* the guard computes the two neighbours of the patient's number (the same
  cohort, order ``n - 1`` and ``n + 1``, their control keys recomputed) and
  sends the 6-byte fingerprints of their **patient pseudonyms**
  (:attr:`~nirguard._engine.Request.neighbours`): never an order number or a NIR;
* the cohort's heat record already remembers, by the same fingerprints, the
  people of the cohort new to some account within ``hot_cohort_window``
  (docs/guard.md, "Hot cohorts"): the heat step reads whether a neighbour is
  there (:func:`near`). Nothing more is stored portal-wide;
* the account step drops the neighbours the account itself looked up within the
  last ten minutes (twins are looked up together: :func:`own`), then counts, per account,
  its new patients still next to someone (``sequence``, windows in the account
  record) and the new patients of the same windows (``sequence_new``).

A new patient next to someone breaches when the count passes the quota **and**
is at least ``sequence_share`` of the account's new patients in the window: a
walker's are nearly all next to someone, a practice's a few percent. Both
counts share one fixed window per rate, which starts at the first new patient.

An account that ``sequence`` locked is remembered for ``lockout_memory``
(:data:`HISTORY` in its record, written by the lockout): its evidence is already in, so
its next new patient next to someone breaches again, with no new quota's worth of
fresh evidence. A question answered with a reason is not remembered: a GP who
states one for a patient next to someone is judged on the quota and share again. Without it a walk that waits out the one-day lockout comes back to
cohorts whose neighbours have aged out of ``hot_cohort_window`` and needs a
quota and a share of new evidence, a second round of identities, before it is
seen again.

The Redis twin is ``seq_*`` in ``_records.lua`` and ``_account.lua``; on a
Cluster the heat step's answer (which neighbours it saw) reaches the account
step of the same lookup, in the second call's arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from nirguard._engine import fingerprint
from nirguard._memory_account import SEQUENCE_HISTORY, Breach

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy, Window
    from nirguard._engine import Decision
    from nirguard._memory_records import Heat, Recent
    from nirguard.pseudonym import Pseudonymiser

__all__ = ["HISTORY", "TWINS", "check", "count", "near", "neighbours", "own"]

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


def neighbours(patients: Pseudonymiser, canonical: str) -> bytes:
    """The fingerprints of the patient pseudonyms of the two numbers next to
    ``canonical`` in its cohort (order ``n - 1`` then ``n + 1``, those in 001-999),
    concatenated: 6 or 12 bytes. Nothing of the number itself."""
    prefix, order = canonical[:10], int(canonical[10:13])
    place = canonical[5:7]
    # the body as a number (2A read as 19, 2B as 18: docs/rules.md), without its order
    base = int(prefix[:5] + _CORSICA.get(place, place) + prefix[7:]) * 1000
    out = b""
    for other in (order - 1, order + 1):
        if 1 <= other <= 999:
            key = 97 - (base + other) % 97
            out += fingerprint(patients.pseudonymise_canonical(f"{prefix}{other:03d}{key:02d}"))
    return out


def near(heat: Heat | None, fps: bytes, base: Decision, now: float) -> None:
    """Which neighbours the cohort's heat saw within its window, as bits of
    ``base.adjacent`` (1: the first of ``fps``, 2: the second)."""
    if heat is None:
        return
    seen, mask = heat.seen, 0
    for i in range(0, len(fps) - FP + 1, FP):
        if seen.get(fps[i : i + FP], 0.0) > now:
            mask |= 1 << (i // FP)
    base.adjacent = mask


def own(base: Decision, recent: Recent, p: CompiledPolicy, fps: bytes, now: float) -> bool:
    """Whether a neighbour the portal saw is evidence: somebody else's patient, or the
    account's own looked up at least :data:`TWINS` ago (twins are looked up together;
    an account walking its own cohorts side by side is not)."""
    mask = base.adjacent
    if not mask:
        return False
    # an own patient's entry ends p.seen after it was looked up
    latest, seen = now + max(0.0, p.seen - TWINS), recent.seen
    for i in range(0, len(fps) - FP + 1, FP):
        if mask & (1 << (i // FP)) and seen.get(fps[i : i + FP], 0.0) <= latest:
            return True
    return False


def _window(record: dict[str, Any], sw: Window, nw: Window, now: float) -> tuple[int, int]:
    """New patients next to someone, and new patients, in one window. The two counts
    share one window, ``nw``'s (it starts at the first new patient): a share of counts
    over windows that started at different times would mean nothing."""
    if record.get(nw.ends, 0.0) > now:
        return int(record.get(sw.field, 0)), int(record.get(nw.field, 0))
    return 0, 0


def check(record: dict[str, Any], p: CompiledPolicy, adjacent: bool, now: float) -> Breach | None:
    """The breach of a new patient next to someone: past the quota, and at least
    ``sequence_share`` of the account's new patients of the window; or at once, when
    ``sequence`` locked the account within ``lockout_memory`` (limit 0)."""
    if not adjacent:
        return None
    for sw, nw in zip(p.sequence, p.sequence_new, strict=True):
        walked, new = _window(record, sw, nw, now)
        if walked + 1 > sw.amount and walked + 1 >= p.sequence_share * (new + 1):
            return "sequence", walked + 1, sw.amount
    if record.get(HISTORY, 0.0) > now:
        return "sequence", _window(record, p.sequence[0], p.sequence_new[0], now)[0] + 1, 0
    return None


def count(
    record: dict[str, Any],
    changes: dict[str, Any],
    p: CompiledPolicy,
    adjacent: bool,
    now: float,
) -> None:
    """Count a new patient let through (next to someone or not) in the account record."""
    for sw, nw in zip(p.sequence, p.sequence_new, strict=True):
        walked, new = _window(record, sw, nw, now)
        if record.get(nw.ends, 0.0) <= now:
            changes[nw.ends] = now + nw.seconds
        changes[nw.field] = new + 1
        changes[sw.field] = walked + (1 if adjacent else 0)
