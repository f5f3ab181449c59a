"""The OpenTelemetry instruments of the guard (made only when metrics are recorded).

Their names are part of :mod:`nirguard.metrics`' public surface; this module
holds them and makes the instruments once per meter provider.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, MeterProvider

__all__ = [
    "ALERTS",
    "BREAK_GLASS",
    "DECISIONS",
    "DROPPED",
    "DURATION",
    "DURATION_BUCKETS",
    "LOCKOUTS",
    "METER_NAME",
    "NOTICES",
    "Instruments",
    "instruments_for",
]

METER_NAME: Final = "nirguard"
"""Name of the meter every nirguard instrument belongs to."""

DECISIONS: Final = "nirguard.guard.decisions"
"""Counter of guard decisions, one per lookup (unit ``{decision}``)."""
DURATION: Final = "nirguard.guard.decision.duration"
"""Histogram of the time the guard took to decide a lookup (unit ``s``)."""
ALERTS: Final = "nirguard.guard.alerts"
"""Counter of :class:`~nirguard.alerts.Alert` sent (unit ``{alert}``)."""
LOCKOUTS: Final = "nirguard.guard.lockouts"
"""Counter of lockouts started (unit ``{lockout}``)."""
BREAK_GLASS: Final = "nirguard.guard.break_glass"
"""Counter of break-glass lookups granted (unit ``{grant}``)."""
NOTICES: Final = "nirguard.guard.notices"
"""Counter of :class:`~nirguard.alerts.Notice` sent (unit ``{notice}``)."""
DROPPED: Final = "nirguard.guard.hooks.dropped"
"""Counter of reports a hook's full queue dropped (unit ``{item}``): never zero for long."""

# fmt: off
DURATION_BUCKETS: Final = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)
# fmt: on
"""Bucket boundaries advised for :data:`DURATION` (seconds): 10 µs to 1 s.

A decision on the memory store takes tens of microseconds, on Redis a round
trip (sub-millisecond to a few ms); 0.5 s is the guard's default deadline.
"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nirguard")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0+unknown"


class Instruments:
    """The instruments of one meter, made once per meter provider."""

    __slots__ = ("alerts", "break_glass", "decisions", "dropped", "duration", "lockouts", "notices")

    def __init__(self, meter_provider: MeterProvider | None) -> None:
        from opentelemetry import metrics

        meter = metrics.get_meter(METER_NAME, _version(), meter_provider=meter_provider)
        self.decisions: Counter = meter.create_counter(
            DECISIONS, unit="{decision}", description="Lookups decided by the nirguard guard."
        )
        self.duration: Histogram = meter.create_histogram(
            DURATION,
            unit="s",
            description="Time the nirguard guard took to decide a lookup.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.alerts: Counter = meter.create_counter(
            ALERTS, unit="{alert}", description="Alerts sent by the nirguard guard."
        )
        self.lockouts: Counter = meter.create_counter(
            LOCKOUTS, unit="{lockout}", description="Practitioner lockouts started."
        )
        self.break_glass: Counter = meter.create_counter(
            BREAK_GLASS, unit="{grant}", description="Break-glass lookups granted."
        )
        self.notices: Counter = meter.create_counter(
            NOTICES, unit="{notice}", description="Notices about the portal (hot cohorts)."
        )
        self.dropped: Counter = meter.create_counter(
            DROPPED, unit="{item}", description="Reports dropped by a hook that fell behind."
        )


_global_instruments: Instruments | None = None
_global_lock = threading.Lock()


def instruments_for(meter_provider: MeterProvider | None) -> Instruments:
    # The global provider's instruments are made once and shared: they are proxies that
    # follow the application's set_meter_provider() call, even a later one.
    global _global_instruments
    if meter_provider is not None:
        return Instruments(meter_provider)
    with _global_lock:
        if _global_instruments is None:
            _global_instruments = Instruments(None)
        return _global_instruments
