"""The ``nirguard`` command line.

Each subcommand lives in its own private module that exposes
``register(subparsers)``; the module is imported here, and its heavy
imports happen inside the command itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nirguard import __version__

_SUBCOMMAND_MODULES = (
    "nirguard._cli_check",
    "nirguard._cli_keys",
    "nirguard._cli_csv",
    "nirguard._cli_simulate",
    "nirguard._cli_calibrate",
    "nirguard._cli_console",
    "nirguard._cli_ops",
    "nirguard._cli_audit",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="nirguard",
        description="Validate, pseudonymise and guard French social security numbers (NIR).",
    )
    parser.add_argument("--version", action="version", version=f"nirguard {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("nirguard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `nirguard check ... | head`
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
