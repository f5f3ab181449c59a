"""What the guard tells the portal at once: :class:`Alert`, :class:`Notice`, :class:`BreakGlass`.

An :class:`Alert` is a **case about one account**: it is raised once per
account per incident (the first lockout-class refusal or the first signal of
an account, see ``docs/guard.md``), carries the evidence and a stable
``case`` id that every event of the incident shares, in every process (the
audit events of the incident carry it too). A security office can open one
ticket per alert.

A :class:`Notice` is evidence about the **portal**, not about an account: a
birth cohort looked up far above its own baseline (``hot_cohort``). It never
names a practitioner: whoever tipped the count is not a suspect for that.

By default alerts go to the ``nirguard.alerts`` logger at ``WARNING`` and
notices to ``nirguard.notices`` at ``INFO`` (:func:`log_alert`,
:func:`log_notice`); pass your own hooks with ``LookupGuard(alert=...,
notice=...)``. Hooks run off the request path (``docs/guard.md``, *Hooks*).
Nothing here carries a NIR: counts, pseudonyms of cohorts, and practitioner
ids with any NIR-shaped run masked.

>>> case_id("dr-martin", 1767225600.0) == case_id("dr-martin", 1767225600.0)
True
>>> case_id("dr-martin", 1767225600.0) != case_id("dr-martin", 1767312000.0)
True
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from nirguard._hook_files import iso_time
from nirguard.reasons import Reason

__all__ = [
    "ALERT_LOGGER",
    "NOTICE_LOGGER",
    "Alert",
    "BreakGlass",
    "Notice",
    "case_id",
    "log_alert",
    "log_notice",
]

ALERT_LOGGER = "nirguard.alerts"
"""Where alerts go when the guard has no ``alert`` hook (at ``WARNING``)."""
NOTICE_LOGGER = "nirguard.notices"
"""Where notices go when the guard has no ``notice`` hook (at ``INFO``)."""

_alerts_log = logging.getLogger(ALERT_LOGGER)
_notices_log = logging.getLogger(NOTICE_LOGGER)


_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")


def case_id(practitioner: str, incident: float) -> str:
    """The stable id of an account's incident: the same in every process and event.

    Args:
        practitioner: the practitioner id as the guard keys it.
        incident: the store-clock start of the incident (``Decision.incident``).

    Returns:
        ``"case-"`` and 16 letters ``a``-``p`` (a digest, one letter per hex
        digit: the id is not a secret, and says nothing the alert does not
        already say). Letters, because an id with a run of 13 digits (1 in
        ~200 hex digests) would be masked as a NIR wherever it is written,
        and two cases would then share one id.

    >>> case_id("dr-martin", 1767225600.0)[:5], len(case_id("dr-martin", 1767225600.0))
    ('case-', 21)
    """
    digest = hashlib.blake2b(
        f"{practitioner}\x00{round(float(incident), 3)!r}".encode("utf-8", "surrogatepass"),
        digest_size=8,
    )
    return "case-" + digest.hexdigest().translate(_LETTERS)


@dataclass(frozen=True, slots=True, repr=False)
class Alert:
    """One case about one account.

    Attributes:
        practitioner: the account (its id as the guard keys it, NIR-shaped runs masked).
        signal: what opened the case: a lockout-class quota
            (``distinct_patients``, ``invalid_nirs``, ``misses``,
            ``strikes``), a detection (``cohort``, ``portal_cohort``,
            ``miss_ratio``, ``sequence``, ``session``, ``baseline``), or ``break_glass`` (the
            break-glass budget is nearly spent).
        evidence: counts behind it (numbers only: no NIR, no pseudonym).
        time: POSIX seconds, from the guard's clock.
        retry_after: length of the lockout in seconds, if one started;
            ``None`` = until unlocked, or no lockout.
        case: the incident's stable id (:func:`case_id`): the same for every
            alert and audit event of this incident, in every process.
        kind: the account's kind (the ``name`` of the policy that applied).
        enforced: ``False`` when the guard is in shadow mode: nothing was
            refused, the alert says what enforcement would have done.
        lockout: whether a lockout started with this alert.
    """

    practitioner: str
    signal: str
    evidence: dict[str, float]
    time: float
    retry_after: float | None
    case: str = ""
    kind: str | None = None
    enforced: bool = True
    lockout: bool = True

    def __repr__(self) -> str:
        return _repr(self)


@dataclass(frozen=True, slots=True, repr=False)
class Notice:
    """Evidence about the portal (never about one account, never naming one).

    Attributes:
        signal: ``hot_cohort``: new people of one birth cohort across the
            portal far above the cohort's own baseline.
        cohort: the cohort's pseudonym (find its lookups in the audit trail).
        evidence: counts (``cohort_heat``, ``cohort_expected``).
        time: POSIX seconds, from the guard's clock.
        kind: the kind of the lookup that made the cohort hot (a class of
            accounts, not an account).
    """

    signal: str
    cohort: str | None
    evidence: dict[str, float]
    time: float
    kind: str | None = None

    def __repr__(self) -> str:
        return _repr(self)


_TIMES: Final = ("time", "expires")


def _repr(value: Any) -> str:
    """A report's fields, its times in ISO 8601 (POSIX seconds with their decimals can read
    as a NIR, and reprs end up in logs and tracebacks)."""
    shown = []
    for f in fields(value):
        item = getattr(value, f.name)
        text = iso_time(item) if f.name in _TIMES else item
        shown.append(f"{f.name}={text!r}")
    return f"{type(value).__name__}({', '.join(shown)})"


def _json(value: object) -> str:
    data = asdict(value)  # type: ignore[call-overload]
    # ISO 8601, as the audit trail writes times: POSIX seconds with their decimals
    # (1796689141.82457) can read as a NIR with its separators, in a log many people read
    data["time"] = iso_time(data["time"])
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def log_alert(alert: Alert) -> None:
    """The default ``alert`` hook: one ``WARNING`` on ``nirguard.alerts``.

    The message holds the case, account, signal and evidence as JSON (its ``time`` in
    ISO 8601, UTC); the record carries the alert as ``record.nirguard_alert`` (a ``dict``).
    """
    _alerts_log.warning("nirguard alert %s", _json(alert), extra={"nirguard_alert": asdict(alert)})


def log_notice(notice: Notice) -> None:
    """The default ``notice`` hook: one ``INFO`` on ``nirguard.notices`` (``record.nirguard_notice``)."""
    _notices_log.info(
        "nirguard notice %s", _json(notice), extra={"nirguard_notice": asdict(notice)}
    )


@dataclass(frozen=True, slots=True, repr=False)
class BreakGlass:
    """Sent to the guard's ``on_break_glass`` hook when a break-glass lookup is granted.

    The portal decides what follows: a review queue, a notice to the patient
    (the DMP tells patients about every *bris de glace*), a message to the
    practitioner's manager. This is the only place the free text of the
    reason goes; the audit trail keeps the code alone.

    Attributes:
        practitioner: the practitioner id.
        patient: pseudonym of the patient's NIR (never the NIR).
        reason: the stated reason, with its free text.
        time: POSIX seconds, from the guard's clock.
        expires: when the grant of this patient to this practitioner ends.
        budget_left: break-glass lookups left in the practitioner's tightest
            window after this one.
        quota: the quota or signal the reason was needed for.
        kind: the practitioner's kind (the ``name`` of the policy that applied).
        enforced: ``False`` in shadow mode.
    """

    practitioner: str
    patient: str
    reason: Reason
    time: float
    expires: float
    budget_left: int | None
    quota: str
    kind: str | None = None
    enforced: bool = True

    def __repr__(self) -> str:
        return _repr(self)
