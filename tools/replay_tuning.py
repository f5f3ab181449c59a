"""Candidate policies, run fast, one JSON row each: how the default policy is tuned.

``python tools/replay_tuning.py`` builds the replay's world once per
scale and replays every candidate on it, printing one JSON line per
candidate and scale: legitimate lookups refused (GPs and desks, attack week
and all weeks), accounts locked (and by portal-wide signals), identities
exposed and lookups before the first signal per strategy, and which
targets are met. Candidates name only the fields they change; the others
keep ``QuotaPolicy()``'s defaults.

Examples::

    python tools/replay_tuning.py                         # every candidate, scale 0.25
    python tools/replay_tuning.py --only shipped --scales 1,3,10 --quick
    python tools/replay_tuning.py --candidate 'hot5={"hot_cohort": 5}' --candidate shipped
    python tools/replay_tuning.py --candidates my-candidates.json   # {"name": {fields}, ...}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

__all__ = ["CANDIDATES", "main", "sweep"]

#: Candidate changes to the GPs' policy (fields not named keep the shipped
#: default). ``shipped`` is ``QuotaPolicy()`` itself.
CANDIDATES: Final[dict[str, dict[str, Any]]] = {
    "shipped": {},
    "hot-cohort-3": {"hot_cohort": 3.0},
    "hot-cohort-6": {"hot_cohort": 6.0},
    "hot-cohort-min-10": {"hot_cohort_min": 10},
    "hot-cohort-min-25": {"hot_cohort_min": 25},
    "hot-cohort-reason": {"hot_cohort_action": "reason"},
    "portal-cohort-3": {"portal_cohort": "3/day;10/7 days"},
    "portal-cohort-8": {"portal_cohort": "8/day;15/7 days"},
    "portal-cohort-off": {"portal_cohort": None},
    "cohort-3": {"cohort": "3/day"},
    "break-glass-2": {"break_glass": "2/day;5/7 days"},
    "no-escalation": {"lockout_escalation": ()},
}


def candidate_policy(fields: dict[str, Any]) -> QuotaPolicy:
    """``QuotaPolicy()`` with ``fields`` changed.

    Raises:
        PolicyError: not a valid policy.
    """
    from nirguard.policy import QuotaPolicy
    from nirguard.replay.policies import policy_from

    return policy_from({**QuotaPolicy().model_dump(), **fields})


def sweep(
    candidates: dict[str, dict[str, Any]],
    *,
    scales: Sequence[float] = (0.25,),
    history_weeks: int = 3,
    attack_days: int = 7,
    strategies: Sequence[str] | None = None,
    seed: int = 0,
    jobs: int = 1,
    shadow: bool = False,
) -> Iterator[dict[str, Any]]:
    """Replay each candidate at each scale; yields one row per pair.

    The world (registry, legitimate weeks) is built once per scale and shared
    by the candidates.

    Raises:
        PolicyError: a candidate is not a valid policy.
    """
    from nirguard.replay.attacks import STRATEGIES
    from nirguard.replay.report import scale_row, targets
    from nirguard.replay.runner import run_replay
    from nirguard.replay.world import ReplaySettings, build_world

    policies = {name: candidate_policy(fields) for name, fields in candidates.items()}
    for scale in scales:
        base = ReplaySettings(
            seed=seed,
            scale=scale,
            history_weeks=history_weeks,
            attack_days=attack_days,
            strategies=tuple(strategies or STRATEGIES),
            configurations=("guard",),
            shadow=shadow,
            jobs=jobs,
        )
        world = None
        for name, policy in policies.items():
            started = time.perf_counter()
            settings = dataclasses.replace(base, policy=policy)
            if world is None:
                world = build_world(settings)
            result = run_replay(settings, world=world)
            row: dict[str, Any] = {"candidate": name, "fields": candidates[name]}
            row.update(scale_row(result))
            row["asked_reason"] = max(
                (sum(o.legit.asked.values()) for o in result.outcomes if o.legit), default=0
            )
            row["targets_met"] = all(t.met for t in targets(result))
            row["targets"] = {t.name: t.met for t in targets(result)}
            row["seconds"] = round(time.perf_counter() - started, 1)
            yield row


def _candidates(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    chosen: dict[str, dict[str, Any]] = {}
    if args.candidates:
        loaded = json.loads(Path(args.candidates).read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError("--candidates: expected a JSON object {name: {field: value}}")
        chosen.update(loaded)
    for item in args.candidate or ():
        name, _, text = item.partition("=")
        if not text:
            if name not in CANDIDATES:
                raise ValueError(f"unknown candidate {name!r}")
            chosen[name] = CANDIDATES[name]
        else:
            fields = json.loads(text)
            if not isinstance(fields, dict):
                raise ValueError(f"--candidate {name}: expected a JSON object")
            chosen[name] = fields
    if not chosen:
        chosen = dict(CANDIDATES)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only}
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    """Print one JSON line per candidate and scale."""
    from nirguard.errors import PolicyError

    parser = argparse.ArgumentParser(
        prog="python tools/replay_tuning.py",
        description="Replay candidate policies; one JSON line per candidate and scale.",
    )
    parser.add_argument("--scales", default="0.25", help="comma-separated scales (default 0.25)")
    parser.add_argument("--history-weeks", type=int, default=3)
    parser.add_argument("--attack-days", type=int, default=7)
    parser.add_argument(
        "--quick", action="store_true", help="1 week of history, 2 attack days, 4 strategies"
    )
    parser.add_argument("--strategy", action="append", help="strategies to run (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--shadow", action="store_true", help="also run the shadow-mode check")
    parser.add_argument(
        "--candidate", action="append", help="NAME (a built-in) or NAME=JSON fields; repeat"
    )
    parser.add_argument("--candidates", help="a JSON file {name: {field: value}}")
    parser.add_argument("--only", action="append", help="keep only these candidate names")
    args = parser.parse_args(argv)
    try:
        candidates = _candidates(args)
        scales = [float(s) for s in args.scales.split(",") if s.strip()]
    except (ValueError, OSError) as exc:
        print(f"tuning: {exc}", file=sys.stderr)
        return 2
    strategies = args.strategy
    history, days = args.history_weeks, args.attack_days
    if args.quick:
        from nirguard._cli_simulate import QUICK_DAYS, QUICK_HISTORY, QUICK_STRATEGIES

        strategies = strategies or list(QUICK_STRATEGIES)
        history, days = QUICK_HISTORY, QUICK_DAYS
    try:
        for row in sweep(
            candidates,
            scales=scales,
            history_weeks=history,
            attack_days=days,
            strategies=strategies,
            seed=args.seed,
            jobs=args.jobs,
            shadow=args.shadow,
        ):
            print(json.dumps(row), flush=True)
    except PolicyError as exc:
        print(f"tuning: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
