"""One pass of the replay through a guard: legitimate weeks, then an attack.

A :class:`Pass` owns a :class:`nirguard.LookupGuard` on ``memory://`` whose
clock returns the time of the lookup being processed, and feeds it
lookups in time order: the legitimate events of a range of the workload,
and (in the attack week) a script whose accounts are processes in a heap,
since when they try next depends on the guard's answers.

The history weeks are the same for every strategy, so they run once: the
pass is then snapshotted (the guard's state and the replay's own
bookkeeping) and restored before each strategy's week. Every lookup goes
through the guard; nothing is approximated.

In shadow mode (``LookupGuard(enforce=False)``) the guard refuses nothing
and audits what it would have refused. The pass reads those ``would_*``
outcomes and has every account react to them as to a refusal (the script
waits, the practitioner states a reason), so the guard sees exactly the
requests it saw under enforcement: the first would-refusal of every account
must then be enforcement's first refusal, the same lookup for the same
quota or signal.
"""

from __future__ import annotations

import heapq
import inspect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from nirguard.replay.attacks import Attack
from nirguard.replay.practitioners import KINDS, LOOKUP, TYPO, Workload
from nirguard.replay.registry import Registry

if TYPE_CHECKING:
    from nirguard.guard import LookupGuard
    from nirguard.policy import QuotaPolicy

__all__ = [
    "EPOCH",
    "PORTAL_SIGNALS",
    "AttackTally",
    "GuardFeatures",
    "LegitTally",
    "Pass",
    "Refusal",
    "guard_features",
]

#: POSIX time of the replay's day 0, a Monday (2026-02-09 00:00 UTC).
EPOCH: Final = 1_770_595_200.0
#: Signals that are evidence about the portal (a cohort), not about one account.
PORTAL_SIGNALS: Final = frozenset({"hot_cohort", "portal_cohort"})
#: The reason a legitimate practitioner states when the guard asks for one.
LEGIT_REASON: Final = "TREAT"

#: ``(outcome, quota or signal, retry_after)``: outcome is ``denied``, ``suspected``,
#: ``locked`` or ``reason_required`` (the audit trail's words).
Refusal = tuple[str, str, "float | None"]
_INVALID: Final[Refusal] = ("invalid", "", None)


@dataclass(frozen=True)
class GuardFeatures:
    """What the installed guard offers (the replay adapts to older guards).

    Attributes:
        shadow: ``LookupGuard(enforce=False)`` exists.
        reason: ``guard.lookup(..., reason=...)`` exists (break-glass).
        snapshot: ``guard._snapshot()`` / ``guard._restore()`` exist.
        metrics: ``LookupGuard(metrics=False)`` exists.
        break_glass_hook: ``LookupGuard(on_break_glass=...)`` exists.
    """

    shadow: bool
    reason: bool
    snapshot: bool
    metrics: bool = False
    break_glass_hook: bool = False


def guard_features() -> GuardFeatures:
    """Inspect the installed :class:`~nirguard.LookupGuard`."""
    from nirguard.guard import LookupGuard

    init = inspect.signature(LookupGuard.__init__).parameters
    lookup = inspect.signature(LookupGuard.lookup).parameters
    return GuardFeatures(
        shadow="enforce" in init,
        reason="reason" in lookup,
        snapshot=callable(getattr(LookupGuard, "_snapshot", None)),
        metrics="metrics" in init,
        break_glass_hook="on_break_glass" in init,
    )


def _refusal(exc: Exception) -> Refusal:
    from nirguard.errors import (
        EnumerationSuspected,
        PractitionerLocked,
        QuotaExceeded,
        ReasonRequired,
    )

    retry = getattr(exc, "retry_after", None)
    if isinstance(exc, ReasonRequired):
        return ("reason_required", exc.quota, retry)
    if isinstance(exc, EnumerationSuspected):
        return ("suspected", exc.signal, retry)
    if isinstance(exc, PractitionerLocked):
        return ("locked", "locked", retry)
    if isinstance(exc, QuotaExceeded):
        return ("denied", exc.quota, retry)
    code = str(getattr(exc, "code", "denied"))
    return (code, code, retry)


