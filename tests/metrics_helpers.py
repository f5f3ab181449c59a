"""Read what a :class:`GuardMetrics` recorded, through the SDK's in-memory reader.

Guard tests can use it as well::

    capture = MetricsCapture()
    guard = LookupGuard(..., metrics=capture.metrics)
    ...
    assert capture.value(DECISIONS, outcome="denied", quota="lookups") == 1
    capture.assert_clean(nir_used_in_the_test)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from nirguard.metrics import ATTRIBUTE_KEYS, OTHER, OUTCOMES, QUOTAS, REASONS, STORES, GuardMetrics
from tests.conftest import assert_no_nir

# The values each attribute key may take (kinds: the names the recorder was told or learned).
CLOSED: dict[str, frozenset[Any]] = {
    "nirguard.outcome": OUTCOMES | {OTHER},
    "nirguard.quota": QUOTAS | {OTHER},
    "nirguard.signal": QUOTAS | {OTHER},
    "nirguard.reason": REASONS | {OTHER},
    "nirguard.store": STORES | {OTHER},
    "nirguard.enforced": frozenset({True, False}),
    "nirguard.lockout.level": frozenset({"1", "2", "3", "4", "5+", OTHER}),
}


@dataclass(frozen=True)
class Point:
    """One data point: its instrument, attributes and value (a count, or a histogram)."""

    name: str
    unit: str
    attributes: dict[str, Any]
    value: Any


class MetricsCapture:
    """A :class:`GuardMetrics` on a private SDK provider with an in-memory reader."""

    def __init__(self, *, store: str = "memory", kinds: Any = None) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.metrics = GuardMetrics(self.provider, store=store, kinds=kinds)

    def points(self) -> list[Point]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return list(_points(data))

    def value(self, name: str, **attributes: Any) -> Any:
        """Sum of the counter ``name`` over the points whose attributes include ``attributes``.

        Keys are written without the ``nirguard.`` prefix, dots as ``_``
        (``lockout_level="1"``).
        """
        want = {"nirguard." + k.replace("_", "."): v for k, v in attributes.items()}
        total = 0
        for point in self.points():
            if point.name == name and _includes(point.attributes, want):
                total += point.value
        return total

    def histogram(self, name: str, **attributes: Any) -> HistogramDataPoint:
        want = {"nirguard." + k: v for k, v in attributes.items()}
        found = [p.value for p in self.points() if p.name == name and p.attributes == want]
        assert len(found) == 1, found
        value: HistogramDataPoint = found[0]
        return value

    def assert_clean(self, *known_nirs: str, kinds: frozenset[str] | None = None) -> None:
        """Every attribute key and value is from the closed sets; no NIR anywhere."""
        for point in self.points():
            for key, value in point.attributes.items():
                assert key in ATTRIBUTE_KEYS, key
                if key == "nirguard.kind":
                    assert isinstance(value, str)
                    if kinds is not None:
                        assert value in kinds | {OTHER}, value
                else:
                    assert value in CLOSED[key], (key, value)
                    assert type(value) in (str, bool), (key, type(value))
            assert_no_nir(repr(point.attributes), *known_nirs)


def _includes(attributes: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(attributes.get(k, _MISSING) == v for k, v in want.items())


_MISSING = object()


def _points(data: Any) -> Iterator[Point]:
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for dp in metric.data.data_points:
                    value = dp if isinstance(dp, HistogramDataPoint) else dp.value
                    yield Point(metric.name, metric.unit, dict(dp.attributes or {}), value)
