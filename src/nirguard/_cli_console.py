"""``nirguard console``: serve the security console alone, or keep its store.

It never starts without a way to tell who is asking: ``--officers FILE`` (HTTP Basic with
hashed tokens; ``--add-officer NAME`` makes one) or ``--authorize module:callable``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``console`` subcommand."""
    parser = subparsers.add_parser(
        "console",
        help="serve the security office's console (needs nirguard[console])",
        description=(
            "Serve the security console on the audit store (--audit, a SQLAlchemy URL), "
            "with the guard's store (--storage) to check and lift lockouts. Nobody gets in "
            "without --officers FILE (HTTP Basic, hashed tokens) or --authorize module:callable."
        ),
    )
    parser.add_argument("--audit", metavar="URL", required=True,
                        help="the audit store: sqlite:///audit.db or postgresql://...")  # fmt: skip
    parser.add_argument("--storage", metavar="URI", help="the guard's store (redis://...)")
    parser.add_argument("--key-file", metavar="FILE",
                        help="the guard's pseudonym key (default: $NIRGUARD_KEY)")  # fmt: skip
    parser.add_argument("--purpose", default="guard", help="the guard's pseudonym purpose")
    parser.add_argument("--key-prefix", default="nirguard", help="the guard's key prefix")
    parser.add_argument("--officers", metavar="FILE", help="officers file (name:role:sha256)")
    parser.add_argument("--authorize", metavar="MODULE:CALLABLE",
                        help="the portal's authorize(request) -> Officer | None")  # fmt: skip
    parser.add_argument("--add-officer", metavar="NAME",
                        help="add NAME to --officers, print its token once, and exit")  # fmt: skip
    parser.add_argument("--role", choices=("viewer", "officer"), default="viewer")
    parser.add_argument("--import-jsonl", metavar="FILE", help="import a JSON-lines trail and exit")
    parser.add_argument("--purge-days", type=float, metavar="DAYS",
                        help="delete what is older than DAYS days and exit")  # fmt: skip
    parser.add_argument("--prefix", default="nirguard_", help="table name prefix")
    parser.add_argument("--schema", help="PostgreSQL schema of the tables")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default localhost)"
    )
    parser.add_argument("--port", type=int, default=8710)
    parser.set_defaults(handler=_console)


def _fail(message: str) -> int:
    print(f"nirguard console: {message}", file=sys.stderr)
    return 2


def _load_authorize(spec: str) -> Any:
    module_name, sep, name = spec.partition(":")
    if not sep:
        raise ValueError
    return getattr(importlib.import_module(module_name), name)


def _key(args: argparse.Namespace) -> Any:
    from nirguard.keys import SecretKey

    if args.key_file:
        return SecretKey.from_file(args.key_file)
    if os.environ.get("NIRGUARD_KEY"):
        return SecretKey.from_env("NIRGUARD_KEY")
    return None


def _console(args: argparse.Namespace) -> int:
    from nirguard.errors import NirguardError

    try:
        return _run(args)
    except ModuleNotFoundError as exc:
        return _fail(f"a module is missing ({exc.name}): pip install 'nirguard[console]'")
    except NirguardError as exc:
        return _fail(str(exc))


def _run(args: argparse.Namespace) -> int:
    from nirguard.console._officers import OfficersFile

    if args.add_officer:
        if not args.officers:
            return _fail("--add-officer needs --officers FILE")
        token = OfficersFile(args.officers).add(args.add_officer, args.role)
        print(f"{args.add_officer}'s token (shown once; the file keeps its hash): {token}")
        return 0
    from nirguard.audit_sql import SqlAuditStore

    store = SqlAuditStore(args.audit, prefix=args.prefix, schema=args.schema)
    try:
        if args.import_jsonl:
            done, skipped = store.import_jsonl(args.import_jsonl)
            print(f"nirguard console: {done} events imported, {skipped} lines skipped")
            return 0
        if args.purge_days is not None:
            deleted = store.purge(args.purge_days)
            print("nirguard console: deleted " + ", ".join(f"{n} {t}" for t, n in deleted.items()))
            return 0
        return _serve(args, store)
    finally:
        store.close()


def _serve(args: argparse.Namespace, store: Any) -> int:
    from nirguard.console import Console
    from nirguard.console._officers import OfficersFile

    if bool(args.officers) == bool(args.authorize):
        return _fail("say who may come in: --officers FILE or --authorize module:callable (one)")
    challenge = None
    if args.officers:
        authorize = OfficersFile(args.officers).authorize
        challenge = 'Basic realm="nirguard console", charset="UTF-8"'
    else:
        try:
            authorize = _load_authorize(args.authorize)
        except (ValueError, ImportError, AttributeError):
            return _fail("--authorize must name module:callable")
    key = _key(args)
    guard = None
    if args.storage:
        from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy

        if key is None:
            return _fail("--storage needs the guard's key (--key-file or $NIRGUARD_KEY)")
        guard = LookupGuard(
            QuotaPolicy.from_env(), storage=args.storage, key_prefix=args.key_prefix,
            pseudonymiser=Pseudonymiser(key, purpose=args.purpose), audit=store.audit,
        )  # fmt: skip
    app = Console(store, authorize=authorize, guard=guard, keys=key, purpose=args.purpose,
                  challenge=challenge)  # fmt: skip
    import uvicorn

    print(f"nirguard console: http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, server_header=False, log_level="warning")
    return 0