@dataclass
class LegitTally:
    """What the guard did to legitimate accounts over a range of events.

    Counts are per kind of account (``gp``, ``new_gp``, ``hospital``,
    ``pharmacy``). A *lookup* is a valid number typed (someone found or
    not); typos are counted apart.

    Attributes:
        lookups: lookups made.
        refused: lookups refused (after stating a reason, when asked for one).
        asked: lookups answered "a reason is required" (the practitioner
            then states one).
        break_glass: of those, lookups let through on the stated reason.
        by_code: refusals by quota or signal.
        typos: typos made; typos_refused: typos refused by a quota (not just invalid).
        locked: accounts locked out -> the signal of their first lockout.
        alerts: alerts on legitimate accounts, by signal.
    """

    lookups: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    asked: Counter[str] = field(default_factory=Counter)
    break_glass: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    typos: int = 0
    typos_refused: int = 0
    locked: dict[int, str] = field(default_factory=dict)
    alerts: Counter[str] = field(default_factory=Counter)

    def merge(self, other: LegitTally) -> LegitTally:
        """The two tallies together (``other``'s lockouts after ``self``'s)."""
        return LegitTally(
            self.lookups + other.lookups,
            self.refused + other.refused,
            self.asked + other.asked,
            self.break_glass + other.break_glass,
            self.by_code + other.by_code,
            self.typos + other.typos,
            self.typos_refused + other.typos_refused,
            {**other.locked, **self.locked},
            self.alerts + other.alerts,
        )


@dataclass
class AttackTally:
    """What one strategy's accounts did and got in one pass.

    Attributes:
        exposed: person id -> time first returned to a stolen account.
        got: distinct people returned to each account.
        attempts: lookups tried by the stolen accounts (reasoned retries included).
        account_attempts: per account.
        break_glass: lookups let through on a stated reason (break-glass grants).
        stopped: accounts locked until unlocked.
        first_signal: ``(attempts by all accounts, time, signal)`` at the first
            refusal of a stolen account, alert naming one, or portal alert in a
            cohort the attack had touched.
        account_signal: per account, its own attempts at its first refusal or alert.
        touched: cohort prefixes the attack has looked up.
    """

    exposed: dict[int, float] = field(default_factory=dict)
    got: list[int] = field(default_factory=list)
    attempts: int = 0
    account_attempts: list[int] = field(default_factory=list)
    break_glass: int = 0
    stopped: int = 0
    first_signal: tuple[int, float, str] | None = None
    account_signal: list[int | None] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)


