"""The replay's policies: which policy each kind of account gets, and their variants.

The GPs' policy is ``QuotaPolicy()`` as shipped. High-volume desks
(hospital admissions, pharmacies) get :data:`DESK_POLICY`, unless
:mod:`nirguard.profiles` ships a profile for their kind, which then wins:
:func:`profile` looks a kind up there first. :func:`without_detection` makes
the ``quotas`` configuration (plain rate limits).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

__all__ = [
    "DESK_POLICY",
    "QUOTA_FIELDS",
    "desk_policy",
    "named",
    "policy_dict",
    "policy_from",
    "profile",
    "without_detection",
]

#: Policy of the high-volume desks (hospital admissions, pharmacies): a desk
#: serves hundreds of different people a day, so volume quotas are an order
#: of magnitude above a GP's and the cohort signal tolerates more people per
#: cohort. Fields not named keep ``QuotaPolicy()``'s defaults.
DESK_POLICY: Final[dict[str, Any]] = {
    "name": "desk",
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
#: Policy fields the ``quotas`` configuration keeps; every other field that can
#: be switched off (``None``, or an empty escalation) is switched off.
QUOTA_FIELDS: Final = frozenset(
    {
        "name",
        "lookups",
        "distinct_patients",
        "invalid_nirs",
        "misses",
        "portal",
        "lockout",
        "lockout_memory",
        "break_glass",
        "break_glass_access",
    }
)
#: Off values to try for detection fields, before ``None``.
_OFF: Final[dict[str, object]] = {"lockout_escalation": ()}


def policy_from(data: dict[str, Any]) -> QuotaPolicy:
    """A policy from JSON-like fields (unknown fields ignored, lists made tuples).

    Raises:
        PolicyError: the installed ``QuotaPolicy`` refuses it.
    """
    from nirguard.policy import QuotaPolicy

    known = set(QuotaPolicy.model_fields)
    fields = {k: v for k, v in data.items() if k in known}
    for name, value in fields.items():
        if isinstance(value, list):
            fields[name] = tuple(value)
    return QuotaPolicy(**fields)


def desk_policy() -> QuotaPolicy:
    """The replay's policy of hospital and pharmacy desks, as a ``QuotaPolicy``.

    Raises:
        PolicyError: the installed ``QuotaPolicy`` refuses it.
    """
    return policy_from(DESK_POLICY)


def profile(name: str) -> QuotaPolicy | None:
    """The profile ``name`` shipped by :mod:`nirguard.profiles` (by attribute, upper
    case, or through a ``get``/``PROFILES`` mapping); ``None`` when there is none."""
    try:
        module = importlib.import_module("nirguard.profiles")
    except ImportError:
        return None
    from nirguard.policy import QuotaPolicy

    found: object = getattr(module, name.upper(), None)
    table = getattr(module, "PROFILES", None)
    if found is None and isinstance(table, dict):
        found = table.get(name)
    return found if isinstance(found, QuotaPolicy) else None


def policy_dict(policy: QuotaPolicy) -> dict[str, Any]:
    """The fields of a policy as plain JSON values."""
    return dict(policy.model_dump(mode="json"))


def named(policy: QuotaPolicy, name: str) -> QuotaPolicy:
    """``policy`` with ``name`` set, unless it already has one."""
    from nirguard.policy import QuotaPolicy

    if policy.name is not None:
        return policy
    return QuotaPolicy(**{**policy.model_dump(), "name": name})


def without_detection(policy: QuotaPolicy) -> QuotaPolicy:
    """The same quotas with every detection signal off.

    Fields outside :data:`QUOTA_FIELDS` are switched off when the policy
    accepts ``None`` (or an empty tuple) for them; parameters of a signal
    that cannot be off (such as ``miss_ratio_min_lookups``) are kept.
    """
    from nirguard.errors import PolicyError
    from nirguard.policy import QuotaPolicy

    data = policy.model_dump()
    for name in data:
        if name in QUOTA_FIELDS:
            continue
        for off in (_OFF.get(name, None), None, ()):
            try:
                QuotaPolicy(**{**data, name: off})
            except PolicyError:
                continue
            data[name] = off
            break
    return QuotaPolicy(**data)
