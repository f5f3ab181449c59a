"""``nirguard calibrate``: read a guard's audit log and propose a policy per kind.

See :mod:`nirguard.calibrate` and ``docs/calibrate.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

_KIND = re.compile(r"([A-Za-z0-9_.\-]{1,40})=(.*)", re.ASCII | re.DOTALL)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number such as 0.001") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("expected a share between 0 and 1 (0.001 = 0.1%)")
    return value


def _margin(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number such as 0.5") from None
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError("expected a margin between 0 and 10 (0.5 = 50%)")
    return value


def register(subparsers: Any) -> None:  # argparse._SubParsersAction (a private name)
    """Add the ``calibrate`` subcommand."""
    parser = subparsers.add_parser(
        "calibrate",
        help="read a guard's JSON-lines audit log and propose a policy per kind of practitioner",
        description=(
            "Read JSON-lines audit logs of a LookupGuard (shadow mode or enforcement). Per kind "
            "of practitioner: the distributions the policy's thresholds cut, the refusals each "
            "field of a candidate policy would have caused (replayed through the real engine), "
            "and a proposed policy as JSON. The log holds pseudonyms only; nothing printed "
            "holds a NIR or a patient pseudonym."
        ),
    )
    parser.add_argument(
        "logs",
        nargs="+",
        metavar="LOG",
        help="JSON-lines audit logs, in time order (.gz, - = stdin)",
    )
    parser.add_argument(
        "--policy-json",
        action="append",
        default=[],
        metavar="[KIND=]JSON|FILE",
        help="candidate QuotaPolicy as JSON or a JSON file; KIND=... for one kind only "
        "(repeat; default: the shipped QuotaPolicy())",
    )
    parser.add_argument(
        "--target",
        type=_share,
        default=0.001,
        help="share of a kind's lookups a proposal may refuse (default 0.001 = 0.1%%)",
    )
    parser.add_argument(
        "--margin",
        type=_margin,
        default=0.5,
        help="headroom over the observed values (default 0.5 = 50%%)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PRACTITIONER",
        help="leave a known-bad account out of the distributions and shares (repeat)",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="do not replay the proposals (one pass fewer)"
    )
    parser.add_argument(
        "--policy-dir",
        metavar="DIR",
        help="also write each proposal to DIR/<kind>.json ('(untagged).json': no kind)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="plot the distributions and thresholds (the plot extra)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(handler=_handle)


def _policies(values: list[str]) -> dict[str | None, QuotaPolicy]:
    from nirguard.policy import QuotaPolicy

    out: dict[str | None, QuotaPolicy] = {}
    for value in values:
        kind: str | None = None
        match = _KIND.fullmatch(value)
        if match is not None and not value.lstrip().startswith("{"):
            kind, value = match.group(1), match.group(2)
        source = value if value.lstrip().startswith("{") else Path(value).read_text("utf-8")
        out[kind] = QuotaPolicy.from_json(source)
    return out


def _fail(message: str) -> int:
    print(f"nirguard calibrate: {message}", file=sys.stderr)
    return 2


def _handle(args: argparse.Namespace) -> int:
    from nirguard.calibrate import calibrate
    from nirguard.calibrate._report import format_text, plot, policy_json, to_json
    from nirguard.errors import NirguardError

    try:
        policies = _policies(args.policy_json)
    except OSError as exc:
        return _fail(f"cannot read the policy file: {exc.strerror}")
    except NirguardError as exc:
        return _fail(f"invalid policy: {exc}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ModuleNotFoundError:
            return _fail(
                "--plot needs matplotlib: install nirguard's plot extra (in its checkout: pip install '.[plot]')"
            )
    started = time.perf_counter()

    def progress(line: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - started:6.1f}s] {line}", file=sys.stderr, flush=True)

    try:
        result = calibrate(
            args.logs,
            policies,
            target=args.target,
            margin=args.margin,
            exclude=args.exclude,
            verify=not args.no_verify,
            progress=progress,
        )
    except OSError as exc:
        return _fail(f"cannot read the log: {exc.strerror or type(exc).__name__}")
    progress("done")
    sys.stdout.write(to_json(result) + "\n" if args.json else format_text(result))
    if args.policy_dir:
        directory = Path(args.policy_dir)
        directory.mkdir(parents=True, exist_ok=True)
        for report in result.kinds:
            # a kind is a policy name (letters, digits, "-", "_", "."): never "(untagged)"
            target = directory / f"{report.kind or '(untagged)'}.json"
            target.write_text(policy_json(report) + "\n", encoding="utf-8")
            progress(f"proposed policy written to {os.fspath(target)}")
    if args.plot:
        plot(result, args.plot)
        progress(f"plot written to {args.plot}")
    return 0
