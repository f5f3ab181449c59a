"""What ``nirguard calibrate`` prints: a text report, JSON, and the curves.

Practitioner ids appear (the accounts set aside); patients and cohorts never
do, not even as pseudonyms: only counts.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nirguard._plot import pyplot
from nirguard.calibrate._propose import period_text
from nirguard.calibrate._replay import Summary
from nirguard.calibrate._run import QUANTILES, Calibration, Distribution, KindReport

__all__ = ["format_text", "plot", "policy_json", "to_json"]

_FIELD_ORDER = (
    "lookups",
    "distinct_patients",
    "cohort",
    "portal_cohort",
    "misses",
    "invalid_nirs",
    "miss_ratio",
    "break_glass",
)


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _name(kind: str | None) -> str:
    return kind if kind is not None else "(untagged)"


def policy_json(report: KindReport) -> str:
    """The proposed policy of one kind, as one JSON object ``QuotaPolicy.from_json`` loads."""
    return json.dumps(report.proposed.model_dump(mode="json"), separators=(", ", ": "))


def _number(value: float | None, ratio: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if ratio else f"{int(value):,}"


def _distribution_rows(r: KindReport) -> list[str]:
    head = "  {:<18} {:>10} {:>9}" + " {:>7}" * (len(QUANTILES) + 1) + " {:>9} {:>9}"
    quantiles = [f"p{q:g}" for q in QUANTILES]
    rows = [head.format("field", "window", "windows", *quantiles, "max", "candidate", "proposed")]
    by_field = sorted(r.distributions, key=lambda d: (_FIELD_ORDER.index(d.field), d.period))
    for d in by_field:
        ratio = d.field == "miss_ratio"
        rows.append(
            head.format(
                d.field,
                period_text(d.period),
                f"{d.windows:,}",
                *(_number(v, ratio) for v in d.percentiles),
                _number(d.max, ratio),
                _number(d.candidate, ratio),
                _number(d.proposed, ratio),
            )
        )
    return rows


def _summary_rows(s: Summary, indent: str = "  ") -> list[str]:
    head = indent + "{:<18} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9}"
    rows = [
        head.format("field", "refused", "reason", "locked", "lockouts", "break-glass", "accounts")
    ]
    for name in sorted(s.fields, key=lambda n: -s.fields[n].lookups):
        f = s.fields[name]
        rows.append(
            head.format(
                name,
                f"{f.refused:,}",
                f"{f.reason_required:,}",
                f"{f.locked:,}",
                f"{f.lockouts:,}",
                f"{f.break_glass:,}",
                f"{f.accounts:,}",
            )
        )
    return rows


def _refusals(label: str, s: Summary) -> str:
    return (
        f"{label}: {s.refused:,} of {s.attempts:,} lookups refused ({s.share:.3%}), "
        f"{s.accounts_refused:,} of {s.accounts:,} accounts"
    )


def _kind_text(r: KindReport, target: float) -> list[str]:
    k = r.stats
    out = [
        "",
        f"== {_name(r.kind)}: {len(k.accounts):,} accounts, {k.lookups:,} lookups, "
        f"{k.new_patients:,} new patients, {k.misses:,} misses, {k.invalid:,} invalid numbers, "
        f"{k.break_glass:,} break-glass",
        f"   new patients in hot cohorts: {k.hot_new:,} as replayed "
        f"({k.hot_new_logged:,} by the log's own signals)",
    ]
    if r.set_aside:
        out.append(
            f"   set aside, beyond any sane policy (out of the distributions and the "
            f"shares): {len(r.set_aside)} account(s)"
        )
        out += [f"     {who}: {why}" for who, why in sorted(r.set_aside.items())[:20]]
        if len(r.set_aside) > 20:
            out.append(f"     ... and {len(r.set_aside) - 20} more (--json lists them all)")
    out += ["", "distributions (every attempt counts; windows as the guard counts them)"]
    out += _distribution_rows(r)
    out += ["", f"candidate policy on replay ({_refusals('kept accounts', r.candidate_kept)})"]
    if r.candidate_kept.fields:
        out += _summary_rows(r.candidate_kept)
    if r.set_aside:
        out.append("  " + _refusals("set aside", r.candidate_set_aside))
    kept = r.proposed_kept
    verdict = (
        f"{_refusals('on replay', kept)}; target {target:.2%}"
        if kept is not None
        else "not replayed"
    )
    out += ["", f"proposed policy ({verdict})"]
    if r.adjusted:
        out.append(
            f"  raised to the observed maximum after a first replay: {', '.join(r.adjusted)}"
        )
    if kept is not None and kept.fields:
        out += _summary_rows(kept)
    for name in _FIELD_ORDER:
        choices = [c for c in r.choices if c.field == name]
        value = getattr(r.proposed, name)
        out.append(f"  {name:<18} {json.dumps(value)}")
        for c in choices:
            where = (
                f"{period_text(c.period)}: "
                if c.period is not None and name != "miss_ratio"
                else ""
            )
            out.append(f"      {where}{c.how}")
    out.append("  kept from the candidate: lockouts, portal, hot_cohort*, shares and access times")
    out += ["", f"  {policy_json(r)}"]
    return out


def format_text(result: Calibration) -> str:
    """The report as text."""
    log = result.log
    days = (log.last - log.first) / 86400 if log.first is not None and log.last is not None else 0
    lines = [
        f"nirguard calibrate: {', '.join(result.sources)}",
        f"  {log.lines:,} lines, {log.entries:,} events replayed, over {days:.1f} days "
        f"({_when(log.first)} to {_when(log.last)} UTC)",
        f"  not replayed: {log.unreadable:,} lines skipped, {log.input_refusals:,} refused "
        f"inputs, {log.outages:,} lookups during store outages",
        f"  target {result.target:.2%} of each kind's lookups, margin {result.margin:.0%}; "
        f"{result.passes} passes, at most {result.peak_pairs:,} practitioner-patient pairs "
        f"and {result.peak_records:,} engine records held",
    ]
    lines += [f"    skipped, {why}: {n:,}" for why, n in sorted(log.skipped.items())]
    if result.excluded:
        lines.append(f"  excluded: {', '.join(sorted(result.excluded))}")
    for r in result.kinds:
        lines += _kind_text(r, result.target)
    if result.warnings:
        lines += ["", "warnings:"] + [f"  - {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def _summary_json(s: Summary | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "attempts": s.attempts,
        "refused": s.refused,
        "share": round(s.share, 8),
        "accounts": s.accounts,
        "accounts_refused": s.accounts_refused,
        "fields": {
            name: {
                "lookups": f.lookups,
                "refused": f.refused,
                "reason_required": f.reason_required,
                "locked": f.locked,
                "lockouts": f.lockouts,
                "break_glass": f.break_glass,
                "accounts": f.accounts,
            }
            for name, f in sorted(s.fields.items())
        },
    }


def _distribution_json(d: Distribution) -> dict[str, Any]:
    out: dict[str, Any] = {
        "field": d.field,
        "window": d.period,
        "window_text": period_text(d.period),
        "windows": d.windows,
    }
    out.update({f"p{q:g}": v for q, v in zip(QUANTILES, d.percentiles, strict=True)})
    out.update(max=d.max, candidate=d.candidate, proposed=d.proposed)
    return out


def _kind_json(r: KindReport) -> dict[str, Any]:
    k = r.stats
    return {
        "kind": r.kind,
        "accounts": len(k.accounts),
        "lookups": k.lookups,
        "invalid": k.invalid,
        "misses": k.misses,
        "new_patients": k.new_patients,
        "hot_new_patients": k.hot_new,
        "hot_new_patients_logged": k.hot_new_logged,
        "break_glass": k.break_glass,
        "set_aside": dict(sorted(r.set_aside.items())),
        "distributions": [_distribution_json(d) for d in r.distributions],
        "candidate": {
            "policy": r.candidate.model_dump(mode="json"),
            "kept": _summary_json(r.candidate_kept),
            "set_aside": _summary_json(r.candidate_set_aside),
            "outcomes": {
                f"{outcome}/{quota}": n
                for (outcome, quota), n in sorted(
                    r.candidate_outcomes.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
                )
            },
        },
        "proposed": {
            "policy": r.proposed.model_dump(mode="json"),
            "kept": _summary_json(r.proposed_kept),
            "set_aside": _summary_json(r.proposed_set_aside),
            "adjusted": list(r.adjusted),
            "choices": [
                {
                    "field": c.field,
                    "window": c.period,
                    "value": c.value,
                    "base": c.base,
                    "observed": c.observed,
                    "refused": c.refused,
                    "how": c.how,
                }
                for c in r.choices
            ],
        },
    }


def to_json(result: Calibration, indent: int | None = 2) -> str:
    """The report as JSON (policies as ``QuotaPolicy.from_json`` loads them)."""
    log = result.log
    data: dict[str, Any] = {
        "sources": list(result.sources),
        "log": {
            "lines": log.lines,
            "events": log.entries,
            "unreadable": log.unreadable,
            "skipped": dict(sorted(log.skipped.items())),
            "input_refusals": log.input_refusals,
            "outages": log.outages,
            "out_of_order": log.out_of_order,
            "first": _when(log.first),
            "last": _when(log.last),
            "outcomes": dict(sorted(log.logged.items())),
            "lockouts": dict(sorted(log.locked.items())),
        },
        "target": result.target,
        "margin": result.margin,
        "excluded": sorted(result.excluded),
        "passes": result.passes,
        "peak_pairs": result.peak_pairs,
        "peak_engine_records": result.peak_records,
        "kinds": [_kind_json(r) for r in result.kinds],
        "warnings": result.warnings,
    }
    return json.dumps(data, indent=indent)


def plot(result: Calibration, path: str | Path) -> None:
    """Plot, per kind and field, the share of windows reaching each count, with the thresholds.

    Raises:
        ModuleNotFoundError: matplotlib is not installed (it comes with the
            ``plot`` extra).
    """
    plt = pyplot()
    kinds = result.kinds or []
    rows = max(1, 2 * len(kinds))
    fig, axes = plt.subplots(rows, 4, figsize=(16, 3.4 * rows), squeeze=False)
    for i, r in enumerate(kinds):
        for j, name in enumerate(_FIELD_ORDER):
            ax = axes[2 * i + j // 4][j % 4]
            ax.set_title(f"{_name(r.kind)}: {name}", fontsize=9)
            shown = [d for d in r.distributions if d.field == name and d.windows]
            if not shown:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            for n, d in enumerate(shown):
                xs = [value for value, _ in d.histogram]
                left, ys = d.windows, []
                for _, count in d.histogram:
                    ys.append(left / d.windows)
                    left -= count
                color = f"C{n}"
                ax.step(
                    xs,
                    ys,
                    where="post",
                    color=color,
                    marker="." if len(xs) < 4 else None,
                    label=period_text(d.period),
                )
                if d.candidate is not None:
                    ax.axvline(d.candidate, color=color, linestyle="--", linewidth=1)
                if d.proposed is not None:
                    ax.axvline(d.proposed, color=color, linestyle=":", linewidth=1.5)
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    for ax_row in axes:
        ax_row[0].set_ylabel("share of windows >= x")
    fig.suptitle("nirguard calibrate: counts per window (dashed: candidate, dotted: proposed)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
