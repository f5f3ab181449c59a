"""One pass of the replay through a guard: legitimate weeks, then an attack.

A :class:`Pass` owns a :class:`nirguard.LookupGuard` whose clock returns
the time of the lookup being processed, and feeds it lookups in time order:
the legitimate events of a range of the workload, and (in the attack week)
a script whose accounts are processes in a heap
(:class:`~nirguard.replay.attack_runner.AttackRunner`), since when they try
next depends on the guard's answers. Every lookup goes through the guard;
nothing is approximated.

In shadow mode (``LookupGuard(enforce=False)``) the guard refuses nothing
and audits what it would have refused. The pass reads those ``would_*``
outcomes and has every account react to them as to a refusal (the script
waits, the practitioner states a reason), so the guard sees exactly the
requests it saw under enforcement: the first would-refusal of every account
must then be enforcement's first refusal, the same lookup for the same
quota or signal.
"""

from __future__ import annotations

import inspect
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from nirguard.replay.attack_runner import AttackRunner
from nirguard.replay.practitioners import KINDS, LOOKUP, TYPO, Workload
from nirguard.replay.registry import Registry
from nirguard.replay.sessions import legit_session
from nirguard.replay.tactics import Attack
from nirguard.replay.tallies import (
    EPOCH,
    INVALID,
    PORTAL_SIGNALS,
    AttackTally,
    LegitTally,
    Refusal,
    refusal_of,
)

if TYPE_CHECKING:
    from nirguard.guard import LookupGuard
    from nirguard.policy import QuotaPolicy

__all__ = ["LEGIT_REASON", "GuardFeatures", "Pass", "guard_features"]

#: The reason a legitimate practitioner states when the guard asks for one.
LEGIT_REASON: Final = "TREAT"
_DAY: Final = 86_400.0


@dataclass(frozen=True)
class GuardFeatures:
    """What the installed guard offers (the replay adapts to older guards).

    Attributes:
        shadow: ``LookupGuard(enforce=False)`` exists.
        reason: ``guard.lookup(..., reason=...)`` exists (break-glass).
        metrics: ``LookupGuard(metrics=False)`` exists.
        break_glass_hook: ``LookupGuard(on_break_glass=...)`` exists.
        notice: ``LookupGuard(notice=...)`` exists (portal-level notices apart from alerts).
        session: ``guard.lookup(..., session=...)`` exists (the portal's session id).
    """

    shadow: bool
    reason: bool
    metrics: bool = False
    break_glass_hook: bool = False
    notice: bool = False
    session: bool = False


def guard_features() -> GuardFeatures:
    """Inspect the installed :class:`~nirguard.LookupGuard`."""
    from nirguard.guard import LookupGuard

    init = inspect.signature(LookupGuard.__init__).parameters
    lookup = inspect.signature(LookupGuard.lookup).parameters
    return GuardFeatures(
        shadow="enforce" in init,
        reason="reason" in lookup,
        metrics="metrics" in init,
        break_glass_hook="on_break_glass" in init,
        notice="notice" in init,
        session="session" in lookup,
    )


