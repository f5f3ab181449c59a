"""``nirguard simulate``: replay weeks of a health portal, then an attack week.

Everything runs in simulated time on the embedded memory store; see
:mod:`nirguard.replay` and ``docs/replay.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from nirguard.policy import QuotaPolicy
    from nirguard.replay.outcome import ReplayResult
    from nirguard.replay.world import ReplaySettings

#: The default world: small enough for a first run (36 s of CPU with the default strategies).
DEFAULT_SCALE: Final = 0.05
#: What ``--full`` costs on a 2-core machine.
FULL_COST: Final = "about 10 minutes of CPU, shared by 2 cores; 0.3 GB a process"
#: ``--quick``: fewer days, fewer strategies (for large scales).
QUICK_STRATEGIES: Final = (
    "enumeration",
    "list",
    "spread-parallel",
    "retry-fast",
    "move-on",
    "owner",
)
QUICK_HISTORY: Final = 2
QUICK_DAYS: Final = 2


def _whole(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a number of at least {least}")
        return value

    return parse


_positive, _weeks = _whole(1), _whole(0)


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number, e.g. 0.1 or 3") from None
    if not 0.005 <= value <= 40:
        raise argparse.ArgumentTypeError("expected a scale between 0.005 and 40")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number, e.g. 0.01") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("expected a share between 0 and 1")
    return value


def _scales(text: str) -> list[float]:
    return [_scale(part) for part in text.split(",") if part.strip()]


def _strategies_help() -> str:
    """What each strategy does, for ``simulate --help``."""
    from nirguard.replay.attacks import DEMO, DESCRIPTIONS, PACED

    width = max(len(name) for name in DESCRIPTIONS)
    lines = ["strategies (the attack scripts; --strategy NAME):"]
    lines.extend(f"  {name.ljust(width)}  {text}" for name, text in DESCRIPTIONS.items())
    lines += [
        "By default: " + ", ".join(DEMO) + " (--all: every one).",
        "The fast attacks are all but " + ", ".join(PACED) + " (paced like a practitioner);",
        "owner and owner-24-7 run on 19 GPs' own accounts, the GPs still working.",
    ]
    return "\n".join(lines)


def register(subparsers: Any) -> None:  # argparse._SubParsersAction (a private name)
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="replay a health portal with 19 stolen accounts, with and without the guard",
        description=(
            "Replay weeks of a health portal in simulated time: legitimate practitioners, "
            "then an attack week with 19 stolen accounts running one strategy at a time, "
            "with no guard and with LookupGuard's default policy. Prints the identities "
            "exposed, the alerts naming the stolen accounts, what the guard cost practitioners "
            "(refusals, false alerts), and the targets met or not."
        ),
        epilog=_strategies_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _world_options(parser)
    _session_options(parser)
    _policy_options(parser)
    parser.set_defaults(handler=_handle)


def _world_options(parser: argparse.ArgumentParser) -> None:
    from nirguard.replay.attacks import STRATEGIES

    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--scale",
        type=_scale,
        default=None,
        help=f"portal size: 1 = 2,000 practitioners and ~2,000,000 people "
        f"(default {DEFAULT_SCALE:g}; --full: 1)",
    )
    parser.add_argument("--full", action="store_true", help=f"the big run: scale 1 ({FULL_COST})")
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
        help="attack strategy, repeat for several (the list is below)",
    )
    parser.add_argument(
        "--all", action="store_true", help="every strategy (default: one of each kind, below)"
    )
    parser.add_argument(
        "--jobs", type=_positive, default=None, help="worker processes (default: CPUs, at most 2)"
    )


def _session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sessions",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="lookups carry login sessions, for session_overlap (default: off, as a portal "
        "that passes no session=; --all then adds owner-night, owner-churn, owner-padded)",
    )
    parser.add_argument(
        "--two-devices",
        type=_share,
        default=None,
        metavar="SHARE",
        help="share of GPs' working days with a second device used at once (default 0.01)",
    )


def _policy_options(parser: argparse.ArgumentParser) -> None:
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
        "--tradeoff",
        action="store_true",
        help="replay a few policies instead (the shipped one and stricter or looser weekly caps "
        "on new patients) and print the trade-off: identities per stolen account against "
        "false alerts (default strategies: list, spread-parallel, gp-paced, owner, padded)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="plot exposure over time (the plot extra)"
    )
    parser.add_argument("--no-legend", action="store_true", help="leave the legend out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


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


_PLOT_EXTRA: Final = (
    "nirguard simulate: --plot needs matplotlib: install nirguard's plot extra "
    "(in its checkout: pip install '.[plot]')"
)


def _policies(args: argparse.Namespace) -> tuple[QuotaPolicy | None, QuotaPolicy | None] | str:
    """The GP and desk policies given on the command line, or an error message."""
    from nirguard.errors import NirguardError

    try:
        return _load_policy(args.policy_json), _load_policy(args.desk_policy_json)
    except OSError as exc:
        return f"nirguard simulate: cannot read the policy file: {exc.strerror}"
    except (NirguardError, ValueError) as exc:
        return f"nirguard simulate: invalid policy: {exc}"


def _settings(
    args: argparse.Namespace, scale: float, policy: QuotaPolicy | None, desk: QuotaPolicy | None
) -> ReplaySettings:
    from nirguard.replay.attacks import DEMO, SESSION_VARIANTS, STRATEGIES
    from nirguard.replay.runner import default_jobs
    from nirguard.replay.sessions import TWO_DEVICES
    from nirguard.replay.world import ReplaySettings

    sessions = bool(args.sessions)  # off: the portal of the quickstart passes no session
    every = STRATEGIES if sessions else tuple(s for s in STRATEGIES if s not in SESSION_VARIANTS)
    strategies = args.strategy or (every if args.all else QUICK_STRATEGIES if args.quick else DEMO)
    history = args.history_weeks
    if history is None:
        history = QUICK_HISTORY if args.quick else 3
    return ReplaySettings(
        seed=args.seed,
        scale=scale,
        history_weeks=history,
        attack_days=args.attack_days or (QUICK_DAYS if args.quick else 7),
        attackers=args.attackers,
        strategies=tuple(dict.fromkeys(strategies)),
        configurations=("none", "quotas", "guard") if args.compare_quotas else ("none", "guard"),
        shadow=not args.no_shadow,
        policy=policy,
        desk_policy=desk,
        jobs=args.jobs or default_jobs(),
        sessions=sessions,
        two_devices=TWO_DEVICES if args.two_devices is None else args.two_devices,
    )


def _handle(args: argparse.Namespace) -> int:
    from nirguard.replay.runner import run_replay

    policies = _policies(args)
    if isinstance(policies, str):
        print(policies, file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ModuleNotFoundError:
            print(_PLOT_EXTRA, file=sys.stderr)
            return 2
    if args.tradeoff:
        return _tradeoff(args, *policies)
    results = []
    for scale in args.scales or [args.scale or (1.0 if args.full else DEFAULT_SCALE)]:
        bar = None if args.quiet else ProgressBar(sys.stderr, prefix=f"scale {scale:g} ")
        try:
            results.append(run_replay(_settings(args, scale, *policies), progress=bar))
        except ValueError as exc:
            print(f"nirguard simulate: {exc}", file=sys.stderr)
            return 2
        finally:
            if bar is not None:
                bar.close()
    _show(args, results)
    return 0


def _tradeoff(
    args: argparse.Namespace, policy: QuotaPolicy | None, desk: QuotaPolicy | None
) -> int:
    from dataclasses import asdict, replace

    from nirguard.replay.tradeoff import STRATEGIES, format_tradeoff, tradeoff

    scale = (args.scales or [args.scale or (1.0 if args.full else DEFAULT_SCALE)])[0]
    settings = _settings(args, scale, policy, desk)
    if not args.strategy:
        settings = replace(settings, strategies=STRATEGIES)
    bar = None if args.quiet else ProgressBar(sys.stderr, prefix=f"scale {scale:g} ")
    try:
        points = tradeoff(settings, progress=bar)
    except ValueError as exc:
        print(f"nirguard simulate: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        import json

        print(json.dumps([asdict(p) for p in points], indent=2))
    else:
        print(format_tradeoff(points))
    return 0


def _show(args: argparse.Namespace, results: list[ReplayResult]) -> None:
    from nirguard.replay import report

    if args.json:
        if len(results) == 1:
            print(report.to_json(results[0]))
        else:
            import json

            runs = [json.loads(report.to_json(r)) for r in results]
            scales = [report.scale_row(r) for r in results]
            print(json.dumps({"scales": scales, "runs": runs}, indent=2))
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
