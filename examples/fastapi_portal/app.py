"""Infopatient demo portal on FastAPI, guarded by nirguard.

A fake Infopatient service answers identity lookups by NIR over a synthetic
registry (``nirguard.testing``). The practitioner comes from the
``X-Practitioner`` header, standing in for real authentication. The NIR is sent
in the JSON body, never in the URL (URLs end up in access logs).

Environment:
    NIRGUARD_KEY      pseudonymisation key in text form (``nirguard keygen``);
                      unset: an ephemeral key is generated and a warning logged.
    NIRGUARD_STORAGE  quota store URI, default ``memory://``; a Redis URI
                      (``redis://127.0.0.1:6379/0``) shares quotas between workers.
    NIRGUARD_STORAGE_OPTIONS  options for the store's client, a JSON object
                      (``{"socket_timeout": 1}``), passed as ``storage_options``.
    NIRGUARD_POLICY_* quota policy fields (see ``QuotaPolicy.from_env``).
    NIRGUARD_KEY_PREFIX  namespace of the portal's keys in the store, default ``nirguard``.
    NIRGUARD_AUDIT_LOG  the audit trail, a JSON-lines file (mode 0600, one line per
                      decision, shared by the workers); default ``nirguard-audit.jsonl``
                      in the current directory. Its path is logged at start-up.
    NIRGUARD_REVIEW_LOG  the break-glass review queue, a JSON-lines file (mode 0600, shared
                      by the workers); default ``nirguard-break-glass.jsonl``. Shown at
                      ``GET /break-glass``.
    PORTAL_METRICS    ``prometheus``: serve the guard's OpenTelemetry metrics at
                      ``GET /metrics`` (needs ``opentelemetry-sdk`` and
                      ``opentelemetry-exporter-prometheus``; see docs/metrics.md).

Run (from the repository root; more in ``examples/README.md``)::

    uvicorn --factory --app-dir examples/fastapi_portal app:create_app
"""

# No "from __future__ import annotations" here: FastAPI reads the endpoint annotations at
# runtime, and those refer to names local to create_app().

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.alerts import BreakGlass
from nirguard.guard import GuardedLookup
from nirguard.integrations.fastapi import install_exception_handlers, lookup_dependency
from nirguard.testing import synthetic_registry as build_registry

log = logging.getLogger("portal")
DEFAULT_AUDIT_LOG = "nirguard-audit.jsonl"  # in the current directory
DEFAULT_REVIEW_LOG = "nirguard-break-glass.jsonl"  # in the current directory


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


def load_key() -> SecretKey:
    """The key from NIRGUARD_KEY, or an ephemeral one (with a warning) when unset."""
    if os.environ.get("NIRGUARD_KEY"):
        return SecretKey.from_env("NIRGUARD_KEY")
    log.warning(
        "NIRGUARD_KEY is not set: using an ephemeral key. Pseudonyms in the audit trail and "
        "distinct-patient counts will not survive a restart nor be shared between workers. "
        'Set a key first: export NIRGUARD_KEY="$(nirguard keygen)"'
    )
    return SecretKey.generate("ephemeral")


class ReviewQueue:
    """Break-glass lookups, for the security office to review: the guard's ``on_break_glass``.

    One JSON line per grant, appended to the file NIRGUARD_REVIEW_LOG names (default
    ``nirguard-break-glass.jsonl``; mode 0600; shared by every worker, like the audit trail).
    A line holds the practitioner, the patient's pseudonym, the reason's code *and its free
    text* (which may name a person: keep the file as private as the audit trail), the time
    and the end of the grant. A real portal would feed a review screen, or write to the
    patient (the DMP tells patients about every *bris de glace*).
    """

    def __init__(self, path: str | None = None) -> None:
        name = path or os.environ.get("NIRGUARD_REVIEW_LOG") or DEFAULT_REVIEW_LOG
        self.path = Path(name).resolve()

    def __call__(self, grant: BreakGlass) -> None:
        entry = asdict(grant)
        entry["reason"] = {"code": grant.reason.code.value, "text": grant.reason.text}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        """Every grant so far, oldest first."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines() if line]


def audit_path() -> Path:
    """Where the audit trail goes: the JSON-lines file NIRGUARD_AUDIT_LOG names.

    One line per decision of the guard (allowed, refused, invalid...), holding a
    pseudonym of the patient, never the NIR; the file is created with mode 0600 and
    appended to by every worker.
    """
    return Path(os.environ.get("NIRGUARD_AUDIT_LOG") or DEFAULT_AUDIT_LOG).resolve()


def audit_trail() -> Path:
    """The audit file, announced once in the portal's log."""
    path = audit_path()
    log.info("audit trail: %s (JSON lines, one per lookup decision)", path)
    return path


