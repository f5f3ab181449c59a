"""The seam between the guard and its store: one typed protocol, two engines.

An :class:`Engine` decides a whole lookup in one atomic step and returns a
:class:`Decision`. Two engines implement it with the same semantics, step
for step: :class:`~nirguard._memory.MemoryEngine` (one process, one lock)
and the Redis engine (one Lua call on a single node; on a Cluster, one call
per slot the lookup needs, see docs/redis.md). The steps, in order:

1. **portal quota** (one record for the whole portal, only when ``portal`` is
   set): a lookup past it is refused; every other lookup counts.
2. **account** (records of one practitioner): lockout; miss budget; miss
   ratio; ``lookups``; whether the patient is new to this practitioner.
3. **cohort heat**, for a patient new to the practitioner only (a repeat
   needs nothing portal-wide): the heat of the patient's birth cohort (new
   patients of the cohort across the portal, decayed over
   ``hot_cohort_window`` against its trailing baseline over
   ``hot_cohort_baseline``). What this step records stands whatever the
   account decides next: it is evidence about the cohort. A locked account's
   attempts heat nothing: a bot asking on while locked would make cohorts hot
   and trip the ordinary accounts that look their people up.
4. **account**, for that new patient, the cohort's heat known:
   ``distinct_patients``, ``cohort`` (its own walk of one cohort) and
   ``portal_cohort`` (its new patients in hot cohorts); a breach is a
   lockout, or, while a break-glass budget has something left, a request
   for a reason first.

Every refusal of the account counts against ``lookups`` (a refusal while
locked too, which never extends the lockout); a refusal that is not a
lockout is a **strike**, and the strike past ``strikes`` is a lockout. The
account record also keeps its open **incident** (:attr:`Decision.incident`):
opened by the first lockout or signal, open while locked and until
``lockout_memory`` after the latest one, closed by ``unlock``.

Records hold pseudonyms, or 48-bit fingerprints of pseudonyms
(:func:`fingerprint`), never a NIR. A practitioner's records carry the hash
tag ``{<practitioner>}``, a cohort's heat the tag ``{%c<cohort>}`` and the
portal quota ``{%portal}`` (``%`` is never followed by ``c`` or ``p`` in an
escaped practitioner id), so a Redis Cluster keeps each practitioner in one
slot and spreads the cohorts over all of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

from nirguard.errors import (
    EnumerationSuspected,
    LookupDenied,
    PractitionerLocked,
    QuotaExceeded,
    ReasonRequired,
)

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy

__all__ = [
    "Decision",
    "Engine",
    "Keys",
    "RawStatus",
    "Request",
    "cohort_tag",
    "escape",
    "fingerprint",
]

#: Detection signals: a breach of one of these is "suspected", not "denied".
SIGNALS: Final = frozenset(
    {"cohort", "portal_cohort", "miss_ratio", "baseline", "sequence", "session"}
)
PORTAL_TAG: Final = "{%portal}"
#: How evidence names the count behind each quota or signal.
_EVIDENCE: Final = {
    "cohort": "cohort_patients",
    "portal_cohort": "portal_cohort_patients",
    "hot_cohort": "cohort_patients",
}


def escape(practitioner: str) -> str:
    """A practitioner id made safe for a store key: no ``%``, ``:``, ``{`` or ``}`` left."""
    if "%" in practitioner or ":" in practitioner or "{" in practitioner or "}" in practitioner:
        return (
            practitioner.replace("%", "%25")
            .replace(":", "%3A")
            .replace("{", "%7B")
            .replace("}", "%7D")
        )
    return practitioner


def fingerprint(pseudonym: str) -> bytes:
    """The 6 bytes (48 bits) that stand for a pseudonym inside a record: the end of a
    keyed pseudonym's hex digest, or a hash of any other label. Two of one
    practitioner's recent patients share one with odds of about 1 in 10^11 per lookup."""
    if len(pseudonym) >= 32:
        try:
            found = bytes.fromhex(pseudonym[-12:])
        except ValueError:
            found = b""
        if len(found) == 6:
            return found
    return hashlib.blake2b(pseudonym.encode(), digest_size=6).digest()