class Pass:
    """A guard, the legitimate accounts and (optionally) the stolen ones.

    Account indices are the workload's practitioners, then the stolen accounts.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        workload: Workload,
        policy_for: Callable[[str], QuotaPolicy],
        key: bytes,
        attackers: list[str],
        enforce: bool = True,
        features: GuardFeatures | None = None,
    ) -> None:
        from nirguard.guard import LookupGuard
        from nirguard.keys import SecretKey
        from nirguard.pseudonym import Pseudonymiser

        self.registry = registry
        self.workload = workload
        self.features = features or guard_features()
        self.enforce = enforce
        self.now = 0.0
        self.names = [p.id for p in workload.practitioners] + list(attackers)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.legit_count = len(workload.practitioners)
        self.kinds = [p.kind for p in workload.practitioners]
        size = len(self.names)
        self.attempts = [0] * size
        self.first: list[tuple[int, str, str] | None] = [None] * size
        self.alerts: list[tuple[float, int, str, bool]] = []
        self.shadow_refused = 0
        self._would: Refusal | None = None
        self._who = -1
        self._number = ""
        self._tally = LegitTally()
        self._attack: AttackTally | None = None
        self._attack_base = size - len(attackers)
        options: dict[str, Any] = {}
        if self.features.metrics:
            options["metrics"] = False  # the replay's own counts; no OpenTelemetry cost
        if self.features.break_glass_hook:
            options["on_break_glass"] = self._break_glass
        init = inspect.signature(LookupGuard.__init__).parameters
        if "hooks" in init:
            options["hooks"] = "inline"  # the replay reads its hooks' effects at once
        if "notice" in init:
            options["notice"] = self._notice  # hot cohorts: evidence about the portal
        if not enforce:
            if not self.features.shadow:
                raise RuntimeError("the installed LookupGuard has no shadow mode (enforce=False)")
            options.update(enforce=False, audit=self._audit)
        self.guard: LookupGuard = LookupGuard(
            policy=policy_for,
            storage="memory://",
            pseudonymiser=Pseudonymiser(SecretKey(key, "replay"), purpose="guard"),
            alert=self._alert,
            clock=self._clock,
            **options,
        )
        self._lookup = self.guard.lookup

    # -- hooks --------------------------------------------------------------------------------

    def _clock(self) -> float:
        return EPOCH + self.now

    def _audit(self, event: Any) -> None:
        outcome = str(event.outcome)
        if outcome.startswith("would_") and self._would is None:
            from nirguard.audit import WOULD

            enforced = {v: k for k, v in WOULD.items()}.get(outcome, outcome)
            if enforced == "lockout":  # the refusal that starts a lockout: which one it is
                signal = str(event.quota) in ("cohort", "portal_cohort", "miss_ratio", "baseline")
                enforced = "suspected" if signal else "denied"
            self._would = (enforced, str(event.quota or enforced), event.retry_after)

    def _break_glass(self, grant: Any) -> None:
        attack = self._attack
        if attack is not None and self._who >= self._attack_base:
            attack.break_glass += 1

    def _alert(self, alert: Any) -> None:
        who = self.index.get(str(alert.practitioner), self._who)
        signal = str(alert.signal)
        lockout = bool(getattr(alert, "lockout", True))
        self.alerts.append((self.now, who, signal, lockout))
        if who < self.legit_count:
            self._tally.alerts[signal] += 1
            if lockout and who not in self._tally.locked:
                self._tally.locked[who] = signal
        attack = self._attack
        if attack is None:
            return
        if who >= self._attack_base:
            i = who - self._attack_base
            self._signal(attack, i, signal)
        elif signal in PORTAL_SIGNALS and self._number[:10] in attack.touched:
            self._signal(attack, -1, signal)

    def _notice(self, notice: Any) -> None:
        # A notice names no practitioner: it is a signal about the walk, never a false alert.
        attack = self._attack
        if attack is not None and self._number[:10] in attack.touched:
            self._signal(attack, -1, str(notice.signal))

    def _signal(self, attack: AttackTally, account: int, signal: str) -> None:
        if attack.first_signal is None:
            attack.first_signal = (attack.attempts, self.now, signal)
        if account >= 0 and attack.account_signal[account] is None:
            attack.account_signal[account] = attack.account_attempts[account]

    # -- one lookup ---------------------------------------------------------------------------

    def call(
        self, who: int, number: str, result: int | None, reason: str | None = None
    ) -> Refusal | None:
        """One guarded lookup; the refusal (or, in shadow mode, would-refusal) if any."""
        from nirguard.errors import InvalidNIR, LookupDenied

        self.attempts[who] += 1
        self._who = who
        self._number = number
        self._would = None
        name = self.names[who]
        try:
            if reason is None:
                guarded = self._lookup(name, number)
            else:
                guarded = self._lookup(name, number, reason=reason)
            with guarded as lk:
                lk.record(result)
        except InvalidNIR:
            return _INVALID
        except LookupDenied as exc:
            refusal = _refusal(exc)
            if not self.enforce:
                self.shadow_refused += 1
        else:
            if self._would is None:
                return None
            refusal = self._would
        if self.first[who] is None:
            self.first[who] = (self.attempts[who], refusal[0], refusal[1])
        return refusal

    # -- legitimate traffic -------------------------------------------------------------------

    def run(
        self,
        lo: int,
        hi: int,
        *,
        attack: Attack | None = None,
        end: float = float("inf"),
        progress: Callable[[int], None] | None = None,
    ) -> tuple[LegitTally, AttackTally | None]:
        """Events ``lo..hi`` of the workload, with ``attack`` running until ``end``."""
        w, registry = self.workload, self.registry
        times, whos, persons, cohorts, kinds = w.times, w.who, w.person, w.cohort, w.kind
        typed = w.typed
        account_kind = self.kinds
        tally = self._tally = LegitTally()
        reason_ok = self.features.reason
        runner = _AttackRunner(self, attack, end) if attack is not None else None
        self._attack = runner.tally if runner is not None else None
        call = self.call
        nir_of = registry.nir
        step = max(1, (hi - lo) // 50)
        for e in range(lo, hi):
            if progress is not None and (e - lo) % step == 0:
                progress(e - lo)
            t = times[e]
            if runner is not None:
                runner.until(t)
            self.now = t
            who = whos[e]
            kind = kinds[e]
            k = account_kind[who]
            if kind == LOOKUP:
                person = persons[e]
                refusal = call(who, nir_of(person, cohorts[e]), person)
            else:
                person = -1
                refusal = call(who, typed[e], None)
            if kind == TYPO:
                tally.typos += 1
                if refusal is not None and refusal is not _INVALID:
                    tally.typos_refused += 1
                continue
            tally.lookups[k] += 1
            if refusal is None:
                continue
            if refusal[0] == "reason_required" and reason_ok:
                tally.asked[k] += 1
                number = nir_of(person, cohorts[e]) if person >= 0 else typed[e]
                refusal = call(who, number, person if person >= 0 else None, LEGIT_REASON)
                if refusal is None:
                    tally.break_glass[k] += 1
                    continue
            tally.refused[k] += 1
            tally.by_code[refusal[1]] += 1
        if runner is not None:
            runner.until(end)
        self._attack = None
        for kind_name in KINDS:
            tally.lookups[kind_name] += 0
        return tally, (runner.tally if runner is not None else None)

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The guard's state and the pass's bookkeeping, to :meth:`restore` later."""
        return Snapshot(
            _guard_snapshot(self.guard),
            list(self.attempts),
            list(self.first),
            len(self.alerts),
            self.shadow_refused,
        )

    def restore(self, state: Snapshot) -> None:
        """Go back to a :meth:`snapshot`."""
        _guard_restore(self.guard, state.guard)
        self.attempts = list(state.attempts)
        self.first = list(state.first)
        del self.alerts[state.alerts :]
        self.shadow_refused = state.shadow_refused


