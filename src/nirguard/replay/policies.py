"""The replay's policies: which policy each kind of account gets, and their variants.

The GPs' policy is ``QuotaPolicy()`` as shipped (:func:`nirguard.profiles.gp`).
High-volume desks (hospital admissions, pharmacies) get the desk profile,
:func:`nirguard.profiles.desk` (:data:`DESK_POLICY` holds its fields);
:func:`profile` looks a kind up in :mod:`nirguard.profiles`. :func:`without_detection` makes
the ``quotas`` configuration (plain rate limits).
"""

from __future__ import annotations

from typing import Any, Final

from nirguard.errors import ConfigurationError
from nirguard.policy import QuotaPolicy
from nirguard.profiles import desk as _desk
from nirguard.profiles import for_kind

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

#: Policy of the high-volume desks (hospital admissions, pharmacies) as JSON-like
#: fields: :func:`nirguard.profiles.desk`'s fields that differ from
#: ``QuotaPolicy()``'s, and its name. The profile lives in :mod:`nirguard.profiles`.
_DEFAULT: Final = QuotaPolicy().model_dump(mode="json")
DESK_POLICY: Final[dict[str, Any]] = {
    name: value
    for name, value in _desk().model_dump(mode="json").items()
    if name == "name" or value != _DEFAULT[name]
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
    known = set(QuotaPolicy.model_fields)
    fields = {k: v for k, v in data.items() if k in known}
    for name, value in fields.items():
        if isinstance(value, list):
            fields[name] = tuple(value)
    return QuotaPolicy(**fields)


def desk_policy() -> QuotaPolicy:
    """The replay's policy of hospital and pharmacy desks: :func:`nirguard.profiles.desk`."""
    return _desk()


def profile(name: str) -> QuotaPolicy | None:
    """The profile of an account kind or profile name (:func:`nirguard.profiles.for_kind`);
    ``None`` when :mod:`nirguard.profiles` ships none for it.

    >>> profile("pharmacy").name, profile("submarine")
    ('desk', None)
    """
    try:
        return for_kind(name)
    except ConfigurationError:
        return None


def policy_dict(policy: QuotaPolicy) -> dict[str, Any]:
    """The fields of a policy as plain JSON values."""
    return dict(policy.model_dump(mode="json"))


def named(policy: QuotaPolicy, name: str) -> QuotaPolicy:
    """``policy`` with ``name`` set, unless it already has one."""

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