def cohort_tag(cohort: str) -> str:
    """The 16 hex digits (64 bits) that name a cohort in its heat key's hash tag."""
    if len(cohort) >= 32:
        tail = cohort[-16:]
        try:
            if bytes.fromhex(tail).hex() == tail:
                return tail
        except ValueError:
            pass
    return hashlib.blake2b(cohort.encode(), digest_size=8).hexdigest()


class Keys:
    """The store keys of one lookup (see the module docstring for the layout), each
    made when it is read: a lookup that needs no portal record builds none.

    * ``account``: the practitioner's windows, lockout, escalation;
    * ``recent``: the practitioner's recent patients (fingerprints and the ends of
      their new-patient windows), break-glass grants and cohort walks;
    * ``heat``: one cohort's heat and the patients it counted lately;
    * ``portal``: the portal-wide quota.
    """

    __slots__ = ("_cohort", "_heat_suffix", "_own", "_prefix")

    def __init__(
        self, prefix: str, practitioner: str, cohort: str | None, heat_suffix: str
    ) -> None:
        self._prefix = prefix
        self._own = f"{prefix}:{{{practitioner}}}"
        self._cohort = cohort
        self._heat_suffix = heat_suffix

    @property
    def account(self) -> str:
        return f"{self._own}:account"

    @property
    def recent(self) -> str:
        return f"{self._own}:r"

    @property
    def portal(self) -> str:
        return f"{self._prefix}:{PORTAL_TAG}:portal"

    @property
    def since(self) -> str:
        """When the store started watching the portal (``hot_cohort_warmup``)."""
        return f"{self._prefix}:{PORTAL_TAG}:since"

    @property
    def heat(self) -> str:
        tag = cohort_tag(self._cohort or "-")
        return f"{self._prefix}:{{%c{tag}}}:h{self._heat_suffix}"


class Request(NamedTuple):
    """One lookup as an engine sees it: no NIR, only pseudonyms.

    A named tuple, immutable like the frozen dataclass it was: made once per lookup on
    the hot path, where the frozen dataclass's field-by-field ``object.__setattr__``
    cost ~1.4 us and the tuple ~0.3 us (issue 20).

    Attributes:
        practitioner: the practitioner id, escaped for keys (:func:`escape`).
        policy: the compiled policy that applies.
        patient: pseudonym of the canonical NIR; ``None`` for an invalid NIR.
        cohort: pseudonym of the birth cohort (first 10 characters), when a
            cohort-based check is on.
        reason: whether the practitioner stated a reason (break-glass).
        now: the time to decide at; ``None`` = the engine's own clock (the
            server's, on Redis).
        place: the bucket (0-63) of the keyed hash of the patient's department
            of birth, when ``baseline`` is on; ``-1``: unknown.
        neighbours: fingerprints of the patient pseudonyms of the numbers next to
            the patient's in its cohort, then of its two controls, when ``sequence`` is
            on (:mod:`nirguard._sequence`).
        session: the fingerprint of the keyed pseudonym of the portal's session id,
            when the portal passes one and ``session_overlap`` is on; ``b""``: unknown
            (:mod:`nirguard._sessions`).
    """

    practitioner: str
    policy: CompiledPolicy
    patient: str | None = None
    cohort: str | None = None
    reason: bool = False
    now: float | None = None
    place: int = -1
    neighbours: bytes = b""
    session: bytes = b""


