"""Infopatient demo portal on FastAPI, guarded by nirguard.

A fake Infopatient service answers identity lookups by NIR over a synthetic
registry (``nirguard.testing``). The practitioner comes from the
``X-Practitioner`` header, standing in for real authentication. The NIR is sent
in the JSON body, never in the URL (URLs end up in access logs).

The guard is built by nirguard's configuration entry point from the environment
(``NIRGUARD_STORAGE``, ``NIRGUARD_KEY``, ``NIRGUARD_POLICY_*``... : docs/config.md).
The demo's own defaults: the audit trail, the alerts and the break-glass review
queue are JSON-lines files (mode 0600, shared by the workers) in a private
directory outside the checkout, ``PORTAL_DATA_DIR`` (default
``$XDG_STATE_HOME/nirguard-examples``, i.e. ``~/.local/state/nirguard-examples``),
unless ``NIRGUARD_AUDIT_LOG``, ``NIRGUARD_ALERT_LOG`` or ``NIRGUARD_BREAK_GLASS_LOG``
name other files. Their paths are logged at start-up. Without ``NIRGUARD_KEY`` on
``memory://``, the portal makes an ephemeral key and logs a warning.

The portal's own settings:
    PORTAL_REVIEW_TOKEN  the security office's token for ``GET /break-glass`` (the
                      review queue holds free text that may name a person): sent as
                      ``Authorization: Bearer <token>``. Unset: the queue is not served.
    PORTAL_METRICS    ``prometheus``: serve the guard's OpenTelemetry metrics at
                      ``GET /metrics`` (one process); ``otlp``: push them to an
                      OpenTelemetry Collector (``OTEL_EXPORTER_OTLP_ENDPOINT``), which
                      sums the workers (see docs/metrics.md).

Run (from the repository root; more in ``examples/README.md``)::

    uvicorn --factory --app-dir examples/fastapi_portal app:create_app
"""

# No "from __future__ import annotations" here: FastAPI reads the endpoint annotations at
# runtime, and those refer to names local to create_app().

import hmac
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.config import GuardSettings, JsonLinesHook
from nirguard.guard import GuardedLookup
from nirguard.integrations.fastapi import install_exception_handlers, lookup_dependency
from nirguard.testing import synthetic_registry as build_registry

log = logging.getLogger("portal")
FILES = {  # setting -> the demo's default file name in PORTAL_DATA_DIR
    "NIRGUARD_AUDIT_LOG": "audit.jsonl",
    "NIRGUARD_ALERT_LOG": "alerts.jsonl",
    "NIRGUARD_BREAK_GLASS_LOG": "break-glass.jsonl",
}


def configure_logging() -> None:
    """Give the portal's log lines a level and a name on stderr.

    Only when nothing else configured logging (the server's ``--log-config``, your own
    ``dictConfig``): a real deployment routes the ``portal`` logger where its logs go.
    """
    portal = logging.getLogger("portal")
    if portal.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    portal.addHandler(handler)
    portal.setLevel(logging.INFO)


