"""The stolen accounts as processes in a heap, run through the guard up to a given time.

When a stolen account tries next depends on the guard's answers, so the
attack cannot be laid out in advance like the legitimate weeks: each
account is an entry of a heap keyed by the time of its next attempt, and
the pass runs the heap up to the time of each legitimate event.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from nirguard.replay.tactics import Attack
from nirguard.replay.tallies import INVALID, AttackTally, Refusal

__all__ = ["AttackRunner", "Call"]

#: ``call(account index, number, person id or None, reason or None, session or None)``:
#: one guarded lookup at the pass's current time; the refusal, if any.
Call = Callable[[int, str, "int | None", "str | None", "str | None"], "Refusal | None"]


class AttackRunner:
    """One attack's accounts, replayed through a pass's guard.

    Args:
        attack: the script.
        indices: the pass's index of each of the attack's accounts.
        call: the pass's guarded lookup.
        set_time: sets the pass's clock (seconds from day 0).
        find: the registry's person id of a number (``None``: nobody).
        end: the attack stops at this time.
        reasons: whether the guard accepts a stated reason (break-glass).
        sessions: whether lookups carry the bot's portal session (:meth:`Attack.session`).
    """

    def __init__(
        self,
        attack: Attack,
        indices: list[int],
        call: Call,
        set_time: Callable[[float], None],
        find: Callable[[str], int | None],
        end: float,
        *,
        reasons: bool = True,
        sessions: bool = False,
    ) -> None:
        self.attack = attack
        self.sessions = sessions
        self.indices = indices
        self.call = call
        self.set_time = set_time
        self.find = find
        self.end = end
        self.reasons = reasons
        n = len(attack.accounts)
        self.tally = AttackTally.empty(n)
        self.got: list[set[int]] = [set() for _ in range(n)]
        self.pending: list[str | None] = [None] * n
        self.heap = [(t, i) for i, t in enumerate(attack.start)]
        heapq.heapify(self.heap)

    def until(self, limit: float) -> None:
        """Run every attempt due at or before ``limit``."""
        heap = self.heap
        while heap and heap[0][0] <= limit:
            t, i = heap[0]
            if t >= self.end:
                heap.clear()
                break
            when = self._step(t, i)
            if when is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (when, i))
        self.tally.got = [len(s) for s in self.got]

    def _step(self, t: float, i: int) -> float | None:
        """Account ``i``'s attempt at ``t``; when it tries next (``None``: never)."""
        attack, tally = self.attack, self.tally
        number = self.pending[i] or attack.next_nir(i)
        if number is None:
            return None
        self.set_time(t)
        if tally.started[i] is None:
            tally.started[i] = t
        tally.touched.add(number[:10])
        person = self.find(number)
        tactics = attack.tactics
        reason = None
        if self.reasons and tactics.always_reason:
            reason = attack.reason(i, tally.account_attempts[i])
        session = attack.session(i, t) if self.sessions else None
        refusal = self._try(i, number, person, reason, t, session)
        if refusal is not None and refusal[0] == "reason_required":
            tally.asked[i] += 1
            if self.reasons and reason is None and tactics.on_reason == "reason":
                refusal = self._try(i, number, person, attack.reason(i, 0), t, session)
        if refusal is None or refusal is INVALID:
            self.pending[i] = None
            if person is not None:
                self.got[i].add(person)
                if person not in tally.exposed:
                    tally.exposed[person] = t
            attack.feedback(i, person is not None)
            attack.answered(i)
            return attack.next_time(i, t)
        then = attack.after_refusal(i, t, refusal[0] == "reason_required", refusal[2])
        if then is None:
            tally.stopped += 1
            return None
        same, when = then
        self.pending[i] = number if same else None
        return when

    def _try(
        self,
        i: int,
        number: str,
        person: int | None,
        reason: str | None,
        t: float,
        session: str | None = None,
    ) -> Refusal | None:
        tally = self.tally
        tally.attempts += 1
        tally.account_attempts[i] += 1
        refusal = self.call(self.indices[i], number, person, reason, session)
        if refusal is not None and refusal is not INVALID:
            if tally.first_refusal[i] is None:
                tally.first_refusal[i] = t
            tally.signal(i, refusal[1], t)
        return refusal
