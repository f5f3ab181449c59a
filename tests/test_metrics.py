"""OpenTelemetry metrics: values after a scripted sequence, closed attribute sets, no cost when off."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nirguard import LookupGuard, QuotaPolicy
from nirguard.errors import ConfigurationError
from nirguard.metrics import (
    ALERTS,
    BREAK_GLASS,
    DECISIONS,
    DURATION,
    DURATION_BUCKETS,
    LOCKOUTS,
    OTHER,
    OUTCOMES,
    GuardMetrics,
    attribute_value,
    default_metrics,
)
from nirguard.reasons import ReasonCode
from nirguard.testing import NIRGenerator
from tests.metrics_helpers import MetricsCapture

VALID = NIRGenerator(seed=5).many(3)

NIRS = ("185057800608491", "282042A12345617")
# What must never become an attribute value: NIRs in any spelling, practitioner ids (RPPS,
# ADELI), pseudonyms, and the 13-character body of a NIR.
FORBIDDEN = (
    *NIRS,
    "1 85 05 78 006 084 91",
    "1850578006084",
    "10003456789",
    "810000005",
    "demo:44880a8bd66406a83f3ab6bdd29b37d9",
    "44880a8bd66406a83f3ab6bdd29b37d9",
    "gp-10003456789",
    "k1:ab12",
)


class _Lying(str):
    """A str that claims to equal every string (and hashes like the one it mimics)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("denied")


JUNK: tuple[Any, ...] = (
    None,
    3,
    1.5,
    b"denied",
    ["denied"],
    object(),
    "",
    "DENIED",
    "denied\n",
    "ⅷ",
    _Lying("185057800608491"),
)


def _script(m: GuardMetrics) -> None:
    for _ in range(3):
        m.decision("allowed", None, 20e-6, kind="gp", enforced=True)
    m.decision("miss", None, 30e-6, kind="gp", enforced=True)
    m.decision("denied", "lookups", 40e-6, kind="gp", enforced=True)
    m.decision("would_deny", "distinct_patients", 2e-3, kind="desk", enforced=False)
    m.decision("locked", "locked", 1e-5, kind=None, enforced=True)
    m.decision("break_glass", "distinct_patients", 3.0, kind="gp", enforced=True)
    m.lockout("distinct_patients", 1, kind="desk", enforced=False)
    m.lockout("cohort", 2, kind="gp")
    m.lockout("misses", 9, kind="gp")
    m.alert("distinct_patients", kind="desk", enforced=False)
    m.alert("hot_cohort", kind=None)
    m.alert("break_glass", kind="gp")
    m.break_glass(ReasonCode.ETREAT, kind="gp")
    m.break_glass("TREAT", kind="gp")
    m.break_glass("ETREAT", kind="gp")


def test_values_after_a_scripted_sequence() -> None:
    capture = MetricsCapture(store="redis", kinds=["gp", "desk"])
    _script(capture.metrics)

    assert capture.value(DECISIONS) == 8
    assert capture.value(DECISIONS, outcome="allowed", kind="gp", enforced=True) == 3
    assert capture.value(DECISIONS, outcome="denied", quota="lookups") == 1
    assert capture.value(DECISIONS, outcome="would_deny", kind="desk", enforced=False) == 1
    assert capture.value(DECISIONS, quota="distinct_patients") == 2
    assert capture.value(DECISIONS, store="redis") == 8
    assert capture.value(LOCKOUTS) == 3
    assert capture.value(LOCKOUTS, quota="distinct_patients", lockout_level="1") == 1
    assert capture.value(LOCKOUTS, quota="cohort", lockout_level="2", enforced=True) == 1
    assert capture.value(LOCKOUTS, quota="misses", lockout_level="5+") == 1
    assert capture.value(ALERTS) == 3
    assert capture.value(ALERTS, signal="distinct_patients", enforced=False) == 1
    assert capture.value(ALERTS, signal="hot_cohort") == 1
    assert capture.value(BREAK_GLASS, reason="ETREAT", kind="gp") == 2
    assert capture.value(BREAK_GLASS, reason="TREAT") == 1

    # Exact attribute sets: a missing kind or quota is absent, not "None".
    attrs = {
        (p.name, tuple(sorted(p.attributes.items())))
        for p in capture.points()
        if p.name == DECISIONS and p.attributes["nirguard.outcome"] in ("locked", "allowed")
    }
    assert attrs == {
        (
            DECISIONS,
            (
                ("nirguard.enforced", True),
                ("nirguard.outcome", "locked"),
                ("nirguard.quota", "locked"),
                ("nirguard.store", "redis"),
            ),
        ),
        (
            DECISIONS,
            (
                ("nirguard.enforced", True),
                ("nirguard.kind", "gp"),
                ("nirguard.outcome", "allowed"),
                ("nirguard.store", "redis"),
            ),
        ),
    }
    capture.assert_clean(*NIRS)