def storage_options() -> dict[str, Any] | None:
    """Options for the quota store's client, from NIRGUARD_STORAGE_OPTIONS (a JSON object)."""
    raw = os.environ.get("NIRGUARD_STORAGE_OPTIONS", "").strip()
    if not raw:
        return None
    try:
        options = json.loads(raw)
    except ValueError:
        options = None
    if not isinstance(options, dict):
        # the value may hold a password: never echo it
        raise ValueError(
            'NIRGUARD_STORAGE_OPTIONS must be a JSON object, e.g. {"socket_timeout": 1}'
        )
    return options


_metrics_provider_set = False


def serve_metrics(app: FastAPI) -> None:
    """Serve OpenTelemetry metrics, the guard's among them, at ``GET /metrics`` for Prometheus.

    The guard records through the global ``MeterProvider`` (``nirguard[otel]``);
    this installs the SDK with a Prometheus reader as that provider, once per
    process (create_app() may build several apps: the tests do).
    """
    global _metrics_provider_set
    from fastapi.responses import Response
    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if not _metrics_provider_set:
        _metrics_provider_set = True
        metrics.set_meter_provider(
            MeterProvider(
                resource=Resource.create({"service.name": "infopatient-demo"}),
                metric_readers=[PrometheusMetricReader()],
            )
        )

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class Infopatient:
    """The fake identity service: an async lookup by canonical NIR."""

    def __init__(self, registry: dict[str, dict[str, Any]]) -> None:
        self._registry = registry

    async def find(self, canonical_nir: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)  # stands in for the network call to the real service
        return self._registry.get(canonical_nir)


def practitioner_from_header(request: Request) -> str:
    """Stand-in for authentication: the practitioner id from ``X-Practitioner``."""
    value = request.headers.get("X-Practitioner", "").strip()
    if not value or len(value) > 64:
        raise HTTPException(status_code=401, detail="missing or invalid X-Practitioner header")
    return value


def create_app(
    *,
    storage: str | None = None,
    key: SecretKey | None = None,
    policy: QuotaPolicy | None = None,
    clock: Callable[[], float] | None = None,
    audit: Any = None,
    registry: dict[str, dict[str, Any]] | None = None,
    reviews: ReviewQueue | None = None,
) -> FastAPI:
    """Build the portal; every argument defaults to the environment / demo value."""
    configure_logging()
    guard_options: dict[str, Any] = {}
    if clock is not None:
        guard_options["clock"] = clock
    reviews = reviews or ReviewQueue()  # break-glass lookups, for the security office to review
    guard = LookupGuard(
        policy=policy if policy is not None else QuotaPolicy.from_env(),
        storage=storage or os.environ.get("NIRGUARD_STORAGE", "memory://"),
        pseudonymiser=Pseudonymiser(key or load_key(), purpose="guard"),
        audit=audit if audit is not None else audit_trail(),
        storage_options=storage_options(),
        key_prefix=os.environ.get("NIRGUARD_KEY_PREFIX") or "nirguard",
        on_break_glass=reviews,
        **guard_options,
    )
    service = Infopatient(registry if registry is not None else build_registry())
    guarded = lookup_dependency(guard, practitioner=practitioner_from_header, nir="nir")

    app = FastAPI(title="Infopatient demo portal")
    app.state.guard = guard
    install_exception_handlers(app)  # a new patient past a quota: 428, retry with X-Nirguard-Reason
    if os.environ.get("PORTAL_METRICS") == "prometheus":
        serve_metrics(app)

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

    @app.get("/break-glass")
    async def break_glass_reviews() -> list[dict[str, Any]]:
        # The review queue (a real portal: behind the security office's own login).
        return reviews.entries()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
