"""The passes of ``nirguard calibrate`` over a log, and what they find.

1. distributions per kind, and the replay of the candidate policies;
2. only when some accounts are set aside (beyond every ceiling, or
   ``exclude``): the distributions again, without them;
3. the replay of the proposed policies (``verify``); and, when a kind's
   proposal still refuses more than the target on its kept accounts, once
   more after raising the fields that refused.

Each pass streams the log: nothing is held but the windows still open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from nirguard._compiled import compile_policy
from nirguard.calibrate._propose import Choice, Mode, over_ceiling, period_text, propose
from nirguard.calibrate._read import LogSource, ReadStats, read
from nirguard.calibrate._replay import Replay, Summary
from nirguard.calibrate._stats import KindStats, Statistics, percentile
from nirguard.policy import QuotaPolicy

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy

__all__ = ["Calibration", "Distribution", "KindReport", "run"]

QUANTILES: Final = (50.0, 90.0, 99.0, 99.9)
#: Lines of nirguard's own that are not lookups: skipped without a warning.
_EXPECTED_SKIPS: Final = frozenset({"audit chain record", "an administrator's action (unlocked)"})
_ADJUSTABLE: Final = frozenset(
    {
        "lookups",
        "distinct_patients",
        "cohort",
        "portal_cohort",
        "misses",
        "invalid_nirs",
        "break_glass",
        "miss_ratio",
    }
)


@dataclass(frozen=True, slots=True)
class Distribution:
    """Percentiles of one field's counts over one window length, over every window seen.

    ``candidate`` and ``proposed`` are the thresholds of that window in the
    candidate and proposed policies (``None``: no such window). For
    ``miss_ratio`` the values are ratios (peak misses / lookups of a window
    that reached ``miss_ratio_min_lookups``).
    """

    field: str
    period: int
    windows: int
    percentiles: tuple[float, ...]
    max: float
    candidate: float | None
    proposed: float | None
    histogram: tuple[tuple[float, int], ...]


@dataclass(slots=True)
class KindReport:
    """Everything calibrate says about one kind of practitioner."""

    kind: str | None
    stats: KindStats
    set_aside: dict[str, str]
    distributions: list[Distribution]
    candidate: QuotaPolicy
    candidate_kept: Summary
    candidate_set_aside: Summary
    candidate_outcomes: dict[tuple[str, str | None], int]
    proposed: QuotaPolicy
    choices: list[Choice]
    proposed_kept: Summary | None = None
    proposed_set_aside: Summary | None = None
    adjusted: tuple[str, ...] = ()


@dataclass(slots=True)
class Calibration:
    """The result of :func:`nirguard.calibrate.calibrate`."""

    sources: tuple[str, ...]
    log: ReadStats
    target: float
    margin: float
    excluded: frozenset[str]
    kinds: list[KindReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    passes: int = 0
    peak_pairs: int = 0
    peak_records: int = 0


Progress = Callable[[str], None]


class _Pass:
    """One streaming pass: entries to the given consumers, progress on the way."""

    def __init__(self, result: Calibration, label: str, progress: Progress | None) -> None:
        result.passes += 1
        self.result = result
        self.label = f"pass {result.passes} ({label})"
        self.progress = progress

    def run(self, source: LogSource, stats: Statistics | None, replay: Replay | None) -> ReadStats:
        log = ReadStats()
        result = self.result

        def report(lines: int, fraction: float | None) -> None:
            pairs = stats.pairs() if stats is not None else 0
            records = replay.held() if replay is not None else 0
            result.peak_pairs = max(result.peak_pairs, pairs)
            result.peak_records = max(result.peak_records, records)
            if self.progress is not None:
                share = f", {fraction:.0%}" if fraction is not None else ""
                self.progress(
                    f"{self.label}: {lines:,} lines{share}; holding {pairs:,} "
                    f"practitioner-patient pairs, {records:,} engine records"
                )

        for e in read(source, log, progress=report):
            hot = replay.add(e) if replay is not None else None
            if stats is not None:
                stats.add(e, hot)
        if stats is not None:
            stats.finish()
        return log


def _distributions(
    k: KindStats, candidate: QuotaPolicy, proposed: QuotaPolicy
) -> list[Distribution]:
    out = []
    for name, periods in k.periods.items():
        own = {item.get_expiry(): item.amount for item in candidate.items(name)}
        new = {item.get_expiry(): item.amount for item in proposed.items(name)}
        for period in periods:
            hist = k.histograms[name][period]
            out.append(
                Distribution(
                    name,
                    period,
                    sum(hist.values()),
                    tuple(float(percentile(hist, q)) for q in QUANTILES),
                    float(max(hist, default=0)),
                    own.get(period),
                    new.get(period),
                    tuple(sorted((float(c), n) for c, n in hist.items())),
                )
            )
    ratios = {percent: slot[0] for percent, slot in k.ratios.items()}
    out.append(
        Distribution(
            "miss_ratio",
            int(k.ratio_window),
            sum(ratios.values()),
            tuple(percentile(ratios, q) / 100 for q in QUANTILES),
            max(ratios, default=0) / 100,
            candidate.miss_ratio,
            proposed.miss_ratio,
            tuple(sorted((p / 100, n) for p, n in ratios.items())),
        )
    )
    return out


def _compiled(policies: Mapping[str | None, QuotaPolicy]) -> dict[str | None, CompiledPolicy]:
    return {kind: compile_policy(policy) for kind, policy in policies.items()}


def _sort_key(kind: str | None) -> tuple[bool, str]:
    return (kind is None, kind or "")


def run(
    source: LogSource,
    candidates: Mapping[str | None, QuotaPolicy] | None = None,
    *,
    target: float = 0.001,
    margin: float = 0.5,
    exclude: Iterable[str] = (),
    verify: bool = True,
    progress: Progress | None = None,
) -> Calibration:
    """See :func:`nirguard.calibrate.calibrate`."""
    if not 0 < target < 1:
        raise ValueError("target must be a share between 0 and 1 (e.g. 0.001)")
    if not 0 <= margin <= 10:
        raise ValueError("margin must be between 0 and 10 (0.5 = 50%)")
    policies = dict(candidates or {})
    policies.setdefault(None, QuotaPolicy())
    compiled = _compiled(policies)
    excluded = frozenset(exclude)
    result = Calibration(source.names, ReadStats(), target, margin, excluded)

    stats = Statistics(compiled, excluded)
    replay = Replay(compiled)
    result.log = _Pass(result, "distributions, candidate replay", progress).run(
        source, stats, replay
    )
    aside = _set_aside(stats)
    dropped = frozenset(who for whys in aside.values() for who in whys)
    if dropped:
        # The candidates are replayed again, for the hot cohorts of the whole portal.
        stats = Statistics(compiled, excluded | dropped)
        _Pass(result, "distributions without the accounts set aside", progress).run(
            source, stats, Replay(compiled)
        )
    reports = _reports(stats, replay, policies, aside, result)
    del replay
    if verify and reports:
        _verify(source, result, reports, policies, target, margin, progress)
    for report in reports.values():
        report.distributions = _distributions(report.stats, report.candidate, report.proposed)
    result.kinds = list(reports.values())
    _warn(result)
    return result


def _set_aside(stats: Statistics) -> dict[str | None, dict[str, str]]:
    """Per kind, the accounts beyond every ceiling, and why."""
    aside: dict[str | None, dict[str, str]] = {}
    for kind, k in stats.kinds.items():
        for who, account in k.accounts.items():
            why = over_ceiling(account.maxima)
            if why is not None:
                aside.setdefault(kind, {})[who] = why
    return aside


def _reports(
    stats: Statistics,
    replay: Replay,
    policies: Mapping[str | None, QuotaPolicy],
    aside: dict[str | None, dict[str, str]],
    result: Calibration,
) -> dict[str | None, KindReport]:
    """A report per kind: the candidate's replay, and a first proposal."""
    reports: dict[str | None, KindReport] = {}
    for kind in sorted(replay.kinds | set(stats.kinds), key=_sort_key):
        candidate = policies.get(kind) or policies[None]
        k = stats.kinds.get(kind) or stats.kind(kind)
        whys = aside.get(kind, {})
        out = result.excluded | whys.keys()
        proposed, choices = propose(k, candidate, target=result.target, margin=result.margin)
        reports[kind] = KindReport(
            kind,
            k,
            whys,
            [],
            candidate,
            replay.summary(kind, out),
            replay.summary(kind, out, kept=False),
            dict(replay.outcomes.get(kind, {})),
            proposed,
            choices,
        )
    return reports