def test_duration_histogram() -> None:
    capture = MetricsCapture()
    _script(capture.metrics)

    allowed = capture.histogram(DURATION, outcome="allowed", store="memory")
    assert allowed.count == 3
    assert allowed.sum == pytest.approx(60e-6)
    assert tuple(allowed.explicit_bounds) == DURATION_BUCKETS
    assert allowed.bucket_counts[1] == 3  # (10 µs, 25 µs]
    slow = capture.histogram(DURATION, outcome="break_glass", store="memory")
    assert slow.bucket_counts[-1] == 1  # past 1 s: the overflow bucket
    assert {p.unit for p in capture.points() if p.name == DURATION} == {"s"}
    units = {p.name: p.unit for p in capture.points()}
    assert units == {
        DECISIONS: "{decision}",
        DURATION: "s",
        ALERTS: "{alert}",
        LOCKOUTS: "{lockout}",
        BREAK_GLASS: "{grant}",
    }


def test_buckets_span_10us_to_1s() -> None:
    assert DURATION_BUCKETS[0] == 1e-5
    assert DURATION_BUCKETS[-1] == 1.0
    assert list(DURATION_BUCKETS) == sorted(set(DURATION_BUCKETS))
    assert 0.5 in DURATION_BUCKETS  # the guard's default deadline


def _feed(m: GuardMetrics, value: Any) -> None:
    m.decision(value, value, 1e-4, kind=value, enforced=True)
    m.decision("denied", value, 1e-4, kind=value, enforced=value)
    m.decision(value, "lookups", 1e-4, kind="gp", enforced=False)
    m.alert(value, kind=value)
    m.alert(value, kind=value, enforced=value)
    m.lockout(value, value, kind=value)
    m.lockout("lookups", 1, kind=value, enforced=value)
    m.break_glass(value, kind=value)


@pytest.mark.parametrize("kinds", [None, ("gp", "desk")])
def test_identifiers_never_become_attribute_values(kinds: Any) -> None:
    capture = MetricsCapture(kinds=kinds)
    for value in (*FORBIDDEN, *JUNK):
        _feed(capture.metrics, value)
    capture.metrics.decision("allowed", None, 1e-4, kind="gp", enforced=True)

    points = capture.points()
    assert points
    seen = repr([p.attributes for p in points])
    for value in FORBIDDEN:
        assert value not in seen
    capture.assert_clean(*NIRS, kinds=frozenset(kinds) if kinds else None)
    kinds_seen = {p.attributes.get("nirguard.kind") for p in points} - {None}
    # Only declared kinds are recorded as themselves; undeclared ones ("gp" here) are "other".
    assert kinds_seen == ({"gp", OTHER} if kinds else {OTHER})


def test_closed_kinds() -> None:
    capture = MetricsCapture(kinds=["gp"])
    m = capture.metrics
    m.decision("allowed", None, 1e-4, kind="gp", enforced=True)
    m.decision("allowed", None, 1e-4, kind="dr.martin", enforced=True)
    assert capture.value(DECISIONS, kind="gp") == 1
    assert capture.value(DECISIONS, kind=OTHER) == 1


