"""Show a replay: a table that reads on its own, and JSON for machines.

One vocabulary everywhere (demo, README, docs):

* a *lookup* is a valid NIR typed by a practitioner (the person found or
  not); a *typo* is a mistyped number, refused as invalid by the control
  key: a correct refusal, never counted as a lookup;
* *identities exposed*: distinct people whose identity a stolen account got back;
* *refused*: a lookup the guard did not let run (after stating a reason,
  when the guard asked for one); *asked a reason*: break-glass, let through;
* *first signal*: the first refusal of a stolen account, alert naming one,
  or portal-wide notice about a cohort the attack had walked;
* an *alert* is a case about one account (:class:`nirguard.alerts.Alert`); a
  *notice* is about a cohort and names nobody (:class:`nirguard.alerts.Notice`).

:mod:`~nirguard.replay.targets` checks the targets, :mod:`~nirguard.replay.figures`
draws the scale table and the plot. Nothing here prints a NIR: results hold
counts and times only.
"""

from __future__ import annotations

import json
from typing import Final

from nirguard.replay.attacks import DESCRIPTIONS, FAST
from nirguard.replay.figures import format_scales, plot, scale_row
from nirguard.replay.outcome import QUIET, LegitSummary, Outcome, ReplayResult
from nirguard.replay.targets import Target, find, guarded, targets, targets_dict
from nirguard.replay.text import duration, grid, hours, pct, plural

__all__ = [
    "LEGEND",
    "Target",
    "closing_line",
    "format_scales",
    "format_table",
    "legend_text",
    "plot",
    "scale_row",
    "targets",
    "to_json",
]

LEGEND: Final = """\
Legend
  lookup              a valid NIR typed by a practitioner (the person found or not); typos
                      (mistyped numbers the control key rejects) are counted apart, never as lookups
  identities exposed  distinct people whose identity a stolen account got back in the attack week;
                      0: the guard refused or locked every stolen account before any of its
                      lookups found someone
  no guard / guard    the same script with nothing refused / LookupGuard with the default policy
                      (desks: the desk policy)
  per account         the most identities any one of the stolen accounts got
  tried               lookups the stolen accounts tried, refused ones included
  first signal        lookups by all stolen accounts together up to the first refusal of one of
                      them, alert naming one, or portal notice on a cohort they walked; then the
                      time since the attack began, and the quota or signal
  break-glass         stolen accounts' lookups the guard let through on a stated reason
  alerted             stolen accounts an alert (a case about the account) named in the week
  after 1st refusal   hours from an account's first refusal to the first alert naming it: the
                      median and the slowest account ("never": refused, never alerted)
  after its start     hours from an account's first lookup to the first alert naming it
  refused             legitimate lookups the guard did not let run
  asked a reason      legitimate lookups answered "a reason is required", then let through on the
                      stated reason (break-glass)
  locked out          accounts locked out at least once; "by portal signal": by evidence about a
                      cohort across the portal (hot_cohort, portal_cohort), not about the account
  false alerts        alert cases naming a legitimate account, per 1,000 practitioner-weeks
                      (one account for one week is a practitioner-week); notices name nobody
  [met] / [NOT MET]   each target with the measured value, its limit and the strategy whose week
                      is the worst case ("none refused in any run": no week refused anything)"""


def legend_text(strategies: list[str]) -> str:
    """The legend, and what each of ``strategies`` does."""
    width = max((len(s) for s in strategies), default=0)
    lines = [LEGEND, "Attacks"]
    lines.extend(f"  {s.ljust(max(width, 18))}  {DESCRIPTIONS.get(s, '')}" for s in strategies)
    return "\n".join(lines)


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
                pct(refused, lookups),
                f"{asked:,}",
                f"{locked:,}",
                f"{all_refused:,} of {all_lookups:,}" if everything else "-",
                pct(all_refused, all_lookups) if everything else "-",
            )
        )
    del label
    return rows


def _header(result: ReplayResult) -> list[str]:
    s, w = result.settings, result.world
    accounts = w["accounts"]
    week = w["attack_week_lookups"]
    desks = accounts.get("hospital", 0) + accounts.get("pharmacy", 0)
    return [
        f"nirguard simulate: a portal of {sum(accounts.values()):,} practitioners "
        f"({accounts.get('gp', 0):,} GPs, {accounts.get('new_gp', 0):,} new GPs, {desks:,} desks) "
        f"and {w['people']:,} people (scale {s['scale']:g}), seed {s['seed']}",
        f"{plural(s['history_weeks'], 'week')} of history, then the attack week "
        f"({plural(s['attack_days'], 'day')}): {s['attackers']} stolen GP accounts "
        "from its Monday 01:00.",
        f"Legitimate lookups in the attack week: {week['lookups']:,} (and {week['typos']:,} typos).",
        *_sessions(s),
        "",
    ]