class Pass:
    """A guard, the legitimate accounts and (optionally) the stolen ones.

    Account indices are the workload's practitioners, then the fresh stolen
    accounts (``attackers``); a strategy on owners' accounts uses theirs. ``sessions``:
    the login session of each legitimate event (:mod:`~nirguard.replay.sessions`);
    then every lookup, the bots' too, carries its session; ``None``: none does.
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
        storage: str = "memory://",
        sessions: array[int] | None = None,
    ) -> None:
        self.registry = registry
        self._sessions = sessions
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
        self._number = ""
        self._tally = LegitTally()
        self._attack: AttackTally | None = None
        self._stolen: dict[int, int] = {}
        self._attacking = False
        self._cases: set[str] = set()
        self._last_alert: dict[int, float] = {}
        self._last_quota: dict[int, str] = {}
        self.guard = self._guard(policy_for, key, storage)
        self._lookup = self.guard.lookup

    def _guard(
        self, policy_for: Callable[[str], QuotaPolicy], key: bytes, storage: str
    ) -> LookupGuard:
        from nirguard.guard import LookupGuard
        from nirguard.keys import SecretKey
        from nirguard.pseudonym import Pseudonymiser

        options: dict[str, Any] = {}
        if self.features.metrics:
            options["metrics"] = False  # the replay's own counts; no OpenTelemetry cost
        if self.features.break_glass_hook:
            options["on_break_glass"] = self._break_glass
        if "hooks" in inspect.signature(LookupGuard.__init__).parameters:
            options["hooks"] = "inline"  # the replay reads its hooks' effects at once
        if self.features.notice:
            options["notice"] = self._notice
        if not self.enforce:
            if not self.features.shadow:
                raise RuntimeError("the installed LookupGuard has no shadow mode (enforce=False)")
            options.update(enforce=False, audit=self._audit)
        return LookupGuard(
            policy=policy_for,
            storage=storage,
            pseudonymiser=Pseudonymiser(SecretKey(key, "replay"), purpose="guard"),
            alert=self._alert,
            clock=self._clock,
            **options,
        )

    # -- hooks --------------------------------------------------------------------------------

    def _clock(self) -> float:
        return EPOCH + self.now

    def set_time(self, now: float) -> None:
        """Move the pass's clock (seconds from day 0)."""
        self.now = now

    def _audit(self, event: Any) -> None:
        outcome = str(event.outcome)
        if outcome.startswith("would_") and self._would is None:
            from nirguard.audit import WOULD

            enforced = {v: k for k, v in WOULD.items()}.get(outcome, outcome)
            if enforced == "lockout":  # the refusal that starts a lockout: which one it is
                signal = str(event.quota) in (
                    "cohort",
                    "portal_cohort",
                    "miss_ratio",
                    "baseline",
                    "sequence",
                    "session",
                )
                enforced = "suspected" if signal else "denied"
            self._would = (enforced, str(event.quota or enforced), event.retry_after)

    def _break_glass(self, grant: Any) -> None:
        attack = self._attack
        who = self.index.get(str(grant.practitioner), -1)
        if attack is not None and self._attacking and who in self._stolen:
            attack.break_glass += 1

    def _notice(self, notice: Any) -> None:
        self._tally.notices[str(notice.signal)] += 1
        attack = self._attack
        if attack is not None and self._number[:10] in attack.touched:
            attack.signal(-1, str(notice.signal), self.now)

    def _alert(self, alert: Any) -> None:
        who = self.index.get(str(alert.practitioner), -1)
        when = float(getattr(alert, "time", EPOCH + self.now)) - EPOCH
        signal = str(alert.signal)
        lockout = bool(getattr(alert, "lockout", True))
        self.alerts.append((when, who, signal, lockout))
        attack = self._attack
        stolen = self._stolen.get(who)
        if attack is not None and stolen is not None:
            attack.alerted(stolen, when)
            attack.signal(stolen, signal, when)
            return
        if 0 <= who < self.legit_count:
            tally = self._tally
            tally.alerts[signal] += 1
            if self._new_case(who, getattr(alert, "case", None), when):
                tally.cases[self.kinds[who]] += 1
            if lockout and who not in tally.locked:
                tally.locked[who] = signal
        if attack is not None and signal in PORTAL_SIGNALS and self._number[:10] in attack.touched:
            attack.signal(-1, signal, when)

    def _new_case(self, who: int, case: object, when: float) -> bool:
        """Whether an alert opens a case: its ``case`` id is new or, from a guard without
        case ids, the account had no alert in the day before."""
        if case is not None:
            if str(case) in self._cases:
                return False
            self._cases.add(str(case))
            return True
        last = self._last_alert.get(who)
        self._last_alert[who] = when
        return last is None or when - last > _DAY

    # -- one lookup ---------------------------------------------------------------------------

    def call(
        self,
        who: int,
        number: str,
        result: int | None,
        reason: str | None = None,
        session: str | None = None,
    ) -> Refusal | None:
        """One guarded lookup; the refusal (or, in shadow mode, would-refusal) if any."""
        from nirguard.errors import InvalidNIR, LookupDenied

        self.attempts[who] += 1
        self._number = number
        self._would = None
        name = self.names[who]
        try:
            if session is not None:
                guarded = self._lookup(name, number, reason=reason, session=session)
            elif reason is None:
                guarded = self._lookup(name, number)
            else:
                guarded = self._lookup(name, number, reason=reason)
            with guarded as lk:
                lk.record(result)
        except InvalidNIR:
            return INVALID
        except LookupDenied as exc:
            refusal = refusal_of(exc)
            if not self.enforce:
                self.shadow_refused += 1
        else:
            if self._would is None:
                return None
            refusal = self._would
        if self.first[who] is None:
            self.first[who] = (self.attempts[who], refusal[0], refusal[1])
        return refusal

    def _attack_call(
        self, who: int, number: str, result: int | None, reason: str | None, session: str | None
    ) -> Refusal | None:
        self._attacking = True
        try:
            return self.call(who, number, result, reason, session)
        finally:
            self._attacking = False

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
        tally = self._tally = LegitTally()
        runner = self._runner(attack, end) if attack is not None else None
        self._attack = runner.tally if runner is not None else None
        step = max(1, (hi - lo) // 50)
        times = self.workload.times
        for e in range(lo, hi):
            if progress is not None and (e - lo) % step == 0:
                progress(e - lo)
            if runner is not None:
                runner.until(times[e])
            self._event(e, tally, runner.tally if runner is not None else None)
        if runner is not None:
            runner.until(end)
        self._attack = None
        self._stolen = {}
        for kind_name in KINDS:
            tally.lookups[kind_name] += 0
        return tally, (runner.tally if runner is not None else None)

    def _runner(self, attack: Attack, end: float) -> AttackRunner:
        indices = [self.index[name] for name in attack.accounts]
        self._stolen = {who: i for i, who in enumerate(indices)}
        return AttackRunner(
            attack,
            indices,
            self._attack_call,
            self.set_time,
            self.registry.find,
            end,
            reasons=self.features.reason,
            sessions=self._sessions is not None,
        )

    def _event(self, e: int, tally: LegitTally, attack: AttackTally | None) -> None:
        """Legitimate event ``e``: the lookup, and the reason stated when one is asked."""
        w = self.workload
        self.now = w.times[e]
        who, kind = w.who[e], w.kind[e]
        person = w.person[e] if kind == LOOKUP else -1
        number = self.registry.nir(person, w.cohort[e]) if person >= 0 else w.typed[e]
        result = person if person >= 0 else None
        session = None if self._sessions is None else legit_session(self._sessions[e])
        refusal = self.call(who, number, result, None, session)
        if kind == TYPO:
            tally.typos += 1
            if refusal is not None and refusal is not INVALID:
                tally.typos_refused += 1
            return
        owned = attack is not None and who in self._stolen
        k = self.kinds[who]
        if owned:
            assert attack is not None
            attack.owner_lookups += 1
        else:
            tally.lookups[k] += 1
        if refusal is None:
            return
        if refusal[0] == "reason_required" and self.features.reason:
            if not owned:
                tally.asked[k] += 1
            refusal = self.call(who, number, result, LEGIT_REASON, session)
            if refusal is None:
                if not owned:
                    tally.break_glass[k] += 1
                return
        if owned:
            assert attack is not None
            attack.owner_refused += 1
            return
        tally.refused[k] += 1
        tally.by_code[refusal[1]] += 1
        self._locked(who, refusal, tally)

    def _locked(self, who: int, refusal: Refusal, tally: LegitTally) -> None:
        """Count a legitimate account locked out, from its refusals: "locked" means a
        lockout started, by the quota or signal of the refusal before it (an alert
        says so only when it opens a case)."""
        if refusal[0] != "locked":
            self._last_quota[who] = refusal[1]
        elif who not in tally.locked:
            tally.locked[who] = self._last_quota.get(who, "locked")
