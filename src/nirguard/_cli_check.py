"""``nirguard check``: validate NIRs from the arguments or stdin, one per line.

Each line of output names the input by its position, says valid or invalid
with the reason code, and shows the masked form only: never the number.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from nirguard import nir
from nirguard.errors import InvalidNIR


def register(subparsers: Any) -> None:  # argparse._SubParsersAction (a private name)
    parser = subparsers.add_parser(
        "check",
        help="validate NIRs (arguments, or one per line on stdin)",
        description=(
            "Validate NIRs given as arguments or one per line on stdin. Prints the masked "
            "form and the reason code; never the number. Exit status 0 if all are valid."
        ),
    )
    parser.add_argument("nirs", nargs="*", metavar="NIR", help="numbers to check")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="check characters, length and key only (strict=False)",
    )
    parser.set_defaults(handler=run)


def _lines(args: argparse.Namespace) -> Iterator[str]:
    if args.nirs:
        yield from args.nirs
    else:
        for line in sys.stdin:
            yield line.rstrip("\r\n")


def check_all(values: Iterable[str], *, strict: bool = True) -> Iterator[dict[str, Any]]:
    """Yield one result per value: ``{"line", "valid", "code", "masked"}``."""
    for index, value in enumerate(values, start=1):
        try:
            canonical = nir.validate(value, strict=strict)
        except InvalidNIR as exc:
            yield {"line": index, "valid": False, "code": exc.code, "masked": None}
        else:
            yield {"line": index, "valid": True, "code": None, "masked": nir.mask(canonical)}


def run(args: argparse.Namespace) -> int:
    all_valid = True
    out = sys.stdout
    for result in check_all(_lines(args), strict=not args.lenient):
        all_valid &= result["valid"]
        if args.json:
            out.write(json.dumps(result) + "\n")
        elif result["valid"]:
            out.write(f"{result['line']}: valid   {result['masked']}\n")
        else:
            out.write(f"{result['line']}: invalid {result['code']}\n")
    return 0 if all_valid else 1
