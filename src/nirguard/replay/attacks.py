"""Stolen accounts and the scripts they run: the replay's strategies.

Every strategy drives the same number of stolen practitioner accounts (19,
as in 2022). A script asks for the next number to try
(:meth:`~nirguard.replay.tactics.Attack.next_nir`), is told what an
*allowed* lookup returned, paces itself, and answers a refusal as its
:class:`~nirguard.replay.tactics.Tactics` say. Unless they say otherwise, a
script drops a number answered "a reason is required" (HTTP 428) and asks
for a refused number again once ``retry_after`` has passed; an account
locked until an administrator unlocks it is lost to the attacker.

:data:`DESCRIPTIONS` says what each strategy does in one line (the demo's
legend, ``simulate --help`` and ``docs/replay.md`` show it).
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Mapping
from typing import Final

from nirguard.replay.registry import Registry
from nirguard.replay.tactics import (
    ATTACK_OFFSET,
    FAST_INTERVAL,
    NIGHT,
    Attack,
    Hours,
    Tactics,
    slow_interval,
)
from nirguard.replay.walks import (
    GIVE_UP,
    AttackMaterial,
    NumberSource,
    ParallelWalk,
    RandomWalk,
    Walk,
    attack_material,
)

__all__ = [
    "DEMO",
    "DESCRIPTIONS",
    "FAST",
    "OWNED",
    "PACED",
    "RETRY_PAIRS",
    "SESSION_VARIANTS",
    "STRATEGIES",
    "TACTICS",
    "build_attack",
]

#: What each strategy does, in one line (the demo's legend and ``simulate --help``).
DESCRIPTIONS: Final = {
    "enumeration": "each account walks order numbers 001, 002, ... in the largest cohorts",
    "list": "a leaked list of real numbers, one lookup every 5 s per account",
    "burst": "the list, 40 lookups in a minute, then nothing until the next hour",
    "spread": "one walk shared by the 19 accounts, each under every per-account rate",
    "spread-random": "spread, each cohort's order numbers in a random order (more misses than hits)",
    "spread-parallel": "spread, 8 cohorts walked at once",
    "spread-rotating": "spread in 8-hour shifts, a third of the accounts at a time",
    "spread-wide": "spread over 256 cohorts at once, so that no cohort looks hot",
    "slow": "the list, one person per cohort per account, under every per-account rate",
    "break-glass": "the list, stating a reason on every lookup, asked or not (break-glass)",
    "retry-fast": "the list; a refused patient is asked again, no reason, 1 s later, 200 times in a row",
    "retry-paced": "the list; a refused patient is asked again, no reason, every 100 s",
    "move-on": "the list; after any refusal, the next number 5 s later (retry_after ignored)",
    "move-on-paced": "move-on at retry-paced's pace: after any refusal, the next number 100 s later",
    "slow-down": "the list; once refused, it slows to a pace under every per-account rate",
    "gp-paced": "new accounts, 40 new people a working day at a GP's hours",
    "owner": "gp-paced on 19 GPs' own accounts, while the GPs keep working",
    "owner-24-7": "owner, 40 new people a day around the clock, every day",
    "padded": "gp-paced, 40% of lookups re-lookups of people already harvested, like a practice",
    "owner-night": "owner, 40 new people a night (21:30-06:30) every day, while the owner is idle",
    "owner-churn": "owner, the bot logging in anew for every lookup (a new session each time)",
    "owner-padded": "owner, 40% of lookups re-lookups of people already harvested",
}
STRATEGIES: Final = tuple(DESCRIPTIONS)
#: Strategies run on legitimate GPs' accounts, whose owners keep working.
OWNED: Final = ("owner", "owner-24-7", "owner-night", "owner-churn", "owner-padded")
#: Variants of ``owner`` against the session signal (``session_overlap``): ``--all`` runs
#: them only in a world with sessions (without, they say nothing ``owner`` does not).
SESSION_VARIANTS: Final = ("owner-night", "owner-churn", "owner-padded")
#: Harvests paced like a practitioner (the per-account targets; the rest are the fast ones).
#: ``slow-down`` is not one of them: it runs the list at full speed until its first
#: refusal, and only then slows down (a bot that adapts), so it is a fast attack.
PACED: Final = ("slow", "gp-paced", "owner", "owner-24-7", "padded", *SESSION_VARIANTS)
#: Each bot that retries the refused patient, and the bot that moves on at its pace
#: (the target: retrying never gets more than moving on).
RETRY_PAIRS: Final = (("retry-fast", "move-on"), ("retry-paced", "move-on-paced"))
#: The fast attacks of the targets: at most 510 identities in the week across the accounts.
FAST: Final = tuple(s for s in STRATEGIES if s not in PACED)
#: What ``nirguard simulate`` runs by default: one strategy of each kind issue 17 names
#: (``--all`` runs every strategy).
DEMO: Final = (
    "enumeration", "list", "spread", "spread-wide", "break-glass",
    "retry-fast", "move-on", "gp-paced", "owner", "padded",
)  # fmt: skip

_BURST: Final = 40
_BURST_GAP: Final = 1.5
_BURST_EVERY: Final = 3600.0
_PARALLEL: Final = 8
_WIDE: Final = 256
_SHIFTS: Final = 3
_GP_DAY: Final = 40.0
_PADDING: Final = 0.4
_RETRY_PACE: Final = 100.0

#: The answer to a refusal of each strategy that does not answer as the default does.
TACTICS: Final[dict[str, Tactics]] = {
    "break-glass": Tactics(on_reason="reason", always_reason=True),
    "retry-fast": Tactics(on_reason="retry", wait=1.0, insist=200),
    "retry-paced": Tactics(on_reason="retry", wait=_RETRY_PACE),
    "move-on": Tactics(on_denied="drop", wait=FAST_INTERVAL),
    "move-on-paced": Tactics(on_denied="drop", wait=_RETRY_PACE),
    "slow-down": Tactics(slow_down=True),
}


class _Enumeration(Attack):
    def __init__(self, material: AttackMaterial, accounts: list[str], start: float, seed: int):
        super().__init__("enumeration", accounts, FAST_INTERVAL, start, seed)
        n = len(accounts)
        self.queues = [material.queue[i::n] for i in range(n)]
        self.walks = [Walk(q) for q in self.queues]

    def next_nir(self, account: int) -> str | None:
        return self.walks[account].next()

    def feedback(self, account: int, found: bool) -> None:
        self.walks[account].feedback(found)

    def unguarded(self, registry: Registry, end: float) -> tuple[array[float], list[int], int]:
        """Same walk as :meth:`next_nir`, computed from the registry's order numbers
        (accounts walk different cohorts, so nobody is found twice)."""
        exposed = array("d")
        found = [0] * len(self.accounts)
        attempts = 0
        interval = self.interval
        for i, queue in enumerate(self.queues):
            start = self.start[i]
            limit = int((end - start) / interval - 1e-9) + 1 if end > start else 0
            pos = 0  # attempts made by this account
            for _, _, cohort in queue:
                if pos >= limit:
                    break
                prev = 0
                if cohort >= 0:
                    for order in registry.orders(cohort):
                        gap = order - prev - 1
                        if gap >= GIVE_UP:
                            break
                        pos += gap
                        if pos >= limit:
                            break
                        found[i] += 1
                        exposed.append(start + pos * interval)
                        pos += 1
                        prev = order
                pos += min(GIVE_UP, 999 - prev)
            attempts += min(pos, limit)
        return exposed, found, attempts


class _Shared(Attack):
    """One walk shared by every account (``spread`` and its variants)."""

    def __init__(self, name: str, walk: NumberSource, accounts: list[str], interval: float,
                 start: float, seed: int) -> None:  # fmt: skip
        super().__init__(name, accounts, interval, start, seed)
        self.walk = walk

    def next_nir(self, account: int) -> str | None:
        return self.walk.next()

    def feedback(self, account: int, found: bool) -> None:
        self.walk.feedback(found)


class _Rotating(_Shared):
    """Shifts of 8 hours: account ``i`` works in shift ``i % 3``, three times as fast."""

    def __init__(
        self, walk: Walk, accounts: list[str], interval: float, start: float, seed: int
    ) -> None:
        super().__init__("spread-rotating", walk, accounts, interval / _SHIFTS, start, seed)
        self.start = [self._on_shift(i, t) for i, t in enumerate(self.start)]

    def _on_shift(self, account: int, t: float) -> float:
        length = 86_400.0 / _SHIFTS
        shift = account % _SHIFTS
        day = t // 86_400.0
        begin = day * 86_400.0 + shift * length
        if t < begin:
            return begin
        if t < begin + length:
            return t
        return begin + 86_400.0

    def next_time(self, account: int, now: float) -> float:
        return self._on_shift(account, now + self.interval)


class _List(Attack):
    """The leaked list, split between the accounts (account ``i`` takes entries
    ``i, i + n, i + 2n, ...``); optionally one person per cohort per account,
    and re-lookups of people already found mixed in (``padding``)."""

    def __init__(self, name: str, registry: Registry, material: AttackMaterial,
                 accounts: list[str], interval: float, start: float, seed: int, *,
                 distinct_cohorts: bool = False, padding: float = 0.0,
                 **options: object) -> None:  # fmt: skip
        super().__init__(name, accounts, interval, start, seed, **options)  # type: ignore[arg-type]
        n = len(accounts)
        self.material = material
        self.registry = registry
        self.cursor = list(range(n))
        self.step = n
        self.used: list[set[int]] | None = [set() for _ in range(n)] if distinct_cohorts else None
        self.padding = padding
        self.rng = random.Random(f"padding:{seed}")
        self.found: list[list[str]] = [[] for _ in range(n)]
        self.last: list[str] = [""] * n

    def next_nir(self, account: int) -> str | None:
        found = self.found[account]
        if self.padding and found and self.rng.random() < self.padding:
            self.last[account] = ""
            return found[self.rng.randrange(len(found))]
        material, registry = self.material, self.registry
        while True:
            k = self.cursor[account]
            if k >= material.leak_size:
                return None
            self.cursor[account] = k + self.step
            person = material.leaked(k)
            cohort = registry.cohort_of(person)
            if self.used is not None:  # never two people of one cohort on one account
                if cohort in self.used[account]:
                    continue
                self.used[account].add(cohort)
            number = registry.nir(person, cohort)
            self.last[account] = number
            return number

    def feedback(self, account: int, found: bool) -> None:
        if found and self.padding and self.last[account]:
            self.found[account].append(self.last[account])

    def unguarded(self, registry: Registry, end: float) -> tuple[array[float], list[int], int]:
        plain = self.used is None and not self.padding and self.hours is None
        if not plain or type(self).next_time is not Attack.next_time:
            return super().unguarded(registry, end)
        # Every attempt finds someone new: the k-th attempt of account i is entry i + k * n.
        exposed = array("d")
        found = [0] * len(self.accounts)
        material = self.material
        for i, start in enumerate(self.start):
            if end <= start:
                continue
            count = int((end - start) / self.interval - 1e-9) + 1
            count = min(count, len(range(i, material.leak_size, self.step)))
            found[i] = count
            exposed.extend(start + j * self.interval for j in range(count))
        return exposed, found, sum(found)


class _Burst(_List):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.in_burst = [0] * len(self.accounts)
        self.burst_start = list(self.start)

    def next_time(self, account: int, now: float) -> float:
        self.in_burst[account] += 1
        if self.in_burst[account] < _BURST:
            return now + _BURST_GAP
        self.in_burst[account] = 0
        start = self.burst_start[account] + _BURST_EVERY
        while start <= now:
            start += _BURST_EVERY
        self.burst_start[account] = start
        return start


def _ids(strategy: str, accounts: int | list[str]) -> list[str]:
    if isinstance(accounts, list):
        return accounts
    if accounts < 1:
        raise ValueError("an attack needs at least one account")
    return [f"stolen-{i:02d}" for i in range(accounts)]


def _walk(strategy: str, material: AttackMaterial, seed: int) -> NumberSource:
    if strategy == "spread-random":
        return RandomWalk(material.queue, material.tops, random.Random(f"attack:{strategy}:{seed}"))
    if strategy == "spread-parallel":
        return ParallelWalk(material.queue, _PARALLEL)
    if strategy == "spread-wide":
        return ParallelWalk(material.queue, _WIDE)
    return Walk(material.queue)


def build_attack(
    strategy: str,
    registry: Registry,
    *,
    accounts: int | list[str] = 19,
    policy: Mapping[str, object] | None = None,
    seed: int = 0,
    material: AttackMaterial | None = None,
    start: float = ATTACK_OFFSET,
    tactics: Tactics | None = None,
) -> Attack:
    """Build the script of ``strategy`` for its stolen accounts.

    Args:
        strategy: one of :data:`STRATEGIES`.
        registry: the people the portal holds.
        accounts: number of stolen accounts (ids ``stolen-00``, ...), or their
            ids (for :data:`OWNED` strategies, legitimate accounts' ids).
        policy: quota name -> rate string; sets the pace of the paced scripts.
        seed: random seed.
        material: from :func:`~nirguard.replay.walks.attack_material` (built here when ``None``).
        start: time of the first attempt (seconds from the replay's day 0).
        tactics: the answer to a refusal, instead of the strategy's own (:data:`TACTICS`).

    Raises:
        ValueError: unknown strategy, or fewer than one account.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    ids = _ids(strategy, accounts)
    material = material or attack_material(registry, seed)
    paced = slow_interval(policy or {})
    attack = _make(strategy, registry, material, ids, paced, start, seed)
    attack.tactics = tactics or TACTICS.get(strategy, attack.tactics)
    attack.paced = paced
    return attack


def _make(strategy: str, registry: Registry, material: AttackMaterial, ids: list[str],
          paced: float, start: float, seed: int) -> Attack:  # fmt: skip
    if strategy == "enumeration":
        return _Enumeration(material, ids, start, seed)
    if strategy == "spread-rotating":
        return _Rotating(Walk(material.queue), ids, paced, start, seed)
    if strategy.startswith("spread"):
        return _Shared(strategy, _walk(strategy, material, seed), ids, paced, start, seed)
    if strategy == "burst":
        return _Burst(strategy, registry, material, ids, _BURST_GAP, start, seed)
    if strategy == "slow":
        return _List(strategy, registry, material, ids, paced, start, seed, distinct_cohorts=True)
    if strategy in ("gp-paced", "padded", *OWNED):
        hours = Hours(
            _GP_DAY, office=strategy != "owner-24-7", seed=seed,
            blocks=NIGHT if strategy == "owner-night" else None,
        )  # fmt: skip
        return _List(
            strategy, registry, material, ids, paced, start, seed, distinct_cohorts=True,
            padding=_PADDING if strategy in ("padded", "owner-padded") else 0.0,
            hours=hours, owners=strategy in OWNED, churn=strategy == "owner-churn",
        )  # fmt: skip
    return _List(strategy, registry, material, ids, FAST_INTERVAL, start, seed)