def data_dir() -> Path:
    """The demo's private directory for its files, outside the checkout (mode 0700)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    path = Path(os.environ.get("PORTAL_DATA_DIR") or Path(state) / "nirguard-examples")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def portal_settings() -> GuardSettings:
    """The guard's settings: the environment, with the demo's files where it names none."""
    environment = dict(os.environ)
    for name, file in FILES.items():
        if not environment.get(name):
            environment[name] = str(data_dir() / file)
    settings = GuardSettings.load(environment)
    log.info("audit trail: %s (JSON lines, one per lookup decision)", settings.audit_log)
    log.info(
        "alerts: %s; break-glass review queue: %s", settings.alert_log, settings.break_glass_log
    )
    if settings.key is None:
        log.warning(
            "NIRGUARD_KEY is not set: using an ephemeral key. Pseudonyms in the audit trail and "
            "distinct-patient counts will not survive a restart nor be shared between workers. "
            'Set a key first: export NIRGUARD_KEY="$(nirguard keygen)"'
        )
    return settings


_metrics_provider_set = False


def serve_metrics(app: FastAPI, mode: str) -> None:
    """Install the OpenTelemetry SDK as the global provider, which the guard records through.

    ``prometheus``: a Prometheus reader, served at ``GET /metrics`` (its counts live in this
    process: one worker only). ``otlp``: every worker pushes to an OpenTelemetry Collector
    (``OTEL_EXPORTER_OTLP_ENDPOINT``) under its own ``service.instance.id``; the collector
    keeps each worker's series and Prometheus sums them. Once per process (the tests build
    several apps).
    """
    global _metrics_provider_set
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource

    if mode == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        reader: Any = PrometheusMetricReader()

        @app.get("/metrics", include_in_schema=False)
        def prometheus_metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    if not _metrics_provider_set:
        _metrics_provider_set = True
        instance = {"service.name": "infopatient-demo", "service.instance.id": uuid.uuid4().hex}
        metrics.set_meter_provider(
            MeterProvider(resource=Resource.create(instance), metric_readers=[reader])
        )


class Infopatient:
    """The fake identity service: an async lookup by canonical NIR."""

    def __init__(self, registry: dict[str, dict[str, Any]]) -> None:
        self._registry = registry

    async def find(self, canonical_nir: str) -> dict[str, Any] | None:
        return self._registry.get(canonical_nir)  # stands in for the call to the real service


def practitioner_from_header(request: Request) -> str:
    """Stand-in for authentication: the practitioner id from ``X-Practitioner``."""
    value = request.headers.get("X-Practitioner", "").strip()
    if not value or len(value) > 64:
        raise HTTPException(status_code=401, detail="missing or invalid X-Practitioner header")
    return value


def session_from_header(request: Request) -> str | None:
    """Stand-in for the login session: its id from ``X-Session`` (a real portal passes the
    server-side session of the same authentication as the practitioner: guard.md#sessions)."""
    value = request.headers.get("X-Session", "").strip()
    return value[:128] or None


def security_office(token: str) -> Callable[..., None]:
    """A dependency admitting only the bearer of ``token`` (the review queue's own login)."""

    def check(authorization: Annotated[str, Header()] = "") -> None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401, "the security office's token is required", {"WWW-Authenticate": "Bearer"}
            )

    return check


def create_app(
    *,
    storage: str | None = None,
    key: SecretKey | None = None,
    policy: QuotaPolicy | None = None,
    clock: Callable[[], float] | None = None,
    audit: Any = None,
    registry: dict[str, dict[str, Any]] | None = None,
    reviews: JsonLinesHook | None = None,
) -> FastAPI:
    """Build the portal; every argument defaults to the environment / demo value."""
    configure_logging()
    settings = portal_settings()
    metrics_mode = os.environ.get("PORTAL_METRICS", "")
    if metrics_mode not in ("", "prometheus", "otlp"):
        raise ValueError("PORTAL_METRICS must be prometheus or otlp")
    reviews = reviews or JsonLinesHook(
        settings.break_glass_log or data_dir() / FILES["NIRGUARD_BREAK_GLASS_LOG"]
    )
    given = {"storage": storage, "policy": policy, "clock": clock, "audit": audit}
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if key is not None:
        overrides["pseudonymiser"] = Pseudonymiser(key, purpose="guard")
    app = FastAPI(title="Infopatient demo portal")
    if metrics_mode:
        serve_metrics(app, metrics_mode)  # before the guard: it records through the global provider
    guard: LookupGuard = settings.build(on_break_glass=reviews, **overrides)
    service = Infopatient(registry if registry is not None else build_registry())
    guarded = lookup_dependency(
        guard, practitioner=practitioner_from_header, nir="nir", session=session_from_header
    )
    app.state.guard = guard
    install_exception_handlers(app)  # a new patient past a quota: 428, retry with X-Nirguard-Reason

    @app.post("/infopatient")
    async def infopatient(lookup: Annotated[GuardedLookup, Depends(guarded)]) -> Any:
        identity = lookup.record(await service.find(lookup.nir))
        if identity is None:
            return JSONResponse(
                {"type": "about:blank", "title": "Not Found", "status": 404},
                status_code=404,
                media_type="application/problem+json",
            )
        return identity

    token = os.environ.get("PORTAL_REVIEW_TOKEN", "")
    if token:

        @app.get("/break-glass", dependencies=[Depends(security_office(token))])
        async def break_glass_reviews() -> list[dict[str, Any]]:
            return reviews.read()  # who, which patient (pseudonym), why: the free text too

    else:
        log.info(
            "GET /break-glass is not served: set PORTAL_REVIEW_TOKEN to serve the review queue"
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