def _sessions(settings: dict[str, object]) -> list[str]:
    """The header's line on login sessions (none in a world without them)."""
    if not settings.get("sessions"):
        return []
    share = float(settings.get("two_devices", 0.0))  # type: ignore[arg-type]
    return [
        "Every lookup carries its login session (session_overlap); GPs use two devices "
        f"at once on {100 * share:g}% of their working days."
    ]


def _signal(g: Outcome | None) -> str:
    if g is None:
        return "-"
    if g.first_signal_lookups is None:
        return "never"
    return (
        f"{g.first_signal_lookups:,} lookups, {duration(g.first_signal_seconds)} ({g.first_signal})"
    )


def _exposure(result: ReplayResult) -> list[str]:
    guard = {o.strategy: o for o in guarded(result)}
    header = ("attack", "no guard", "guard", "per account", "tried", "first signal", "break-glass")
    rows: list[tuple[str, ...]] = [header]
    for strategy in result.strategies:
        none, g = find(result, strategy, "none"), guard.get(strategy)
        rows.append(
            (
                strategy,
                f"{none.exposed:,}" if none else "-",
                f"{g.exposed:,}" if g else "-",
                f"{g.exposed_per_account_max:,}" if g else "-",
                f"{g.attack_lookups:,}" if g else "-",
                _signal(g),
                f"{g.break_glass:,}" if g else "-",
            )
        )
    lines = ["Identities exposed in the attack week, and when the guard noticed:", *grid(rows)]
    quotas = [o for o in result.outcomes if o.configuration == "quotas" and o.strategy != QUIET]
    if quotas:
        lines.append(
            "  quotas only (detection off): "
            + ", ".join(f"{o.strategy} {o.exposed:,}" for o in quotas)
        )
    return [*lines, ""]


def _alerts(result: ReplayResult) -> list[str]:
    header = (
        "attack",
        "alerted",
        "never alerted",
        "after 1st refusal: median",
        "max",
        "after its start: median",
        "max",
        "locked for good",
    )
    rows: list[tuple[str, ...]] = [header]
    for g in guarded(result):
        if g.strategy == QUIET:
            continue
        median, latest = g.after_refusal()
        rows.append(
            (
                g.strategy,
                f"{g.alerted} of {len(g.alert_hours)}",
                f"{g.never_alerted}",
                hours(median),
                hours(latest),
                "never" if g.alert_median_hours is None else hours(g.alert_median_hours),
                hours(g.alert_max_hours),
                f"{g.accounts_stopped}",
            )
        )
    if len(rows) == 1:
        return []
    return [
        "Alerts naming the stolen accounts (one case per account and incident):",
        *grid(rows),
        "",
    ]


def _cost(result: ReplayResult) -> list[str]:
    legit = [o for o in guarded(result) if o.legit is not None]
    if not legit:
        return []
    worst = max(legit, key=lambda o: o.legit.total_refused if o.legit else 0)
    assert worst.legit is not None
    header = ("accounts", "lookups", "refused", "rate", "asked a reason", "locked out",
              "all weeks: refused", "rate")  # fmt: skip
    lines = [
        f"What the guard cost practitioners: the attack week with the most refusals "
        f"({worst.strategy}), and the history and that week together:",
        *grid([header, *_legit_rows(worst.strategy, worst.legit, worst.legit_all)]),
    ]
    everything = [o.legit_all for o in legit if o.legit_all is not None]
    portal = max((s.portal_locked for s in everything), default=0)
    locked_by: dict[str, int] = {}
    for summary in everything:
        for k, v in summary.locked_by.items():
            locked_by[k] = max(locked_by.get(k, 0), v)
    lines.append(
        f"  locked out by portal signal: {portal:,}; lockouts by signal: "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(locked_by.items())) or "none")
    )
    if everything:
        most = max(everything, key=lambda s: s.false_alerts)
        cases = sum(most.cases.values())
        notices = max(sum(s.notices.values()) for s in everything)
        lines.append(
            f"  false alerts (cases naming a legitimate account): {cases:,} in "
            f"{most.account_weeks:,.0f} practitioner-weeks, {most.false_alerts:.2f} per 1,000 "
            f"(the worst run, history included); portal notices naming nobody: {notices:,}"
        )
    return [*lines, ""]