def _replay_proposals(
    source: LogSource,
    result: Calibration,
    reports: dict[str | None, KindReport],
    policies: Mapping[str | None, QuotaPolicy],
    label: str,
    progress: Progress | None,
) -> None:
    proposals: dict[str | None, QuotaPolicy] = {None: policies[None]}
    proposals.update({kind: r.proposed for kind, r in reports.items()})
    replay = Replay(_compiled(proposals))
    _Pass(result, label, progress).run(source, None, replay)
    for kind, r in reports.items():
        out = result.excluded | r.set_aside.keys()
        r.proposed_kept = replay.summary(kind, out)
        r.proposed_set_aside = replay.summary(kind, out, kept=False)


def _verify(
    source: LogSource,
    result: Calibration,
    reports: dict[str | None, KindReport],
    policies: Mapping[str | None, QuotaPolicy],
    target: float,
    margin: float,
    progress: Progress | None,
) -> None:
    _replay_proposals(source, result, reports, policies, "replay of the proposals", progress)
    again = False
    for r in reports.values():
        kept = r.proposed_kept
        if kept is None or kept.share <= target:
            continue
        refused = [name for name, f in kept.fields.items() if f.lookups and name in _ADJUSTABLE]
        if not refused:
            continue
        modes: dict[str, Mode] = dict.fromkeys(refused, "max")
        r.proposed, r.choices = propose(
            r.stats, r.candidate, target=target, margin=margin, modes=modes
        )
        r.adjusted = tuple(sorted(refused))
        again = True
    if again:
        _replay_proposals(
            source, result, reports, policies, "replay of the adjusted proposals", progress
        )


