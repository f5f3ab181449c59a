"""``nirguard status`` and ``nirguard unlock``: a practitioner's state, and lifting a lockout.

Both read the portal's settings from the environment (``NIRGUARD_STORAGE``,
``NIRGUARD_KEY_PREFIX``, ``NIRGUARD_POLICY*``, ``NIRGUARD_AUDIT_LOG``: see
:mod:`nirguard.config`); the options override them. ``unlock`` is audited
(outcome ``unlocked``, with who and why) and refuses to run without an audit
trail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

_SETTINGS = (
    ("storage", "NIRGUARD_STORAGE"),
    ("key_prefix", "NIRGUARD_KEY_PREFIX"),
    ("policy", "NIRGUARD_POLICY"),
    ("audit_log", "NIRGUARD_AUDIT_LOG"),
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("practitioner", metavar="PRACTITIONER", help="the practitioner id")
    parser.add_argument(
        "--storage", metavar="URI", help="quota store URI (default: $NIRGUARD_STORAGE)"
    )
    parser.add_argument(
        "--key-prefix",
        metavar="PREFIX",
        help="the portal's key prefix (default: $NIRGUARD_KEY_PREFIX)",
    )
    parser.add_argument(
        "--policy",
        metavar="FILE",
        help="the portal's policy, .json or .toml (default: $NIRGUARD_POLICY and "
        "$NIRGUARD_POLICY_<FIELD>, else the shipped default)",
    )


def register(subparsers: Any) -> None:  # argparse._SubParsersAction (a private name)
    """Add the ``status`` and ``unlock`` subcommands."""
    status = subparsers.add_parser(
        "status",
        help="show a practitioner's remaining quotas and lockout",
        description=(
            "Show what is left of each quota for PRACTITIONER, and whether and until when "
            "the account is locked out, from the portal's quota store. Reads the portal's "
            "settings from the environment (NIRGUARD_STORAGE, NIRGUARD_KEY_PREFIX, "
            "NIRGUARD_POLICY...: see docs/config.md); consumes nothing."
        ),
    )
    _common(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(handler=_status)

    unlock = subparsers.add_parser(
        "unlock",
        help="lift a practitioner's lockout (audited, with who and why)",
        description=(
            "Lift the lockout of PRACTITIONER and reset what would lock it again at once "
            "(escalation level, breach counters). The unlock is written to the audit trail "
            "(outcome 'unlocked') with who did it (--by) and why (--reason); without an "
            "audit trail (NIRGUARD_AUDIT_LOG or --audit-log) nothing is done."
        ),
    )
    _common(unlock)
    unlock.add_argument("--reason", metavar="TEXT", required=True, help="why (audited)")
    unlock.add_argument(
        "--by", metavar="NAME", help="who unlocks (audited; default: your login name)"
    )
    unlock.add_argument(
        "--audit-log", metavar="FILE", help="the audit trail (default: $NIRGUARD_AUDIT_LOG)"
    )
    unlock.set_defaults(handler=_unlock)


def _settings(args: argparse.Namespace) -> Any:
    from nirguard.config import GuardSettings

    source: dict[str, Any] = dict(os.environ)
    for option, name in _SETTINGS:
        value = getattr(args, option, None)
        if value is not None:
            source[name] = value
    return GuardSettings.load(source)


def _fail(command: str, exc: BaseException) -> int:
    print(f"nirguard {command}: {exc}", file=sys.stderr)
    return 2


def _status(args: argparse.Namespace) -> int:
    from nirguard._ops import ops_guard, status_record, status_text
    from nirguard.errors import GuardUnavailable, NirguardError

    try:
        settings = _settings(args)
        guard = ops_guard(settings, audited=False)
    except NirguardError as exc:
        return _fail("status", exc)
    try:
        status = guard.status(args.practitioner)
    except GuardUnavailable as exc:
        print(f"nirguard status: {exc}", file=sys.stderr)
        return 3
    except NirguardError as exc:
        return _fail("status", exc)
    finally:
        guard.close()
    if args.json:
        print(json.dumps(status_record(status, settings), sort_keys=True))
    else:
        print(status_text(status, settings))
    return 0


def _unlock(args: argparse.Namespace) -> int:
    from nirguard._ops import ops_guard, status_text, unlock_arguments
    from nirguard.errors import GuardUnavailable, NirguardError

    try:
        actor, note = unlock_arguments(args.by, args.reason)
        settings = _settings(args)
        guard = ops_guard(settings, audited=True)
    except NirguardError as exc:
        return _fail("unlock", exc)
    try:
        guard.unlock(args.practitioner, by=actor, reason=note)
        status = guard.status(args.practitioner)
    except GuardUnavailable as exc:
        print(f"nirguard unlock: {exc}", file=sys.stderr)
        return 3
    except NirguardError as exc:
        return _fail("unlock", exc)
    finally:
        guard.close()  # the unlock's audit event is written before the command ends
    print(f"nirguard unlock: {args.practitioner} unlocked by {actor} (audited)", file=sys.stderr)
    print(status_text(status, settings))
    return 0
