"""Show a replay: a table for people, JSON for machines, a plot if matplotlib is there.

Nothing here prints a NIR: outcomes hold counts and times only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nirguard.replay.runner import Outcome, ReplayResult

__all__ = ["Target", "format_table", "plot", "targets", "to_json"]

#: Exposure allowed under the full policy, as a share of the no-guard figure.
EXPOSURE_TARGET: Final = 0.001
#: Legitimate lookups that may be refused.
REFUSAL_TARGET: Final = 0.001
#: Attempts by a fast attacker's account before the first alert.
ALERT_TARGET: Final = 50
_FAST: Final = ("enumeration", "list")
#: Line style and width per configuration: equal curves stay visible on top of each other.
_STYLES: Final = {"none": ("-", 3.5), "quotas": ("--", 2.2), "detection": (":", 2.0)}


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, checked on a replay.

    Attributes:
        name: what is checked.
        value: the measured figure.
        limit: the figure not to exceed.
        met: whether ``value <= limit``.
    """

    name: str
    value: float
    limit: float

    @property
    def met(self) -> bool:
        """True when the measured value is within the limit."""
        return self.value <= self.limit


def _find(result: ReplayResult, strategy: str, configuration: str) -> Outcome | None:
    try:
        return result.outcome(strategy, configuration)
    except KeyError:
        return None


def targets(result: ReplayResult) -> list[Target]:
    """Check the targets of issue 5 on the ``detection`` configuration.

    Only the targets whose pairs were run are returned.
    """
    out: list[Target] = []
    for strategy in _FAST:
        none, full = _find(result, strategy, "none"), _find(result, strategy, "detection")
        if none is not None and full is not None:
            out.append(
                Target(
                    f"{strategy}: identities exposed",
                    full.exposed,
                    EXPOSURE_TARGET * none.exposed,
                )
            )
    slow = _find(result, "slow", "detection")
    gp = result.workload.get("weekly_volume", {}).get("gp", {})
    if slow is not None and "lookups_median" in gp:
        out.append(
            Target(
                "slow: identities per stolen account (vs a GP's median weekly lookups)",
                slow.exposed_per_account_max,
                gp["lookups_median"],
            )
        )
    full_runs = [o for o in result.outcomes if o.configuration == "detection"]
    if full_runs:
        worst = max(full_runs, key=lambda o: o.legit_refused_rate)
        out.append(
            Target(
                f"legitimate lookups refused (worst: {worst.strategy})",
                worst.legit_refused_rate,
                REFUSAL_TARGET,
            )
        )
    for strategy in _FAST:
        full = _find(result, strategy, "detection")
        if full is not None:
            value = full.first_alert_account_lookups
            out.append(
                Target(
                    f"{strategy}: attempts by an account before the first alert",
                    float("inf") if value is None else value,
                    ALERT_TARGET,
                )
            )
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _share(part: int, whole: int) -> str:
    if whole == 0:
        return "-"
    share = 100.0 * part / whole
    return f"{share:.3f}%" if share < 1 else f"{share:.1f}%"


def format_table(result: ReplayResult) -> str:
    """The replay as a text table, with the targets checked below it."""
    header = (
        "strategy",
        "config",
        "exposed",
        "of none",
        "max/acct",
        "attempts",
        "legit refused",
        "rate",
        "typos",
        "false alarms",
        "1st alert: attempts",
        "by acct",
        "after",
    )
    rows: list[tuple[str, ...]] = [header]
    for o in result.outcomes:
        none = _find(result, o.strategy, "none")
        rows.append(
            (
                o.strategy,
                o.configuration,
                f"{o.exposed:,}",
                _share(o.exposed, none.exposed) if none is not None else "-",
                f"{o.exposed_per_account_max:,}",
                f"{o.attack_lookups:,}",
                f"{o.legit_refused:,}",
                f"{100 * o.legit_refused_rate:.3f}%",
                f"{o.typos_rejected:,}",
                f"{o.legit_alerted:,}",
                "-" if o.first_alert_lookups is None else f"{o.first_alert_lookups:,}",
                "-"
                if o.first_alert_account_lookups is None
                else f"{o.first_alert_account_lookups:,}",
                _duration(o.first_alert_seconds),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    s = result.settings
    w = result.workload
    gp = w.get("weekly_volume", {}).get("gp", {})
    lines.insert(
        0,
        f"nirguard simulate: {w['registry_people']:,} people, {s['practitioners']:,} practitioners "
        f"({w['legit_events']:,} legitimate lookups), {s['days']} days, "
        f"{s['attackers']} stolen accounts, seed {s['seed']}",
    )
    if gp:
        lines.insert(
            1,
            f"a GP's week: median {gp['lookups_median']:.0f} lookups "
            f"({gp['distinct_median']:.0f} distinct patients), p99 {gp['lookups_p99']:.0f}",
        )
    lines.insert(2 if gp else 1, "")
    checks = targets(result)
    if checks:
        lines.append("")
        lines.append("targets (quotas + detection):")
        for t in checks:
            value = _fmt(t.value, t.name)
            limit = _fmt(t.limit, t.name)
            lines.append(f"  [{'met' if t.met else 'MISSED'}] {t.name}: {value} (limit {limit})")
    return "\n".join(lines)


def _fmt(value: float, name: str) -> str:
    if value == float("inf"):
        return "no alert"
    if "refused" in name:
        return f"{100 * value:.3f}%"
    return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"


def to_json(result: ReplayResult, *, indent: int | None = 2) -> str:
    """The replay as JSON (settings, workload, outcomes, targets)."""
    data = result.to_dict()
    data["targets"] = [
        {
            "name": t.name,
            "value": None if t.value == float("inf") else round(t.value, 8),
            "limit": round(t.limit, 8),
            "met": t.met,
        }
        for t in targets(result)
    ]
    return json.dumps(data, indent=indent, sort_keys=False)


def plot(result: ReplayResult, path: str | Path) -> None:
    """Plot identities exposed over time, one panel per strategy, one line per configuration.

    Raises:
        ModuleNotFoundError: matplotlib is not installed (it comes with the
            ``nirguard[plot]`` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "--plot needs matplotlib: install the extra with pip install 'nirguard[plot]'",
            name="matplotlib",
        ) from exc
    strategies = list(dict.fromkeys(o.strategy for o in result.outcomes))
    fig, axes = plt.subplots(
        1, len(strategies), figsize=(4.2 * len(strategies), 4.0), squeeze=False, sharey=True
    )
    for ax, strategy in zip(axes[0], strategies, strict=True):
        for o in result.outcomes:
            if o.strategy != strategy:
                continue
            days = [(h + 1) / 24 for h in range(len(o.exposure_by_hour))]
            style, width = _STYLES.get(o.configuration, ("-", 1.5))
            ax.step(
                days,
                o.exposure_by_hour,
                where="post",
                label=o.configuration,
                linestyle=style,
                linewidth=width,
            )
        ax.set_title(strategy)
        ax.set_xlabel("days")
        ax.set_yscale("symlog", linthresh=10)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("identities exposed")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle("nirguard simulate: identities exposed to stolen accounts")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
