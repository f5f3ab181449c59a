"""``nirguard keygen``: make a new secret key in its text form.

The key goes to stdout, or to a new file created with mode 0600; an existing
file is never overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subparsers: Any) -> None:  # argparse._SubParsersAction (a private name)
    """Add the ``keygen`` subcommand."""
    parser = subparsers.add_parser(
        "keygen",
        help="generate a new secret key for pseudonyms and tokens",
        description=(
            "Generate a new 32-byte secret key and print its text form "
            "(nirguard-key:v1:<key_id>:<material>). With -o, write it to a new file "
            "created with mode 0600; an existing file is never overwritten."
        ),
    )
    parser.add_argument(
        "--key-id",
        metavar="ID",
        help="key id (1-32 of A-Z a-z 0-9 _ -); default k<YYYYMMDD>-<random hex>",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the key to FILE (mode 0600)")
    parser.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    from nirguard.keys import SecretKey

    return keygen(args, SecretKey, "nirguard keygen")


def keygen(args: argparse.Namespace, kind: Any, prog: str) -> int:
    """Make a key of ``kind`` (a ``SecretKey`` class) as ``args`` say; also ``nirguard audit keygen``."""
    from nirguard.errors import InvalidKey

    try:
        key = kind.generate(args.key_id)
    except InvalidKey as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    text = key.to_text() + "\n"
    if args.output is None or args.output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(args.output, flags, 0o600)
    except FileExistsError:
        print(
            f"{prog}: {args.output} already exists; refusing to overwrite a key",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        print(f"{prog}: cannot create {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), 0o600)  # exactly 0600, whatever the umask
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(args.output)
        raise
    print(f"{prog}: key {key.key_id} written to {args.output} (mode 0600)", file=sys.stderr)
    return 0