def _names(accounts: Iterable[str], most: int = 10) -> str:
    """Practitioner ids for a warning: the first ``most``, then how many more."""
    ordered = sorted(accounts)
    text = ", ".join(ordered[:most])
    return text if len(ordered) <= most else f"{text} and {len(ordered) - most} more"


def looser(candidate: QuotaPolicy, choices: Iterable[Choice]) -> list[str]:
    """Where a proposal lets more through than ``candidate`` (the policy in force)."""
    out = []
    for c in choices:
        if c.value is None:
            continue
        if c.field == "miss_ratio":
            current: float | None = candidate.miss_ratio
        else:
            windows = {item.get_expiry(): item.amount for item in candidate.items(c.field)}
            current = windows.get(c.period) if c.period is not None else None
        if current is not None and c.value > current:
            where = f" per {period_text(c.period)}" if c.field != "miss_ratio" and c.period else ""
            out.append(f"{c.field}{where} {c.value:g} > {current:g}")
    return out


def _warn(result: Calibration) -> None:
    log, warnings = result.log, result.warnings
    foreign = {why: n for why, n in log.skipped.items() if why not in _EXPECTED_SKIPS}
    if foreign:
        reasons = ", ".join(f"{n:,} {why}" for why, n in sorted(foreign.items()))
        warnings.append(
            f"{sum(foreign.values()):,} lines skipped, not recognisably nirguard audit events "
            f"({reasons}): nothing in them was read"
        )
    if log.locked:
        warnings.append(
            f"the log shows {sum(log.locked.values()):,} lockout events (lockout, locked, or "
            f"would_* in shadow mode) on {len(log.locked):,} account(s): {_names(log.locked)}. "
            "Their attempts are in the distributions: check those accounts before you trust them"
        )
    if log.out_of_order:
        warnings.append(
            f"{log.out_of_order:,} events are earlier than the one before them by more than "
            "a second: give concatenated logs in time order"
        )
    if log.entries and not log.cohorts:
        warnings.append(
            "no cohort pseudonyms in the log (the logging policy had no cohort check): "
            "cohort, portal_cohort and hot_cohort could not be replayed"
        )
    longest = max(
        (p for r in result.kinds for ps in r.stats.periods.values() for p in ps), default=0
    )
    span = (log.last - log.first) if log.first is not None and log.last is not None else 0.0
    if log.entries and span < 2 * longest:
        warnings.append(
            f"the log covers {span / 86400:.1f} days, less than twice the longest window "
            f"({longest // 86400} days): run in shadow mode for a few weeks, busy days included"
        )
    for r in result.kinds:
        name = r.kind or "(untagged)"
        if r.set_aside:
            warnings.append(
                f"{name}: {len(r.set_aside)} account(s) set aside, beyond any sane policy: "
                f"{_names(r.set_aside)}. Check them before you enforce"
            )
        loose = looser(r.candidate, r.choices)
        if loose:
            warnings.append(
                f"{name}: the proposal is looser than the policy in force: {'; '.join(loose)}"
            )
        capped = sorted({c.field for c in r.choices if "CAPPED" in c.how})
        if capped:
            warnings.append(f"{name}: {', '.join(capped)} capped at the ceiling")
        kept = r.proposed_kept
        if kept is not None and kept.share > result.target:
            warnings.append(
                f"{name}: the proposal still refuses {kept.share:.2%} of the kept accounts' "
                f"lookups (target {result.target:.2%})"
            )
