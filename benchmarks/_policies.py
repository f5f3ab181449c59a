"""Policies the Redis benchmarks share: the shipped default's shape with quotas raised."""

from __future__ import annotations

import re

from nirguard import QuotaPolicy

# Fields holding "N/period;M/period" rates (None = off). Amounts are multiplied, windows kept.
RATE_FIELDS = (
    "lookups",
    "distinct_patients",
    "invalid_nirs",
    "misses",
    "portal",
    "cohort",
    "portal_cohort",
    "break_glass",
)


def scaled(policy: QuotaPolicy, factor: int) -> QuotaPolicy:
    """``policy`` with every rate amount multiplied by ``factor``: the same checks, windows,
    keys and store work per lookup, but a load test is not refused by quotas."""
    changes: dict[str, object] = {}
    for name in RATE_FIELDS:
        value = getattr(policy, name, None)
        if isinstance(value, str):
            changes[name] = re.sub(r"\d+(?=\s*/)", lambda m: str(int(m.group()) * factor), value)
    if getattr(policy, "miss_ratio_min_lookups", None) is not None:
        changes["miss_ratio_min_lookups"] = policy.miss_ratio_min_lookups * factor
    if getattr(policy, "hot_cohort_min", None) is not None:
        changes["hot_cohort_min"] = policy.hot_cohort_min * factor
    return policy.model_copy(update=changes)


def default_scaled(factor: int = 100_000) -> QuotaPolicy:
    """The shipped ``QuotaPolicy()`` (every default check on) with quotas x ``factor``."""
    policy = scaled(QuotaPolicy(), factor)
    return QuotaPolicy(**policy.model_dump())  # re-validated


FULL = QuotaPolicy(
    lookups="1000000/minute;10000000/day",
    distinct_patients="10000000/day",
    invalid_nirs="1000/hour",
    misses="1000000/hour",
    portal="100000000/hour",
    cohort="1000000/day",
    portal_cohort="10000000/day",
    miss_ratio=0.99,
    miss_ratio_min_lookups=1000000,
)
"""Every quota on, portal-wide ones included (the memory benchmark's policy since 0.1)."""