@dataclass(frozen=True)
class Snapshot:
    """A :class:`Pass` at one moment (see :meth:`Pass.snapshot`)."""

    guard: tuple[str, Any]
    attempts: list[int]
    first: list[tuple[int, str, str] | None]
    alerts: int
    shadow_refused: int


def _guard_snapshot(guard: Any) -> tuple[str, Any]:
    take = getattr(guard, "_snapshot", None)
    if callable(take):
        return ("api", take())
    # Until the guard offers a snapshot: copy the embedded memory store's counters.
    store = guard._engine._store
    return ("store", (dict(store._counts), dict(store._expiry), list(store._heap)))


def _guard_restore(guard: Any, state: tuple[str, Any]) -> None:
    how, data = state
    if how == "api":
        guard._restore(data)
        return
    store = guard._engine._store
    counts, expiry, heap = data
    store._counts = dict(counts)
    store._expiry = dict(expiry)
    store._heap = list(heap)


class _AttackRunner:
    """The stolen accounts as processes in a heap, run up to a given time."""

    def __init__(self, owner: Pass, attack: Attack, end: float) -> None:
        self.owner = owner
        self.attack = attack
        self.end = end
        n = len(attack.accounts)
        self.base = owner._attack_base
        self.tally = AttackTally(got=[0] * n, account_attempts=[0] * n, account_signal=[None] * n)
        self.got: list[set[int]] = [set() for _ in range(n)]
        self.pending: list[str | None] = [None] * n
        self.heap = [(t, i) for i, t in enumerate(attack.start)]
        heapq.heapify(self.heap)

    def until(self, limit: float) -> None:
        heap = self.heap
        if not heap or heap[0][0] > limit:
            return
        owner, attack, tally = self.owner, self.attack, self.tally
        find = owner.registry.find
        reason_ok = owner.features.reason and attack.reasons
        while heap and heap[0][0] <= limit:
            t, i = heap[0]
            if t >= self.end:
                heap.clear()
                break
            number = self.pending[i] or attack.next_nir(i)
            if number is None:
                heapq.heappop(heap)
                continue
            owner.now = t
            tally.touched.add(number[:10])
            person = find(number)
            # A script that uses break-glass states a reason on every lookup: the guard
            # ignores it unless the lookup needs one, and it is never asked first.
            reason = attack.reason(i, tally.account_attempts[i]) if reason_ok else None
            refusal = self._try(i, number, person, reason)
            if refusal is not None and refusal[0] == "reason_required":
                if reason_ok and reason is None:
                    refusal = self._try(i, number, person, attack.reason(i, 0))
                else:  # the script drops the number and goes on
                    self.pending[i] = None
                    heapq.heapreplace(heap, (attack.next_time(i, t), i))
                    continue
            if refusal is None or refusal is _INVALID:
                self.pending[i] = None
                if person is not None:
                    self.got[i].add(person)
                    if person not in tally.exposed:
                        tally.exposed[person] = t
                attack.feedback(i, person is not None)
                heapq.heapreplace(heap, (attack.next_time(i, t), i))
                continue
            self.pending[i] = number
            retry = refusal[2]
            if retry is None:
                tally.stopped += 1
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (t + max(float(retry), 1.0), i))
        tally.got = [len(s) for s in self.got]

    def _try(self, i: int, number: str, person: int | None, reason: str | None) -> Refusal | None:
        owner, tally = self.owner, self.tally
        tally.attempts += 1
        tally.account_attempts[i] += 1
        refusal = owner.call(self.base + i, number, person, reason)
        if refusal is not None and refusal is not _INVALID:
            owner._signal(tally, i, refusal[1])
        return refusal