@dataclass(slots=True)
class Decision:
    """What an engine decided for one lookup.

    ``outcome`` is ``allowed``, ``break_glass``, ``invalid`` (an invalid NIR,
    counted), ``denied``, ``locked``, ``suspected`` or ``reason_required``.

    ``incident`` is the store-clock time the account's open incident started
    (on every decision of the account while it is open, allowed ones too;
    ``None`` when none is open), and ``alert`` is true on the one decision
    that opened it: the first lockout start or signal of the incident.
    """

    outcome: str
    quota: str | None = None
    retry_after: float | None = None
    lockout_started: bool = False
    level: int = 0
    hot: bool = False
    hot_alert: bool = False
    heat: float = 0.0
    expected: float = 0.0
    break_glass_left: int | None = None
    count: int | None = None
    limit: int | None = None
    incident: float | None = None
    alert: bool = False
    #: ``baseline`` (``count``: new patients today, ``limit``: of them from unusual
    #: places): those expected a day, days of history, off-hours new patients today
    usual: float = 0.0
    history: int | None = None
    off_hours: int = 0
    #: ``sequence``: which probes the cohort's heat saw lately (bits, see _sequence)
    adjacent: int = 0

    def denial(self) -> LookupDenied | None:
        """The exception this decision refuses with, or ``None`` when it lets through."""
        outcome, quota, retry = self.outcome, self.quota or self.outcome, self.retry_after
        if outcome == "denied":
            return QuotaExceeded(quota, retry_after=retry)
        if outcome == "suspected":
            return EnumerationSuspected(quota, retry_after=retry)
        if outcome == "locked":
            return PractitionerLocked(retry_after=retry)
        if outcome == "reason_required":
            return ReasonRequired(quota, retry_after=retry)
        return None

    @property
    def evidence(self) -> dict[str, float]:
        """Counts behind the decision (no NIR, no pseudonym)."""
        out: dict[str, float] = {}
        if self.count is not None and self.limit is not None:
            if self.quota == "miss_ratio":
                out.update(misses=self.count, lookups=self.limit)
                out["ratio"] = round(self.count / self.limit, 3) if self.limit else 0.0
            elif self.quota == "baseline":
                out.update(new_patients_today=self.count, unusual_places_today=self.limit)
            elif self.quota == "sequence":  # the window's discordant new patients
                out.update(neighbour_only=self.count, control_only=self.limit)
            elif self.quota == "session":  # sessions using the account at once
                out.update(sessions=self.count, limit=self.limit)
            else:
                label = _EVIDENCE.get(self.quota or "", self.quota or "count")
                out[label] = self.count
                out["limit"] = self.limit
        if self.history is not None:
            out.update(expected_unusual=round(self.usual, 1), days_of_history=self.history)
            out["off_hours_new_patients"] = self.off_hours
        if self.lockout_started:
            out["lockout_level"] = self.level
        if self.hot:
            out.update(cohort_heat=round(self.heat, 2), cohort_expected=round(self.expected, 2))
        if self.break_glass_left is not None:
            out["break_glass_left"] = self.break_glass_left
        return out


@dataclass(slots=True)
class RawStatus:
    """What :meth:`Engine.status` reads: remaining budgets, lockout, level."""

    remaining: dict[str, int | None] = field(default_factory=dict)
    locked_for: float | None = None
    level: int = 0
    #: the account's own normal (:func:`nirguard._baseline.summary`), when kept
    baseline: dict[str, float] | None = None


class Engine(Protocol):
    """What the guard needs from a store. Errors of the store propagate."""

    kind: str  # "memory" or "redis" (for metrics and reprs)
    #: Exceptions that mean "the store cannot be reached" (and nothing else).
    outages: tuple[type[BaseException], ...]

    def decide(self, request: Request) -> Decision: ...

    async def adecide(self, request: Request) -> Decision: ...

    def invalid(self, request: Request) -> Decision: ...

    async def ainvalid(self, request: Request) -> Decision: ...

    def record_miss(self, request: Request) -> None: ...

    async def arecord_miss(self, request: Request) -> None: ...

    def status(
        self, practitioner: str, policy: CompiledPolicy, now: float | None = None
    ) -> RawStatus: ...

    async def astatus(self, practitioner: str, policy: CompiledPolicy) -> RawStatus: ...

    def unlock(self, practitioner: str, policy: CompiledPolicy) -> None: ...

    async def aunlock(self, practitioner: str, policy: CompiledPolicy) -> None: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...