def _fmt(value: float, rate: bool) -> str:
    if value == float("inf"):
        return "never"
    if rate:
        return f"{100 * value:.3f}%"
    return f"{value:,.2f}" if value != int(value) else f"{int(value):,}"


def _targets(result: ReplayResult) -> list[str]:
    checks = targets(result)
    if not checks:
        return []
    lines = ["Targets (measured value; the limit; the worst case):"]
    for t in checks:
        mark = "met    " if t.met else "NOT MET"
        detail = f"; {t.detail}" if t.detail else ""
        lines.append(
            f"  [{mark}] {t.name}: {_fmt(t.value, t.rate)} (limit {_fmt(t.limit, t.rate)}{detail})"
        )
    return [*lines, ""]


def _missing(result: ReplayResult) -> list[str]:
    missing = [
        what
        for what, flag in (("shadow mode", "shadow"), ("break-glass (reason=)", "reason"))
        if not result.features.get(flag, True)
    ]
    if not missing:
        return []
    return [
        f"Note: the installed guard has no {' and no '.join(missing)}; those checks were skipped.",
        "",
    ]


def format_table(result: ReplayResult, *, legend: bool = True) -> str:
    """The replay as text: the world, the attacks, the alerts, the cost, the targets,
    a legend and a closing line."""
    lines = _header(result) + _exposure(result) + _alerts(result) + _cost(result)
    lines += _targets(result) + _missing(result)
    if legend:
        lines += [legend_text(result.strategies), ""]
    lines.append(closing_line(result))
    return "\n".join(lines)


def closing_line(result: ReplayResult) -> str:
    """What the guard saved and what it cost, in plain words."""
    guard = [o for o in guarded(result) if o.strategy != QUIET]
    parts: list[str] = []
    nones = [o for o in result.outcomes if o.configuration == "none"]
    fast = [o for o in guard if o.strategy in FAST]
    if nones and fast:
        biggest = max(nones, key=lambda o: o.exposed)
        worst = max(fast, key=lambda o: o.exposed)
        saved = (
            f"Without a guard, the {result.settings['attackers']} stolen accounts got up to "
            f"{biggest.exposed:,} identities in the attack week ({biggest.strategy}); with "
            f"nirguard's default policy no fast attack got more than {worst.exposed:,} "
            f"({worst.strategy})"
        )
        paced = [o for o in guard if o.strategy not in FAST]
        if paced:
            most = max(paced, key=lambda o: o.exposed_per_account_max)
            saved += (
                f", and a harvester paced like a practitioner at most "
                f"{most.exposed_per_account_max:,} per account ({most.strategy})"
            )
        parts.append(saved + ".")
    legit = [o for o in guard if o.legit is not None and o.legit_all is not None]
    if legit:
        parts.append(
            _cost_sentence(max(legit, key=lambda o: o.legit.total_refused if o.legit else 0))
        )
    return " ".join(parts)


def _cost_sentence(worst: Outcome) -> str:
    week, everything = worst.legit, worst.legit_all
    assert week is not None
    assert everything is not None
    refused, lookups = week.total_refused, week.total_lookups
    before = everything.total_lookups - lookups
    before_refused = everything.total_refused - refused
    if refused:
        cost = (
            f"It refused {refused:,} of the {lookups:,} legitimate lookups of the attack week "
            f"({pct(refused, lookups)}, with {worst.strategy} running)"
        )
    else:
        cost = f"It refused none of the {lookups:,} legitimate lookups of the attack week"
    if before_refused:
        cost += f", and {before_refused:,} of the {before:,} of the weeks before"
    else:
        cost += f", and none of the {before:,} of the weeks before"
    asked = sum(week.asked.values())
    if asked:
        cost += f"; practitioners stated a reason {asked:,} times to go on"
    cases = sum(everything.cases.values())
    cost += (
        f"; it opened {cases:,} false alert case{'' if cases == 1 else 's'} on legitimate "
        f"accounts ({everything.false_alerts:.2f} per 1,000 practitioner-weeks)"
    )
    return cost + "."


def to_json(result: ReplayResult, *, indent: int | None = 2) -> str:
    """The replay as JSON (settings, world, outcomes, targets, closing line)."""
    data = result.to_dict()
    data["targets"] = targets_dict(result)
    data["summary"] = closing_line(result)
    return json.dumps(data, indent=indent)