@pytest.mark.parametrize("bad", ["10003456789", "dr martin", "", "x" * 25, "1gp", 3])
def test_closed_kinds_must_be_policy_names(bad: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        GuardMetrics(MetricsCapture().provider, kinds=["gp", bad])
    assert str(bad) not in str(info.value) or bad in ("", 3)


def test_undeclared_kinds_are_other_whatever_their_shape() -> None:
    capture = MetricsCapture()
    m = capture.metrics
    for i in range(40):
        m.decision("allowed", None, 1e-4, kind=f"kind-{i}", enforced=True)
    assert capture.value(DECISIONS, kind=OTHER) == 40
    guard_side = m.for_guard(store="redis", kinds=["kind-0", "10003456789", "dr martin"])
    guard_side.decision("allowed", None, 1e-4, kind="kind-0", enforced=True)
    guard_side.decision("allowed", None, 1e-4, kind="10003456789", enforced=True)
    assert capture.value(DECISIONS, store="redis", kind="kind-0") == 1
    assert capture.value(DECISIONS, store="redis", kind=OTHER) == 1  # not a policy name


def test_a_policy_callable_naming_practitioners_puts_no_name_in_a_metric() -> None:
    capture = MetricsCapture()
    guard = LookupGuard(
        lambda who: QuotaPolicy(name=f"p-{who}"), metrics=capture.metrics, kinds=["gp"]
    )
    fixed = LookupGuard(QuotaPolicy(name="desk"), metrics=capture.metrics)
    for who in ("martin", "durand"):
        with guard.lookup(who, VALID[0]) as lookup:
            lookup.record({"x": 1})
    with fixed.lookup("martin", VALID[1]) as lookup:
        lookup.record({"x": 1})
    kinds = {p.attributes.get("nirguard.kind") for p in capture.points()} - {None}
    assert kinds == {OTHER, "desk"}
    assert capture.value(DECISIONS, kind=OTHER, outcome="allowed") == 2


def test_misses_are_counted_as_misses() -> None:
    capture = MetricsCapture()
    guard = LookupGuard(QuotaPolicy(name="gp"), metrics=capture.metrics)
    for value, found in ((VALID[0], {"x": 1}), (VALID[1], None), (VALID[2], None)):
        with guard.lookup("dr", value) as lookup:
            lookup.record(found)
    assert capture.value(DECISIONS, outcome="allowed") == 1
    assert capture.value(DECISIONS, outcome="miss", kind="gp") == 2


def test_with_store_shares_the_instruments() -> None:
    capture = MetricsCapture(kinds=["gp"])
    redis = capture.metrics.with_store("redis")
    assert repr(redis) == "GuardMetrics(store='redis')"
    assert repr(capture.metrics.with_store("postgres://user:secret@db")) == (
        "GuardMetrics(store='other')"
    )
    redis.decision("allowed", None, 1e-4, kind="desk", enforced=True)
    capture.metrics.decision("allowed", None, 1e-4, kind="gp", enforced=True)
    assert capture.value(DECISIONS, store="redis", kind=OTHER) == 1
    assert capture.value(DECISIONS, store="memory", kind="gp") == 1


_SHARED = MetricsCapture(kinds=["gp"])


@settings(max_examples=150, deadline=None)
@given(
    outcome=st.one_of(st.sampled_from(sorted(OUTCOMES)), st.text(max_size=20)),
    quota=st.one_of(st.none(), st.text(max_size=20), st.from_regex(r"[0-9]{9,15}")),
    kind=st.one_of(st.none(), st.text(max_size=30), st.from_regex(r"[a-z]{0,3}[0-9]{5,15}")),
    level=st.integers(-3, 30),
)
def test_any_input_stays_in_the_closed_sets(
    outcome: str, quota: str | None, kind: str | None, level: int
) -> None:
    m = _SHARED.metrics
    m.decision(outcome, quota, 1e-4, kind=kind, enforced=True)
    m.alert(quota or "x", kind=kind)
    m.lockout(quota or "x", level, kind=kind)
    m.break_glass(outcome, kind=kind)
    _SHARED.assert_clean(kinds=frozenset({"gp"}))


def test_attribute_value() -> None:
    assert attribute_value(ReasonCode.ETREAT, {"ETREAT"}) == "ETREAT"
    assert type(attribute_value(ReasonCode.ETREAT, {"ETREAT"})) is str
    assert attribute_value(_Lying("x"), {"denied"}) == OTHER
    assert attribute_value(None, {"denied"}) == OTHER


class _Broken:
    """A meter provider whose instruments fail (the message holds a NIR: it must not be logged)."""

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def _instrument(self, *args: Any, **kwargs: Any) -> Any:
        return self

    create_counter = create_histogram = _instrument

    def add(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("meter exploded on 185057800608491")

    record = add


def test_a_failing_meter_never_breaks_a_lookup(caplog: pytest.LogCaptureFixture) -> None:
    m = GuardMetrics(_Broken())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="nirguard.metrics"):
        for _ in range(3):
            m.decision("allowed", None, 1e-4, kind="gp", enforced=True)
            m.alert("cohort", kind="gp")
            m.lockout("cohort", 1, kind="gp")
            m.break_glass("ETREAT", kind="gp")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "nirguard metrics recording failed (RuntimeError); further failures are not reported"
    ]


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_default_metrics_follow_a_provider_set_later() -> None:
    out = _run(
        """
        from nirguard.metrics import default_metrics, DECISIONS
        m = default_metrics(store="redis")
        assert default_metrics() is not None
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        m.decision("allowed", None, 1e-5, kind="gp", enforced=True)
        data = reader.get_metrics_data()
        [(scope, point)] = [
            (s.scope.name, p)
            for r in data.resource_metrics
            for s in r.scope_metrics
            for x in s.metrics if x.name == DECISIONS
            for p in x.data.data_points
        ]
        print(scope, point.value, dict(point.attributes)["nirguard.store"])
        """
    )
    assert out == "nirguard 1 redis"


