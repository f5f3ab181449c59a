"""``nirguard simulate``: replay a week of a portal under attack.

Everything runs in simulated time on the embedded memory store; see
:mod:`nirguard.replay` and ``docs/replay.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

_STRATEGIES = ("enumeration", "list", "slow", "spread")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("expected a number of at least 1")
    return value


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="replay a week of a health portal with 19 stolen accounts, with and without the guard",
        description=(
            "Replay a week of a health portal in simulated time: legitimate practitioners "
            "and stolen accounts running an attack strategy, with no guard, with quotas "
            "only, and with quotas + detection. Prints identities exposed, legitimate "
            "lookups refused and time to the first alert."
        ),
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--people", type=_positive, default=1_000_000, help="registry size (default 1,000,000)"
    )
    parser.add_argument(
        "--practitioners",
        type=_positive,
        default=2000,
        help="legitimate accounts (default 2,000)",
    )
    parser.add_argument("--days", type=_positive, default=7, help="days replayed (default 7)")
    parser.add_argument(
        "--attackers", type=_positive, default=19, help="stolen accounts (default 19)"
    )
    parser.add_argument(
        "--strategy",
        action="append",
        choices=_STRATEGIES,
        metavar="{" + ",".join(_STRATEGIES) + "}",
        help="attack strategy to replay; repeat for several (default: all)",
    )
    parser.add_argument(
        "--policy-json",
        metavar="JSON|FILE",
        help="QuotaPolicy of practitioners and stolen accounts, as JSON or a JSON file "
        "(default: the shipped QuotaPolicy())",
    )
    parser.add_argument(
        "--desk-policy-json",
        metavar="JSON|FILE",
        help="QuotaPolicy of hospital and pharmacy desks (default: the replay's desk policy)",
    )
    parser.add_argument(
        "--jobs",
        type=_positive,
        default=None,
        help="worker processes (default: CPUs, at most 4)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="plot exposure over time (nirguard[plot])"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(handler=_handle)


def _load_policy(text: str | None) -> QuotaPolicy | None:
    """Parse a policy given as JSON text or as the path of a JSON file."""
    if text is None:
        return None
    from nirguard.policy import QuotaPolicy

    source = text
    if not text.lstrip().startswith("{"):
        source = Path(text).read_text(encoding="utf-8")
    return QuotaPolicy.from_json(source)


def _handle(args: argparse.Namespace) -> int:
    from nirguard.errors import NirguardError
    from nirguard.replay import report
    from nirguard.replay.runner import ReplaySettings, default_jobs, run_replay

    try:
        policy = _load_policy(args.policy_json)
        desk = _load_policy(args.desk_policy_json)
    except OSError as exc:
        print(f"nirguard simulate: cannot read the policy file: {exc.strerror}", file=sys.stderr)
        return 2
    except (NirguardError, ValueError) as exc:
        print(f"nirguard simulate: invalid policy: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ModuleNotFoundError:
            print(
                "nirguard simulate: --plot needs matplotlib: pip install 'nirguard[plot]'",
                file=sys.stderr,
            )
            return 2
    settings = ReplaySettings(
        seed=args.seed,
        people=args.people,
        practitioners=args.practitioners,
        days=args.days,
        attackers=args.attackers,
        strategies=tuple(dict.fromkeys(args.strategy or _STRATEGIES)),
        policy=policy,
        desk_policy=desk,
        jobs=args.jobs or default_jobs(),
    )
    started = time.perf_counter()

    def progress(line: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - started:5.1f}s] {line}", file=sys.stderr)

    try:
        result = run_replay(settings, progress=progress)
    except ValueError as exc:
        print(f"nirguard simulate: {exc}", file=sys.stderr)
        return 2
    progress("done")
    if args.json:
        print(report.to_json(result))
    else:
        print(report.format_table(result))
    if args.plot:
        report.plot(result, args.plot)
        progress(f"plot written to {args.plot}")
    return 0
