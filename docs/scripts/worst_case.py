"""Print the worst case per profile (docs/default-policy.md, "The worst case per account").

For each shipped profile: the analytic bounds of :func:`nirguard.profiles.worst_case`
and what the adversarial search (:func:`nirguard.replay.search.search`, seeded) finds
through the real guard on ``memory://`` with a simulated clock: bots of every kind
(``any``), fast bots asking at least every 10 s, and at least every minute; and
bots that keep asking while locked (every 10 s or 100 s, never waiting a lockout out):
retrying the refused patient (strikes that escalate), or asking for others (no strike:
compared with the same bots waiting their lockouts out).

    python docs/scripts/worst_case.py [evaluations]
"""

from __future__ import annotations

import sys
import time

from nirguard import QuotaPolicy, profiles
from nirguard.replay.adversary import Bot, play
from nirguard.replay.search import search


def _insisting(policy: QuotaPolicy, gap: float) -> int:
    """The most a bot asking every ``gap`` seconds, locked or not, and retrying the
    refused patient obtains."""
    return play(policy, Bot(gap=gap, on_reason="retry", retries=100_000, waits_out=False)).obtained


def _others(policy: QuotaPolicy, gap: float) -> tuple[int, int]:
    """The most a bot asking every ``gap`` seconds, locked or not, for other patients
    (moving on, or stating a reason at each question) obtains; and the same bots waiting
    their lockouts out."""
    got = {
        waits: max(
            play(policy, Bot(gap=gap, on_reason=how, waits_out=waits)).obtained
            for how in ("move_on", "reason")
        )
        for waits in (False, True)
    }
    return got[False], got[True]


def main(evaluations: int = 40) -> None:
    print(
        "| profile | analytic: any schedule | searched | analytic: fast (10 s) | searched "
        "| searched: fast (1 min) | 19 accounts, fast (10 s / 1 min) "
        "| retrying while locked (10 s / 100 s): analytic | played "
        "| asking for others while locked (10 s / 100 s): played | waiting instead |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, policy in sorted(profiles.PROFILES.items()):
        started = time.perf_counter()
        bound = profiles.worst_case(policy)
        found = {
            label: search(policy, space=space, evaluations=evaluations, seed=0, gap=gap)
            for label, space, gap in (
                ("any", "any", 10.0),
                ("fast", "fast", 10.0),
                ("minute", "fast", 60.0),
            )
        }
        fast, minute = found["fast"].outcome.obtained, found["minute"].outcome.obtained
        paced = profiles.worst_case(policy, gap=100.0)
        others = [_others(policy, gap) for gap in (10.0, 100.0)]
        print(
            f"| {name} | {bound.paced:,} | {found['any'].outcome.obtained:,} | {bound.fast:,} "
            f"| {fast:,} | {minute:,} | {19 * fast:,} / {19 * minute:,} "
            f"| {bound.insisting:,} / {paced.insisting:,} "
            f"| {_insisting(policy, 10.0):,} / {_insisting(policy, 100.0):,} "
            f"| {others[0][0]:,} / {others[1][0]:,} | {others[0][1]:,} / {others[1][1]:,} |",
            flush=True,
        )
        for label, result in found.items():
            print(f"<!-- {name} {label}: {result.bot} {dict(result.outcome.answers)} -->")
        print(f"<!-- {name}: {time.perf_counter() - started:.0f} s -->", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
