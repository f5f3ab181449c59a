"""Show a replay: a table that reads on its own, JSON for machines, a plot.

One vocabulary everywhere (demo, README, docs):

* a *lookup* is a valid NIR typed by a practitioner (the person found or
  not); a *typo* is a mistyped number, refused as invalid by the control
  key: a correct refusal, never counted as a lookup;
* *identities exposed*: distinct people whose identity a stolen account got back;
* *refused*: a lookup the guard did not let run (after stating a reason,
  when the guard asked for one); *asked a reason*: break-glass, let through;
* *first signal*: the first refusal of a stolen account, alert naming one,
  or portal-wide alert about a cohort the attack had walked.

Nothing here prints a NIR: results hold counts and times only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from nirguard.replay.attacks import DESCRIPTIONS, FAST
from nirguard.replay.outcome import QUIET, LegitSummary, Outcome, ReplayResult

__all__ = ["Target", "format_scales", "format_table", "plot", "targets", "to_json"]

#: Identities one fast attack may expose in the week, across the 19 accounts
#: (0.1% of the 510,000 of 2022).
EXPOSURE_TARGET: Final = 510
#: Legitimate lookups that may be refused, per policy (GPs, desks).
REFUSAL_TARGET: Final = 0.001
#: Lookups by the stolen accounts before the first refusal or alert.
SIGNAL_TARGET: Final = 50
_KIND_LABELS: Final = {
    "gp": "GP",
    "new_gp": "new GP",
    "hospital": "hospital desk",
    "pharmacy": "pharmacy desk",
}
_STYLES: Final = {"none": ("-", 3.0), "quotas": ("--", 2.2), "guard": (":", 2.0)}

LEGEND: Final = """\
Legend
  lookup              a valid NIR typed by a practitioner (the person found or not); typos
                      (mistyped numbers the control key rejects) are counted apart, never as lookups
  identities exposed  distinct people whose identity a stolen account got back in the attack week
  no guard / guard    the same script with nothing refused / LookupGuard with the default policy
                      (desks: the desk policy)
  per account         the most identities any one of the stolen accounts got
  tried               lookups the stolen accounts tried, refused ones included
  first signal        lookups by all stolen accounts together up to the first refusal of one of
                      them, alert naming one, or portal-wide alert on a cohort they walked; then the
                      time since the attack began, and the quota or signal
  break-glass         stolen accounts' lookups the guard let through on a stated reason
  refused             legitimate lookups the guard did not let run
  asked a reason      legitimate lookups answered "a reason is required", then let through on the
                      stated reason (break-glass)
  locked out          accounts locked out at least once; "by portal signal": by evidence about a
                      cohort across the portal (hot_cohort, portal_cohort), not about the account"""


@dataclass(frozen=True)
class Target:
    """One of the targets, checked on a replay.

    Attributes:
        name: what is checked.
        value: the measured figure.
        limit: the figure not to exceed.
        detail: where the worst case is, in words.
    """

    name: str
    value: float
    limit: float
    detail: str = ""
    rate: bool = False

    @property
    def met(self) -> bool:
        """True when the measured value is within the limit."""
        return self.value <= self.limit


def _guarded(result: ReplayResult) -> list[Outcome]:
    return [o for o in result.outcomes if o.configuration == "guard"]


def _find(result: ReplayResult, strategy: str, configuration: str) -> Outcome | None:
    try:
        return result.outcome(strategy, configuration)
    except KeyError:
        return None


def _worst_rate(outcomes: list[Outcome], kind: str, all_weeks: bool) -> tuple[float, str]:
    worst, where = 0.0, "every run"
    for o in outcomes:
        legit = o.legit_all if all_weeks else o.legit
        if legit is None:
            continue
        rate = legit.rate(kind)
        if rate > worst:
            worst, where = rate, o.strategy
    return worst, where


def targets(result: ReplayResult) -> list[Target]:
    """Check the targets on the ``guard`` configuration (only those that were run)."""
    out: list[Target] = []
    guarded = _guarded(result)
    if not guarded:
        return out
    for kind, label in (("gp", "GPs (new GPs included)"), ("desk", "desks, under the desk policy")):
        week, where = _worst_rate(guarded, kind, all_weeks=False)
        out.append(
            Target(
                f"legitimate lookups refused, {label}, attack week",
                week,
                REFUSAL_TARGET,
                f"worst: {where}",
                rate=True,
            )
        )
        weeks, where = _worst_rate(guarded, kind, all_weeks=True)
        out.append(
            Target(
                f"legitimate lookups refused, {label}, all weeks",
                weeks,
                REFUSAL_TARGET,
                f"worst: {where}",
                rate=True,
            )
        )
    portal = max((o.legit_all.portal_locked for o in guarded if o.legit_all), default=0)
    out.append(Target("ordinary accounts locked by portal-wide evidence", portal, 0))
    fast = [o for o in guarded if o.strategy in FAST]
    if fast:
        worst = max(fast, key=lambda o: o.exposed)
        out.append(
            Target(
                "identities exposed by a fast attack in the week (19 accounts)",
                worst.exposed,
                EXPOSURE_TARGET,
                f"worst: {worst.strategy}",
            )
        )
        late = max(fast, key=lambda o: _signal_value(o))
        out.append(
            Target(
                "lookups by the stolen accounts before the first signal",
                _signal_value(late),
                SIGNAL_TARGET,
                f"worst: {late.strategy}",
            )
        )
    checks = [o for o in guarded if o.shadow is not None]
    if checks:
        accounts = sum(o.shadow.accounts for o in checks if o.shadow)
        differ = sum(o.shadow.accounts - o.shadow.same for o in checks if o.shadow)
        refused = sum(o.shadow.refused for o in checks if o.shadow)
        bad = [o.strategy for o in checks if o.shadow and not o.shadow.equal]
        out.append(
            Target(
                "shadow mode: accounts whose first would-refusal differs from enforcement's,"
                " or lookups refused",
                differ + refused,
                0,
                f"{accounts:,} account-weeks compared"
                + (f"; differs in {', '.join(bad)}" if bad else ""),
            )
        )
    return out


def _signal_value(o: Outcome) -> float:
    return float("inf") if o.first_signal_lookups is None else float(o.first_signal_lookups)


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


def _pct(part: float, whole: float) -> str:
    if not whole:
        return "-"
    share = 100.0 * part / whole
    return f"{share:.3f}%" if share < 10 else f"{share:.1f}%"


def _grid(rows: list[tuple[str, ...]], left: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def _legit_rows(
    label: str, legit: LegitSummary, everything: LegitSummary | None
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    groups = (("gp", ("gp",)), ("new_gp", ("new_gp",)), ("desk", ("hospital", "pharmacy")))
    for name, kinds in groups:
        lookups = sum(legit.lookups.get(k, 0) for k in kinds)
        refused = sum(legit.refused.get(k, 0) for k in kinds)
        asked = sum(legit.asked.get(k, 0) for k in kinds)
        locked = sum(legit.locked.get(k, 0) for k in kinds)
        all_lookups = sum(everything.lookups.get(k, 0) for k in kinds) if everything else 0
        all_refused = sum(everything.refused.get(k, 0) for k in kinds) if everything else 0
        title = {"gp": "GP", "new_gp": "new GP", "desk": "desk"}[name]
        rows.append(
            (
                title,
                f"{lookups:,}",
                f"{refused:,}",
                _pct(refused, lookups),
                f"{asked:,}",
                f"{locked:,}",
                f"{all_refused:,} of {all_lookups:,}" if everything else "-",
                _pct(all_refused, all_lookups) if everything else "-",
            )
        )
    del label
    return rows


def format_table(result: ReplayResult, *, legend: bool = True) -> str:
    """The replay as text: the world, the attacks, the cost, the targets, a legend."""
    s, w = result.settings, result.world
    accounts = w["accounts"]
    week = w["attack_week_lookups"]
    desks = accounts.get("hospital", 0) + accounts.get("pharmacy", 0)
    lines = [
        f"nirguard simulate: a portal of {sum(accounts.values()):,} practitioners "
        f"({accounts.get('gp', 0):,} GPs, {accounts.get('new_gp', 0):,} new GPs, {desks:,} desks) "
        f"and {w['people']:,} people (scale {s['scale']:g}), seed {s['seed']}",
        f"{_plural(s['history_weeks'], 'week')} of history, then the attack week "
        f"({_plural(s['attack_days'], 'day')}): {s['attackers']} stolen GP accounts "
        "from its Monday 01:00.",
        f"Legitimate lookups in the attack week: {week['lookups']:,} (and {week['typos']:,} typos).",
        "",
    ]
    guard = {o.strategy: o for o in _guarded(result)}
    header = ("attack", "no guard", "guard", "per account", "tried", "first signal", "break-glass")
    rows: list[tuple[str, ...]] = [header]
    for strategy in result.strategies:
        none = _find(result, strategy, "none")
        g = guard.get(strategy)
        signal = "-"
        if g is not None and g.first_signal_lookups is not None:
            signal = (
                f"{g.first_signal_lookups:,} lookups, {_duration(g.first_signal_seconds)} "
                f"({g.first_signal})"
            )
        elif g is not None:
            signal = "never"
        rows.append(
            (
                strategy,
                f"{none.exposed:,}" if none else "-",
                f"{g.exposed:,}" if g else "-",
                f"{g.exposed_per_account_max:,}" if g else "-",
                f"{g.attack_lookups:,}" if g else "-",
                signal,
                f"{g.break_glass:,}" if g else "-",
            )
        )
    lines.append("Identities exposed in the attack week, and when the guard noticed:")
    lines.extend(_grid(rows))
    quotas = [o for o in result.outcomes if o.configuration == "quotas" and o.strategy != QUIET]
    if quotas:
        lines.append(
            "  quotas only (detection off): "
            + ", ".join(f"{o.strategy} {o.exposed:,}" for o in quotas)
        )
    lines.append("")
    guarded = [o for o in _guarded(result) if o.legit is not None]
    if guarded:
        worst = max(guarded, key=lambda o: o.legit.total_refused if o.legit else 0)
        assert worst.legit is not None
        lines.append(
            f"What the guard cost practitioners: the attack week with the most refusals "
            f"({worst.strategy}), and the history and that week together:"
        )
        header2 = (
            "accounts",
            "lookups",
            "refused",
            "rate",
            "asked a reason",
            "locked out",
            "all weeks: refused",
            "rate",
        )
        lines.extend(_grid([header2, *_legit_rows(worst.strategy, worst.legit, worst.legit_all)]))
        portal = max((o.legit_all.portal_locked for o in guarded if o.legit_all), default=0)
        locked_by: dict[str, int] = {}
        for o in guarded:
            if o.legit_all:
                for k, v in o.legit_all.locked_by.items():
                    locked_by[k] = max(locked_by.get(k, 0), v)
        lines.append(
            f"  locked out by portal signal: {portal:,}; lockouts by signal: "
            + (", ".join(f"{k} {v:,}" for k, v in sorted(locked_by.items())) or "none")
        )
        history = result.history.get("guard")
        if history is not None:
            quiet_alarms = history.alerts.get("hot_cohort", 0)
            lines.append(
                f"  hot-cohort alerts raised by legitimate traffic alone (false alarms for the "
                f"security office): {quiet_alarms:,} in the "
                f"{_plural(s['history_weeks'], 'week')} of history"
            )
        lines.append("")
    checks = targets(result)
    if checks:
        lines.append("Targets:")
        for t in checks:
            mark = "met    " if t.met else "NOT MET"
            detail = f"; {t.detail}" if t.detail else ""
            lines.append(
                f"  [{mark}] {t.name}: {_fmt(t.value, t.rate)} (limit {_fmt(t.limit, t.rate)}{detail})"
            )
        lines.append("")
    if not result.features.get("shadow", True) or not result.features.get("reason", True):
        missing = [
            what
            for what, flag in (("shadow mode", "shadow"), ("break-glass (reason=)", "reason"))
            if not result.features.get(flag, True)
        ]
        lines.append(
            f"Note: the installed guard has no {' and no '.join(missing)}; those checks were skipped."
        )
        lines.append("")
    if legend:
        lines.append(LEGEND)
        lines.append("")
    lines.append(closing_line(result))
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def closing_line(result: ReplayResult) -> str:
    """What the guard saved and what it cost, in plain words."""
    guarded = [o for o in _guarded(result) if o.strategy != QUIET]
    parts: list[str] = []
    nones = [o for o in result.outcomes if o.configuration == "none"]
    fast = [o for o in guarded if o.strategy in FAST]
    if nones and fast:
        biggest = max(nones, key=lambda o: o.exposed)
        worst = max(fast, key=lambda o: o.exposed)
        saved = (
            f"Without a guard, the {result.settings['attackers']} stolen accounts got up to "
            f"{biggest.exposed:,} identities in the attack week ({biggest.strategy}); with "
            f"nirguard's default policy no fast attack got more than {worst.exposed:,} "
            f"({worst.strategy})"
        )
        slow = _find(result, "slow", "guard")
        if slow is not None:
            saved += (
                f", while slow-and-low, under every per-account rate, still got {slow.exposed:,}"
            )
        parts.append(saved + ".")
    legit = [o for o in _guarded(result) if o.legit is not None and o.legit_all is not None]
    if legit:
        worst_week = max(legit, key=lambda o: o.legit.total_refused if o.legit else 0)
        week, everything = worst_week.legit, worst_week.legit_all
        assert week is not None
        assert everything is not None
        refused, lookups = week.total_refused, week.total_lookups
        before = everything.total_lookups - lookups
        before_refused = everything.total_refused - refused
        if refused:
            cost = (
                f"It refused {refused:,} of the {lookups:,} legitimate lookups of the attack week "
                f"({_pct(refused, lookups)}, with {worst_week.strategy} running)"
            )
        else:
            cost = f"It refused none of the {lookups:,} legitimate lookups of the attack week"
        if before_refused:
            cost += f", and {before_refused:,} of the {before:,} of the weeks before"
        else:
            cost += f", nor any of the {before:,} of the weeks before"
        asked = sum(week.asked.values())
        if asked:
            cost += f"; practitioners stated a reason {asked:,} times to go on"
        parts.append(cost + ".")
    return " ".join(parts)


def _fmt(value: float, rate: bool) -> str:
    if value == float("inf"):
        return "never"
    if rate:
        return f"{100 * value:.3f}%"
    return f"{value:,.1f}" if value != int(value) else f"{int(value):,}"


def targets_dict(result: ReplayResult) -> list[dict[str, Any]]:
    """The targets as JSON-ready dicts."""
    return [
        {
            "name": t.name,
            "value": None if t.value == float("inf") else round(t.value, 8),
            "limit": round(t.limit, 8),
            "met": t.met,
            "detail": t.detail,
        }
        for t in targets(result)
    ]


def to_json(result: ReplayResult, *, indent: int | None = 2) -> str:
    """The replay as JSON (settings, world, outcomes, targets, closing line)."""
    data = result.to_dict()
    data["targets"] = targets_dict(result)
    data["summary"] = closing_line(result)
    return json.dumps(data, indent=indent)


def scale_row(result: ReplayResult) -> dict[str, Any]:
    """One row of the scale table: legitimate refusals and exposure at this scale."""
    guarded = _guarded(result)
    row: dict[str, Any] = {
        "scale": result.settings["scale"],
        "accounts": sum(result.world["accounts"].values()),
        "people": result.world["people"],
        "weeks": result.settings["history_weeks"],
        "attack_days": result.settings["attack_days"],
        "week_lookups": result.world["attack_week_lookups"]["lookups"],
    }
    for kind in ("gp", "desk"):
        row[f"{kind}_refused_week"] = _worst_rate(guarded, kind, all_weeks=False)[0]
        row[f"{kind}_refused_all"] = _worst_rate(guarded, kind, all_weeks=True)[0]
    history = result.history.get("guard")
    row["history_hot_alerts"] = history.alerts.get("hot_cohort", 0) if history else 0
    row["portal_locked"] = max(
        (o.legit_all.portal_locked for o in guarded if o.legit_all), default=0
    )
    row["locked"] = max(
        (sum(o.legit_all.locked.values()) for o in guarded if o.legit_all), default=0
    )
    for o in guarded:
        if o.strategy != QUIET:
            row[f"{o.strategy}_exposed"] = o.exposed
            row[f"{o.strategy}_signal"] = o.first_signal_lookups
    return row


def format_scales(rows: list[dict[str, Any]]) -> str:
    """The scale table: legitimate refusals and exposure per scale."""
    strategies = [k[: -len("_exposed")] for k in rows[0] if k.endswith("_exposed")] if rows else []
    header = (
        "scale",
        "accounts",
        "people",
        "GP refused (week / all)",
        "desk refused (week / all)",
        "locked (portal)",
        "hot alerts",
        *strategies,
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
                f"{r.get('history_hot_alerts', 0):,}",
                *(f"{r.get(s + '_exposed', 0):,}" for s in strategies),
            )
        )
    lines = [
        "Legitimate lookups refused (worst attack week / history and that week), accounts",
        "locked (by portal signal), hot-cohort alerts from legitimate traffic in the history,",
        "and identities exposed per strategy, by scale (guard, default policy):",
    ]
    lines.extend(_grid(table))
    return "\n".join(lines)


def plot(result: ReplayResult, path: str | Path) -> None:
    """Plot identities exposed over the attack week, one panel per strategy.

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
