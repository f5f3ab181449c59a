"""A small deterministic optimiser over :class:`~nirguard.replay.adversary.Bot`: the worst case.

:func:`search` plays bots against a policy through the real guard
(:func:`~nirguard.replay.adversary.play`): given starting bots, then random
bots, then mutations of the best so far, all from one seed. Two spaces:
``fast`` bots never wait but for lockouts, ``any`` bots may also pace
themselves under every window. tests/test_bound_search.py checks that what it
finds never beats :func:`nirguard.profiles.worst_case`.

>>> from nirguard import profiles
>>> found = search(profiles.gp(), space="fast", days=1, evaluations=3, seed=1)
>>> found.outcome.obtained <= profiles.worst_case(profiles.gp(), days=1).fast
True
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, Literal

from nirguard.replay.adversary import FAST_GAP, Bot, OnReason, Outcome, play

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

__all__ = ["Found", "Space", "attackers", "search"]

DAY: Final = 86_400.0
Space = Literal["fast", "any"]
_REASONS: Final[tuple[OnReason, ...]] = ("move_on", "retry", "reason", "wait")


def _random_bot(rng: random.Random, space: Space, fastest: float) -> Bot:
    fast = space == "fast"
    gap = rng.uniform(1.0, fastest) if fast else 10 ** rng.uniform(0, 4)
    return _fit(
        Bot(
            gap=gap,
            burst=0 if fast or rng.random() < 0.5 else rng.randint(1, 400),
            pause=0.0 if fast else 10 ** rng.uniform(1, 5.3),
            on_reason=rng.choice(_REASONS),
            retries=rng.randint(0, 20),
            wait=0.0 if fast else 10 ** rng.uniform(1, 5),
            waits_out=rng.random() < 0.8,
            waits_quota=not fast and rng.random() < 0.5,
            repeats=rng.choice((0, 0, rng.randint(1, 5))),
            same_cohort=rng.choice((0.0, 0.0, rng.uniform(0, 1))),
            office=not fast and rng.random() < 0.2,
            seed=rng.randrange(1 << 30),
        ),
        space,
        fastest,
    )


def _fit(bot: Bot, space: Space, fastest: float) -> Bot:
    """``bot`` held inside its space (a fast bot asks at least every ``fastest``
    seconds and never waits but for lockouts)."""
    bot = replace(bot, repeats=min(max(bot.repeats, 0), 20))
    fits = fastest / (bot.repeats + 1) if space == "fast" else 7 * DAY
    gap = min(max(bot.gap, 0.1), fits)
    bot = replace(bot, gap=gap, burst=max(0, bot.burst), retries=max(0, bot.retries))
    bot = replace(bot, same_cohort=min(max(bot.same_cohort, 0.0), 1.0))
    if space == "fast":
        bot = replace(bot, burst=0, pause=0.0, wait=min(bot.wait, gap))
        bot = replace(bot, waits_quota=False, office=False)
    return bot


def _change(bot: Bot, name: str, rng: random.Random) -> Bot:
    """``bot`` with its parameter ``name`` moved a little (flags flipped)."""
    scale = 2 ** rng.uniform(-1.5, 1.5)
    shift = rng.uniform(-60, 60)
    if name == "gap":
        return replace(bot, gap=bot.gap * scale)
    if name == "pause":
        return replace(bot, pause=max(0.0, bot.pause * scale + shift))
    if name == "wait":
        return replace(bot, wait=max(0.0, bot.wait * scale + shift))
    if name == "burst":
        return replace(bot, burst=max(0, int(bot.burst * scale) + rng.randint(-3, 3)))
    if name == "retries":
        return replace(bot, retries=max(0, int(bot.retries * scale) + rng.randint(-3, 3)))
    if name == "repeats":
        return replace(bot, repeats=bot.repeats + rng.randint(-2, 2))
    if name == "same_cohort":
        return replace(bot, same_cohort=bot.same_cohort + rng.uniform(-0.3, 0.3))
    if name == "on_reason":
        return replace(bot, on_reason=rng.choice(_REASONS))
    if name == "waits_out":
        return replace(bot, waits_out=not bot.waits_out)
    if name == "waits_quota":
        return replace(bot, waits_quota=not bot.waits_quota)
    return replace(bot, office=not bot.office)


_KNOBS: Final = (
    "gap",
    "burst",
    "pause",
    "on_reason",
    "retries",
    "wait",
    "waits_out",
    "waits_quota",
    "repeats",
    "same_cohort",
    "office",
)


def _mutate(bot: Bot, rng: random.Random, space: Space, fastest: float) -> Bot:
    """``bot`` with one or two of its parameters changed."""
    for _ in range(rng.randint(1, 2)):
        bot = _change(bot, rng.choice(_KNOBS), rng)
    return _fit(bot, space, fastest)


@dataclass
class Found:
    """What :func:`search` found: the best bot, what it obtained, and every bot tried."""

    bot: Bot
    outcome: Outcome
    tried: list[tuple[Bot, int]] = field(default_factory=list)


def attackers(policy: QuotaPolicy, days: float = 7) -> tuple[Bot, ...]:
    """Starting points: the replay's kinds of attacker as bots (a list harvest that
    moves on, bots that retry the refused person (for good, or once and then move
    on), wait for it or state a reason,
    a burst paced under the shortest new-patient window, a script paced under the
    weekly cap)."""
    from nirguard.profiles import worst_case

    cap = max(worst_case(policy, days=days).paced, 1)
    paced = max(days - 2, days / 2) * DAY / cap  # the weekly cap reached with days to spare
    items = policy.items("distinct_patients")
    amount, seconds = (items[0].amount, items[0].get_expiry()) if items else (100, 600)
    return (
        Bot(gap=5.0, on_reason="move_on"),
        Bot(gap=5.0, on_reason="reason"),
        Bot(gap=5.0, on_reason="retry", retries=100_000),
        Bot(gap=60.0, on_reason="retry", retries=100_000),
        Bot(gap=60.0, on_reason="retry", retries=1),
        Bot(gap=5.0, on_reason="wait", wait=5.0),
        Bot(gap=5.0, burst=amount, pause=float(seconds), on_reason="reason"),
        Bot(gap=paced, on_reason="reason"),
        Bot(gap=paced / 2, on_reason="reason", repeats=1, seed=1),
    )


def search(
    policy: QuotaPolicy,
    *,
    space: Space = "fast",
    days: float = 7,
    seed: int = 0,
    evaluations: int = 60,
    seconds: float | None = None,
    starts: tuple[Bot, ...] | None = None,
    max_asks: int = 200_000,
    gap: float = FAST_GAP,
) -> Found:
    """The bot of ``space`` that obtains the most under ``policy`` in ``days`` (fast
    bots: at most ``gap`` seconds between asks).

    Deterministic for a ``seed`` (unless ``seconds`` cuts it short): the
    ``starts`` (default: :func:`attackers`), a third of the ``evaluations``
    as random bots, then mutations of the best so far.
    """
    if starts is None:
        starts = attackers(policy, days)
    rng = random.Random(seed)
    deadline = None if seconds is None else time.monotonic() + seconds
    best: Found | None = None
    tried: list[tuple[Bot, int]] = []
    for n in range(evaluations + len(starts)):
        if n < len(starts):
            bot = _fit(starts[n], space, gap)
        elif best is None or n < len(starts) + evaluations // 3:
            bot = _random_bot(rng, space, gap)
        else:
            bot = _mutate(best.bot, rng, space, gap)
        outcome = play(policy, bot, days=days, max_asks=max_asks)
        tried.append((bot, outcome.obtained))
        if best is None or outcome.obtained > best.outcome.obtained:
            best = Found(bot, outcome)
        if deadline is not None and time.monotonic() > deadline:
            break
    assert best is not None
    best.tried = tried
    return best
