"""The policies the replay recommends, and the sweep that chose them.

``python -m nirguard.replay.tuning [--people N] [--practitioners N]`` replays
every candidate policy below and prints, for each, the identities exposed
per strategy and the legitimate lookups refused: the trade-off curve of
``docs/replay.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

__all__ = [
    "CANDIDATES",
    "DESK_POLICY",
    "RECOMMENDED",
    "desk_policy",
    "main",
    "recommended_policy",
    "sweep",
]

#: Policy of the high-volume desks (hospital admissions, pharmacies): a
#: desk serves hundreds of different people a day, many born in the local
#: maternity, so volume quotas are an order of magnitude above a GP's and the
#: cohort signal tolerates more people per cohort.
DESK_POLICY: Final[dict[str, Any]] = {
    "lookups": "60/minute;1500/day",
    "distinct_patients": "1000/day",
    "invalid_nirs": "20/hour",
    "misses": "30/hour",
    "portal": None,
    "lockout": "1 hour",
    "lockout_escalation": ["1 day", None],
    "cohort": "8/day",
    "portal_cohort": "30/day",
    "miss_ratio": 0.5,
    "miss_ratio_min_lookups": 50,
}

#: What the replay recommends changing in the practitioners' default policy
#: (``docs/replay.md``): a short window on new patients stops a fast list
#: harvest within a few lookups, and a weekly cap bounds a slow one.
RECOMMENDED: Final[dict[str, Any]] = {
    "distinct_patients": "8/10 minutes;100/day;300/7 days",
}

#: Candidate policies for practitioners, from loose to tight (fields not
#: named keep the shipped default), then the recommended policy with one
#: detection option off at a time.
CANDIDATES: Final[dict[str, dict[str, Any]]] = {
    "shipped": {},
    "burst10": {"distinct_patients": "10/10 minutes;100/day"},
    "burst8": {"distinct_patients": "8/10 minutes;100/day"},
    "burst8-week350": {"distinct_patients": "8/10 minutes;100/day;350/7 days"},
    "burst8-week300": {"distinct_patients": "8/10 minutes;100/day;300/7 days"},
    "burst8-week250": {"distinct_patients": "8/10 minutes;100/day;250/7 days"},
    "burst8-week200": {"distinct_patients": "8/10 minutes;100/day;200/7 days"},
    "burst8-week150": {"distinct_patients": "8/10 minutes;100/day;150/7 days"},
    "burst8-week275": {"distinct_patients": "8/10 minutes;100/day;275/7 days"},
    "burst10-week300": {"distinct_patients": "10/10 minutes;100/day;300/7 days"},
    "recommended": RECOMMENDED,
    "recommended-no-cohort": {**RECOMMENDED, "cohort": None},
    "recommended-no-portal-cohort": {**RECOMMENDED, "portal_cohort": None},
    "recommended-no-miss-ratio": {**RECOMMENDED, "miss_ratio": None},
    "recommended-no-escalation": {**RECOMMENDED, "lockout_escalation": ()},
    "recommended-cohort-3": {**RECOMMENDED, "cohort": "3/day"},
    "recommended-portal-cohort-20": {**RECOMMENDED, "portal_cohort": "20/day"},
}


def _policy(data: dict[str, Any]) -> QuotaPolicy:
    from nirguard.policy import QuotaPolicy

    known = set(QuotaPolicy.model_fields)
    return QuotaPolicy(**{k: v for k, v in data.items() if k in known})


def recommended_policy() -> QuotaPolicy:
    """The shipped default with the replay's :data:`RECOMMENDED` changes.

    Raises:
        PolicyError: the installed ``QuotaPolicy`` refuses it.
    """
    from nirguard.policy import QuotaPolicy

    return _policy({**QuotaPolicy().model_dump(), **RECOMMENDED})


def desk_policy() -> QuotaPolicy:
    """The recommended policy of hospital and pharmacy desks, as a ``QuotaPolicy``.

    Raises:
        PolicyError: the installed ``QuotaPolicy`` refuses it.
    """
    return _policy(DESK_POLICY)


def sweep(
    candidates: dict[str, dict[str, Any]],
    *,
    people: int = 1_000_000,
    practitioners: int = 2000,
    seed: int = 0,
    jobs: int = 2,
) -> Iterator[dict[str, Any]]:
    """Replay each candidate policy; yields one summary row per candidate.

    Raises:
        PolicyError: a candidate is not a valid policy.
    """
    from nirguard.replay.runner import ReplaySettings, run_replay

    for name, fields in candidates.items():
        from nirguard.policy import QuotaPolicy

        base = QuotaPolicy().model_dump()
        base.update(fields)
        result = run_replay(
            ReplaySettings(
                seed=seed,
                people=people,
                practitioners=practitioners,
                configurations=("none", "detection"),
                policy=_policy(base),
                desk_policy=desk_policy(),
                jobs=jobs,
            )
        )
        row: dict[str, Any] = {"candidate": name, "fields": fields}
        refused = 0
        for o in result.outcomes:
            if o.configuration == "detection":
                none = result.outcome(o.strategy, "none")
                row[f"{o.strategy}_exposed"] = o.exposed
                row[f"{o.strategy}_share"] = o.exposed / none.exposed if none.exposed else 0.0
                row[f"{o.strategy}_per_account"] = o.exposed_per_account_max
                row[f"{o.strategy}_alert_after"] = o.first_alert_account_lookups
                refused = max(refused, o.legit_refused)
                row["legit_lookups"] = o.legit_lookups
                row["legit_alerted"] = max(row.get("legit_alerted", 0), o.legit_alerted)
        row["legit_refused"] = refused
        row["legit_refused_rate"] = (
            refused / row["legit_lookups"] if row.get("legit_lookups") else 0
        )
        row["seed"] = seed
        yield row


def main(argv: Sequence[str] | None = None) -> int:
    """Print the trade-off curve of :data:`CANDIDATES` as JSON lines."""
    import json

    parser = argparse.ArgumentParser(prog="python -m nirguard.replay.tuning")
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--practitioners", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", action="append", help="candidate names to run")
    args = parser.parse_args(argv)
    chosen = {k: v for k, v in CANDIDATES.items() if not args.only or k in args.only}
    for row in sweep(
        chosen, people=args.people, practitioners=args.practitioners, seed=args.seed, jobs=args.jobs
    ):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
