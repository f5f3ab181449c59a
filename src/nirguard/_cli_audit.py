"""``nirguard audit``: verify a sealed audit trail, make an audit key.

``nirguard audit verify FILE...`` exits 0 when every writer's chain is whole,
1 when something was changed, removed, reordered, inserted or cut, and 2 when
it cannot verify (no key, a file it cannot read). It prints positions, writer
ids and key ids, never what a record holds.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import Any

_GLOB = frozenset("*?[")


def register(subparsers: Any) -> None:  # argparse._SubParsersAction (a private name)
    """Add the ``audit`` subcommand (``verify``, ``keygen``)."""
    parser = subparsers.add_parser(
        "audit",
        help="verify a sealed audit trail, or make an audit key",
        description="Verify the MAC chains of a sealed audit trail (SealedAuditLog), "
        "or make the audit key that seals it.",
    )
    commands = parser.add_subparsers(dest="audit_command", metavar="ACTION")
    commands.required = True
    verify = commands.add_parser(
        "verify",
        help="verify a sealed trail, per writer",
        description="Report, per writer and with its position (file:line), every record "
        "changed, removed, reordered, duplicated or inserted, and a chain cut short. Give "
        "the files oldest first (rotation); a quoted glob is expanded oldest first. The "
        "key comes from --key-file, else NIRGUARD_AUDIT_KEY or NIRGUARD_AUDIT_KEY_FILE. "
        "Exit status: 0 whole, 1 problems found, 2 cannot verify.",
    )
    verify.add_argument("files", nargs="+", metavar="FILE", help="trail files (.gz read too)")
    verify.add_argument(
        "--key-file",
        action="append",
        metavar="FILE",
        help="an audit key file (nirguard audit keygen -o); repeat for retired keys",
    )
    verify.add_argument(
        "--partial",
        action="store_true",
        help="accept chains whose first records are in older files not given",
    )
    verify.add_argument(
        "--require-closed",
        action="store_true",
        help="every chain must end with its closing record (the writers have stopped)",
    )
    verify.add_argument(
        "--mixed",
        action="store_true",
        help="the files hold other loggers' lines too: count them, flag only unsealed audit lines",
    )
    verify.add_argument(
        "--now",
        type=float,
        metavar="SECONDS",
        help="POSIX time the trail should reach (default: its latest record)",
    )
    verify.set_defaults(handler=_verify)
    keygen = commands.add_parser(
        "keygen",
        help="generate a new audit key",
        description="Generate a new audit key (nirguard-audit-key:v1:<key_id>:<material>), "
        "separate from the pseudonym key. With -o, write it to a new file (mode 0600).",
    )
    keygen.add_argument("--key-id", metavar="ID", help="key id (1-32 of A-Z a-z 0-9 _ -)")
    keygen.add_argument("-o", "--output", metavar="FILE", help="write the key to FILE")
    keygen.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    from nirguard._cli_keys import keygen
    from nirguard.audit_chain import AuditKey

    return keygen(args, AuditKey, "nirguard audit keygen")


def _keys(files: list[str] | None) -> list[Any]:
    from nirguard.audit_chain import AuditKey
    from nirguard.errors import InvalidKey

    if files:
        return [AuditKey.from_file(name) for name in files]
    text, file = os.environ.get("NIRGUARD_AUDIT_KEY"), os.environ.get("NIRGUARD_AUDIT_KEY_FILE")
    if text:
        return [AuditKey.from_text(text)]
    if file:
        return [AuditKey.from_file(file)]
    raise InvalidKey(
        "no audit key: give --key-file, or set NIRGUARD_AUDIT_KEY or NIRGUARD_AUDIT_KEY_FILE",
        code="key_missing",
    )


def expand(names: list[str]) -> list[str]:
    """Each name as given, or its glob's matches oldest first (by modification time)."""
    paths: list[str] = []
    for name in names:
        if os.path.exists(name) or not _GLOB & set(name):
            paths.append(name)
            continue
        matches = glob.glob(name)
        if not matches:
            raise FileNotFoundError(name)
        paths.extend(sorted(matches, key=lambda path: (os.stat(path).st_mtime_ns, path)))
    return paths


def _verify(args: argparse.Namespace) -> int:
    from nirguard.audit_chain import verify_files
    from nirguard.errors import InvalidKey

    prog = "nirguard audit verify"
    try:
        keys = _keys(args.key_file)
        paths = expand(args.files)
        report = verify_files(
            paths,
            keys,
            now=args.now,
            partial=args.partial,
            require_closed=args.require_closed,
            mixed=args.mixed,
        )
    except InvalidKey as exc:  # its message is fixed and never holds the key
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: cannot read {exc.filename or exc}: {exc.strerror}", file=sys.stderr)
        return 2
    print(report.text())
    return 0 if report.ok else 1