def test_without_the_otel_extra() -> None:
    out = _run(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
        import nirguard.metrics as nm
        print(nm.default_metrics(), nm.default_metrics(store="redis"))
        try:
            nm.GuardMetrics()
        except ImportError:
            print("ImportError")
        """
    )
    assert out.splitlines() == ["None None", "ImportError"]


def test_default_metrics_with_the_extra() -> None:
    m = default_metrics()
    assert isinstance(m, GuardMetrics)
    m.decision("allowed", None, 1e-5, kind="gp", enforced=True)  # the no-op global provider


def test_prometheus_names() -> None:
    pytest.importorskip("opentelemetry.exporter.prometheus")
    out = _run(
        """
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import generate_latest
        from nirguard.metrics import GuardMetrics
        m = GuardMetrics(MeterProvider(metric_readers=[PrometheusMetricReader()]), store="redis")
        m.decision("denied", "lookups", 2e-5, kind="10003456789", enforced=True)
        m.alert("cohort", kind="gp")
        m.lockout("cohort", 1, kind="gp")
        m.break_glass("ETREAT", kind="gp")
        print(generate_latest().decode())
        """
    )
    names = {line.split("{")[0] for line in out.splitlines() if line.startswith("nirguard_")}
    assert names == {
        "nirguard_guard_decisions_total",
        "nirguard_guard_decision_duration_seconds_bucket",
        "nirguard_guard_decision_duration_seconds_count",
        "nirguard_guard_decision_duration_seconds_sum",
        "nirguard_guard_alerts_total",
        "nirguard_guard_lockouts_total",
        "nirguard_guard_break_glass_total",
    }
    assert 'nirguard_quota="lookups"' in out
    assert 'nirguard_kind="other"' in out
    assert 'le="2.5e-05"' in out
    assert "10003456789" not in out
