"""The replay in figures: the scale table and the exposure plot.

Nothing here prints a NIR: results hold counts and times only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from nirguard._plot import pyplot
from nirguard.replay.attacks import DESCRIPTIONS
from nirguard.replay.outcome import QUIET, ReplayResult
from nirguard.replay.targets import guarded, worst_rate
from nirguard.replay.text import grid, hours

__all__ = ["format_scales", "plot", "scale_row"]

_STYLES: Final = {"none": ("-", 3.0), "quotas": ("--", 2.2), "guard": (":", 2.0)}


def scale_row(result: ReplayResult) -> dict[str, Any]:
    """One row of the scale table: the cost to legitimate accounts and, per strategy,
    identities exposed, the most per account and the latest alert after a first refusal."""
    guard = guarded(result)
    row: dict[str, Any] = {
        "scale": result.settings["scale"],
        "accounts": sum(result.world["accounts"].values()),
        "people": result.world["people"],
        "weeks": result.settings["history_weeks"],
        "attack_days": result.settings["attack_days"],
        "week_lookups": result.world["attack_week_lookups"]["lookups"],
    }
    for kind in ("gp", "desk"):
        row[f"{kind}_refused_week"] = worst_rate(guard, kind, all_weeks=False)[0]
        row[f"{kind}_refused_all"] = worst_rate(guard, kind, all_weeks=True)[0]
    everything = [o.legit_all for o in guard if o.legit_all is not None]
    row["false_alerts"] = max((s.false_alerts for s in everything), default=0.0)
    row["notices"] = max((sum(s.notices.values()) for s in everything), default=0)
    row["portal_locked"] = max((s.portal_locked for s in everything), default=0)
    row["locked"] = max((sum(s.locked.values()) for s in everything), default=0)
    for o in guard:
        if o.strategy != QUIET:
            row[f"{o.strategy}_exposed"] = o.exposed
            row[f"{o.strategy}_per_account"] = o.exposed_per_account_max
            row[f"{o.strategy}_alert_after_refusal"] = o.after_refusal()[1]
            row[f"{o.strategy}_alert_median"] = o.alert_median_hours
            row[f"{o.strategy}_signal"] = o.first_signal_lookups
    return row


def format_scales(rows: list[dict[str, Any]]) -> str:
    """The scale table: what the guard cost legitimate accounts, then per strategy
    what the stolen accounts got, at each scale."""
    header = (
        "scale",
        "accounts",
        "people",
        "GP refused (week / all)",
        "desk refused (week / all)",
        "locked (portal)",
        "false alerts /1,000 pw",
        "notices",
    )
    table: list[tuple[str, ...]] = [header]
    for r in rows:
        table.append(
            (
                f"{r['scale']:g}",
                f"{r['accounts']:,}",
                f"{r['people']:,}",
                f"{100 * r['gp_refused_week']:.3f}% / {100 * r['gp_refused_all']:.3f}%",
                f"{100 * r['desk_refused_week']:.3f}% / {100 * r['desk_refused_all']:.3f}%",
                f"{r['locked']:,} ({r['portal_locked']:,})",
                f"{r.get('false_alerts', 0.0):.2f}",
                f"{r.get('notices', 0):,}",
            )
        )
    lines = [
        "Legitimate lookups refused (worst attack week / history and that week), accounts",
        "locked (by portal signal), false alerts (cases on legitimate accounts per 1,000",
        "practitioner-weeks) and portal notices, by scale (guard, default policy):",
        *grid(table),
    ]
    strategies = [k[: -len("_exposed")] for k in rows[0] if k.endswith("_exposed")] if rows else []
    if strategies:
        by_strategy: list[tuple[str, ...]] = [("attack", *(f"scale {r['scale']:g}" for r in rows))]
        for strategy in strategies:
            cells = []
            for r in rows:
                after = r.get(f"{strategy}_alert_after_refusal")
                cells.append(
                    f"{r.get(strategy + '_exposed', 0):,} ({r.get(strategy + '_per_account', 0):,}; "
                    f"{hours(after)})"
                )
            by_strategy.append((strategy, *cells))
        lines += [
            "",
            "Identities exposed by the stolen accounts (the most per account; the latest",
            "first alert after an account's first refusal), by scale:",
            *grid(by_strategy),
        ]
    return "\n".join(lines)


def plot(result: ReplayResult, path: str | Path) -> None:
    """Plot identities exposed over the attack week, one panel per strategy.

    Raises:
        ModuleNotFoundError: matplotlib is not installed (it comes with the
            ``plot`` extra).
    """
    plt = pyplot()
    strategies = result.strategies
    columns = min(3, len(strategies))
    rows = (len(strategies) + columns - 1) // columns
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False, sharey=True
    )
    for n, strategy in enumerate(strategies):
        ax = axes[n // columns][n % columns]
        for o in result.outcomes:
            if o.strategy != strategy:
                continue
            days = [(h + 1) / 24 for h in range(len(o.exposure_by_hour))]
            style, width = _STYLES.get(o.configuration, ("-", 1.5))
            label = "no guard" if o.configuration == "none" else o.configuration
            ax.step(
                days,
                o.exposure_by_hour,
                where="post",
                label=label,
                linestyle=style,
                linewidth=width,
            )
        ax.set_title(f"{strategy}: {DESCRIPTIONS.get(strategy, '')}", fontsize=7)
        ax.set_xlabel("days into the attack week")
        ax.set_yscale("symlog", linthresh=10)
        ax.grid(True, alpha=0.3)
    for n in range(len(strategies), rows * columns):
        axes[n // columns][n % columns].axis("off")
    axes[0][0].set_ylabel("identities exposed")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle("nirguard simulate: identities exposed to 19 stolen accounts")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
