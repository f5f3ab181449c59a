"""What ``nirguard status`` / ``nirguard unlock`` and the Django commands share.

An operator looks a practitioner up and lifts a lockout from the store the
portal uses, with the portal's settings (:mod:`nirguard.config`); every unlock
is audited with who did it and why, so an unlock without an audit trail to
record it in is refused.
"""

from __future__ import annotations

import getpass
import math
from typing import Any

from nirguard._hook_files import iso_time
from nirguard.config import GuardSettings, redact_uri
from nirguard.errors import ConfigurationError
from nirguard.guard import GuardStatus, LookupGuard
from nirguard.keys import SecretKey
from nirguard.pseudonym import Pseudonymiser

__all__ = [
    "MAX_NOTE",
    "default_actor",
    "ops_guard",
    "status_record",
    "status_text",
    "unlock_arguments",
]

MAX_NOTE = 500  # characters of an unlock's reason kept; the audit masks NIR-shaped runs in it


def ops_guard(settings: GuardSettings, *, audited: bool, **overrides: Any) -> LookupGuard:
    """A guard over the portal's store for one admin command.

    The pseudonym key is not needed to read or reset a practitioner's state:
    without ``NIRGUARD_KEY`` a throwaway one is used. No metrics are recorded.

    Raises:
        ConfigurationError: the store is not shared (``memory://`` lives in one
            process), or ``audited`` and no audit trail is configured.
    """
    if not settings.shared:
        raise ConfigurationError(
            "NIRGUARD_STORAGE is memory:// (or unset): this command would see a store of its "
            "own, not the portal's; point it at the portal's shared store (redis://...)"
        )
    if audited and settings.audit_log is None and "audit" not in overrides:
        raise ConfigurationError(
            "no audit trail to record the unlock in: set NIRGUARD_AUDIT_LOG (or pass "
            "--audit-log FILE); every unlock is audited with who did it and why"
        )
    if settings.key is None and "pseudonymiser" not in overrides:
        overrides["pseudonymiser"] = Pseudonymiser(SecretKey.generate("ops"), purpose="guard")
    overrides.setdefault("metrics", False)
    return settings.build(**overrides)


def default_actor() -> str:
    """Who runs the command, as the operating system knows them."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's anonymous uid)
        return "unknown"


def unlock_arguments(by: str | None, reason: str | None) -> tuple[str, str]:
    """The actor and the reason of an unlock, checked.

    Raises:
        ConfigurationError: no reason, or an actor that is empty or too long.
    """
    actor = (by if by is not None else default_actor()).strip()
    if not actor or len(actor) > 128 or not actor.isprintable():
        raise ConfigurationError("--by must be 1 to 128 printable characters")
    note = (reason or "").strip()
    if not note:
        raise ConfigurationError("an unlock needs a reason (--reason TEXT)")
    return actor, note[:MAX_NOTE]


def _until(status: GuardStatus) -> str | None:
    if status.locked_until is None:
        return None
    if math.isinf(status.locked_until):
        return "until unlocked"
    return iso_time(status.locked_until)


def status_record(status: GuardStatus, settings: GuardSettings | None = None) -> dict[str, Any]:
    """``status`` as JSON-ready data (times in ISO 8601, UTC)."""
    record: dict[str, Any] = {
        "practitioner": status.practitioner,
        "locked": status.locked,
        "locked_until": _until(status),
        "lockout_level": status.lockout_level,
        "remaining": dict(status.remaining),
    }
    baseline = getattr(status, "baseline", None)
    if baseline is not None:
        record["baseline"] = dict(baseline)
    if settings is not None:
        record["store"] = redact_uri(settings.storage)
    return record


def status_text(status: GuardStatus, settings: GuardSettings | None = None) -> str:
    """``status`` for a person: one line per fact."""
    record = status_record(status, settings)
    lines = [f"practitioner   {record['practitioner']}"]
    if "store" in record:
        lines.append(f"store          {record['store']}")
    lines.append(f"locked         {'yes, ' + record['locked_until'] if status.locked else 'no'}")
    lines.append(f"lockout level  {record['lockout_level']}")
    quotas = ", ".join(
        f"{name} {'off' if left is None else left}" for name, left in record["remaining"].items()
    )
    lines.append(f"remaining      {quotas}")
    if "baseline" in record:
        usual = ", ".join(f"{name} {value:g}" for name, value in record["baseline"].items())
        lines.append(f"baseline       {usual}")
    return "\n".join(lines)
