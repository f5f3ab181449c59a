"""``nirguard simulate``: replay weeks of a health portal, then an attack week.

Everything runs in simulated time on the embedded memory store; see
:mod:`nirguard.replay` and ``docs/replay.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy

#: The default world: small enough for a first run (about 22 s of CPU, under 300 MB).
DEFAULT_SCALE: Final = 0.05
#: ``--quick``: fewer days, fewer strategies (for large scales).
QUICK_STRATEGIES: Final = ("enumeration", "list", "burst", "spread", "spread-parallel")
QUICK_HISTORY: Final = 2
QUICK_DAYS: Final = 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("expected a number of at least 1")
    return value


def _weeks(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("expected 0 or more")
    return value


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number, e.g. 0.1 or 3") from None
    if not 0.005 <= value <= 40:
        raise argparse.ArgumentTypeError("expected a scale between 0.005 and 40")
    return value


def _scales(text: str) -> list[float]:
    return [_scale(part) for part in text.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``simulate`` subcommand."""
    from nirguard.replay.attacks import STRATEGIES

    parser = subparsers.add_parser(
        "simulate",
        help="replay a health portal with 19 stolen accounts, with and without the guard",
        description=(
            "Replay weeks of a health portal in simulated time: legitimate practitioners, "
            "then an attack week with 19 stolen accounts running one strategy at a time, "
            "with no guard and with LookupGuard's default policy. Prints the identities "
            "exposed, what the guard cost practitioners, and the targets met or not."
        ),
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--scale",
        type=_scale,
        default=None,
        help=f"portal size: 1 = 2,000 practitioners and ~2,000,000 people "
        f"(default {DEFAULT_SCALE:g}; --full: 1)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the big run: scale 1 (about 9 minutes of CPU, shared by 2 cores; 2 GB)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_HISTORY} weeks of history, {QUICK_DAYS} attack days, "
        f"strategies {', '.join(QUICK_STRATEGIES)} (for large scales)",
    )
    parser.add_argument(
        "--scales",
        type=_scales,
        metavar="S1,S2,...",
        help="run several scales and print the scale table (e.g. 1,3,10 with --quick)",
    )
    parser.add_argument(
        "--history-weeks",
        type=_weeks,
        default=None,
        help="weeks of legitimate traffic before the attack (default 3)",
    )
    parser.add_argument(
        "--attack-days", type=_positive, default=None, help="days of the attack week (default 7)"
    )
    parser.add_argument(
        "--attackers", type=_positive, default=19, help="stolen accounts (default 19)"
    )
    parser.add_argument(
        "--strategy",
        action="append",
        choices=STRATEGIES,
        metavar="NAME",
        help=f"attack strategy, repeat for several (default: all: {', '.join(STRATEGIES)})",
    )
    parser.add_argument(
        "--compare-quotas",
        action="store_true",
        help="also replay the policy with every detection signal off",
    )
    parser.add_argument(
        "--no-shadow", action="store_true", help="skip the shadow-mode (enforce=False) check"
    )
    parser.add_argument(
        "--policy-json",
        metavar="JSON|FILE",
        help="QuotaPolicy of GPs and stolen accounts, as JSON or a JSON file "
        "(default: the shipped QuotaPolicy())",
    )
    parser.add_argument(
        "--desk-policy-json",
        metavar="JSON|FILE",
        help="QuotaPolicy of hospital and pharmacy desks (default: the replay's desk policy)",
    )
    parser.add_argument(
        "--jobs", type=_positive, default=None, help="worker processes (default: CPUs, at most 2)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="plot exposure over time (nirguard[plot])"
    )
    parser.add_argument("--no-legend", action="store_true", help="leave the legend out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
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


class ProgressBar:
    """A progress bar on a terminal, or a line per stage when not a terminal."""

    def __init__(self, stream: TextIO, *, prefix: str = "") -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.prefix = prefix
        self.started = time.perf_counter()
        self.last = 0.0
        self.stage = ""

    def __call__(self, label: str, fraction: float) -> None:
        now = time.perf_counter()
        stage = label.split(":")[0]
        if self.tty:
            if now - self.last < 0.1 and fraction < 1:
                return
            self.last = now
            filled = int(30 * fraction)
            bar = "#" * filled + "-" * (30 - filled)
            text = (
                f"\r{self.prefix}[{bar}] {100 * fraction:3.0f}% {now - self.started:5.1f}s {label}"
            )
            self.stream.write(text[:100].ljust(100))
            self.stream.flush()
        elif stage != self.stage:
            self.stream.write(
                f"{self.prefix}[{now - self.started:5.1f}s] {100 * fraction:3.0f}% {stage}\n"
            )
            self.stream.flush()
        self.stage = stage

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


def _handle(args: argparse.Namespace) -> int:
    from nirguard.errors import NirguardError
    from nirguard.replay import report
    from nirguard.replay.attacks import STRATEGIES
    from nirguard.replay.runner import default_jobs, run_replay
    from nirguard.replay.world import ReplaySettings

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
    strategies = args.strategy or (QUICK_STRATEGIES if args.quick else STRATEGIES)
    history = args.history_weeks
    if history is None:
        history = QUICK_HISTORY if args.quick else 3
    days = args.attack_days or (QUICK_DAYS if args.quick else 7)
    configurations = ("none", "quotas", "guard") if args.compare_quotas else ("none", "guard")
    scales = args.scales or [args.scale or (1.0 if args.full else DEFAULT_SCALE)]
    results = []
    for scale in scales:
        settings = ReplaySettings(
            seed=args.seed,
            scale=scale,
            history_weeks=history,
            attack_days=days,
            attackers=args.attackers,
            strategies=tuple(dict.fromkeys(strategies)),
            configurations=configurations,
            shadow=not args.no_shadow,
            policy=policy,
            desk_policy=desk,
            jobs=args.jobs or default_jobs(),
        )
        bar = None if args.quiet else ProgressBar(sys.stderr, prefix=f"scale {scale:g} ")
        try:
            result = run_replay(settings, progress=bar)
        except ValueError as exc:
            print(f"nirguard simulate: {exc}", file=sys.stderr)
            return 2
        finally:
            if bar is not None:
                bar.close()
        results.append(result)
    if args.json:
        if len(results) == 1:
            print(report.to_json(results[0]))
        else:
            import json

            print(
                json.dumps(
                    {
                        "scales": [report.scale_row(r) for r in results],
                        "runs": [json.loads(report.to_json(r)) for r in results],
                    },
                    indent=2,
                )
            )
    elif len(results) == 1:
        print(report.format_table(results[0], legend=not args.no_legend))
    else:
        for r in results:
            print(report.format_table(r, legend=False))
            print()
        print(report.format_scales([report.scale_row(r) for r in results]))
    if args.plot:
        report.plot(results[-1], args.plot)
        if not args.quiet:
            print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
