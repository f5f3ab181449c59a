"""Infopatient demo portal on Django (settings, URLs and views in one file).

A fake Infopatient service answers identity lookups by NIR over a synthetic
registry (``nirguard.testing``). The practitioner comes from the
``X-Practitioner`` header, standing in for real authentication. The NIR is sent
in the JSON body (or a form field), never in the URL.

The guard is built from the project's settings, as django-axes reads
``AXES_*``: ``NIRGUARD_STORAGE``, ``NIRGUARD_KEY``, ``NIRGUARD_POLICY_*``...
(docs/config.md). This demo fills them from the environment's ``NIRGUARD_*``
variables; the audit trail, the alerts and the break-glass review queue default
to JSON-lines files (mode 0600) in a private directory outside the checkout,
``PORTAL_DATA_DIR`` (default ``~/.local/state/nirguard-examples``), their paths
logged at start-up. ``PORTAL_REVIEW_TOKEN``: the security office's bearer token
for ``GET /break-glass``; unset, the review queue is not served. The app
``nirguard.ops`` brings the management commands ``nirguard_status`` and
``nirguard_unlock``; this file is the project's ``manage.py``.

Run (from the repository root; more in ``examples/README.md``)::

    python examples/django_portal/app.py runserver
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.config import GuardSettings, JsonLinesHook
from nirguard.integrations.django import guarded_view
from nirguard.testing import synthetic_registry as build_registry

FILES = {  # setting -> the demo's default file name in PORTAL_DATA_DIR
    "NIRGUARD_AUDIT_LOG": "audit.jsonl",
    "NIRGUARD_ALERT_LOG": "alerts.jsonl",
    "NIRGUARD_BREAK_GLASS_LOG": "break-glass.jsonl",
}


def data_dir() -> Path:
    """The demo's private directory for its files, outside the checkout (mode 0700)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    path = Path(os.environ.get("PORTAL_DATA_DIR") or Path(state) / "nirguard-examples")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def nirguard_settings() -> dict[str, str]:
    """The ``NIRGUARD_*`` settings: the environment's, with the demo's files."""
    found = {k: v for k, v in os.environ.items() if k.startswith("NIRGUARD_")}
    for name, file in FILES.items():
        if not found.get(name):
            found[name] = str(data_dir() / file)
    return found


if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(32),
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        INSTALLED_APPS=["nirguard.ops"],  # manage.py nirguard_status / nirguard_unlock
        MIDDLEWARE=["nirguard.integrations.django.NirguardMiddleware"],
        DATABASES={},
        LOGGING_CONFIG=None,
        **nirguard_settings(),
    )

django.setup()

log = logging.getLogger("portal")


def configure_logging() -> None:
    """Give the portal's log lines a level and a name on stderr (unless logging is set up)."""
    portal = logging.getLogger("portal")
    if portal.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    portal.addHandler(handler)
    portal.setLevel(logging.INFO)


def load_settings() -> GuardSettings:
    """The guard's settings from Django's, announced in the portal's log."""
    loaded = GuardSettings.load(settings)
    log.info("audit trail: %s (JSON lines, one per lookup decision)", loaded.audit_log)
    log.info("alerts: %s; break-glass review queue: %s", loaded.alert_log, loaded.break_glass_log)
    if loaded.key is None:
        log.warning(
            "NIRGUARD_KEY is not set: using an ephemeral key. Pseudonyms in the audit trail and "
            "distinct-patient counts will not survive a restart nor be shared between processes. "
            'Set a key first: export NIRGUARD_KEY="$(nirguard keygen)"'
        )
    return loaded


def review_queue() -> JsonLinesHook:
    """The break-glass review queue: the file ``NIRGUARD_BREAK_GLASS_LOG`` names."""
    return JsonLinesHook(
        getattr(settings, "NIRGUARD_BREAK_GLASS_LOG", "") or data_dir() / "break-glass.jsonl"
    )


def create_guard(
    *,
    storage: str | None = None,
    key: SecretKey | None = None,
    policy: QuotaPolicy | None = None,
    clock: Callable[[], float] | None = None,
    audit: Any = None,
    reviews: JsonLinesHook | None = None,
) -> LookupGuard:
    """The portal's guard; every argument defaults to the settings / demo value."""
    configure_logging()
    given = {"storage": storage, "policy": policy, "clock": clock, "audit": audit}
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if key is not None:
        overrides["pseudonymiser"] = Pseudonymiser(key, purpose="guard")
    return load_settings().build(on_break_glass=reviews or review_queue(), **overrides)


def practitioner_from_header(request: HttpRequest) -> str:
    """Stand-in for authentication: the practitioner id from ``X-Practitioner``."""
    return str(request.headers.get("X-Practitioner", "")).strip()


def session_from_header(request: HttpRequest) -> str | None:
    """Stand-in for the login session: its id from ``X-Session`` (a real portal passes the
    server-side session of the same authentication as the practitioner: guard.md#sessions)."""
    return str(request.headers.get("X-Session", "")).strip()[:128] or None


def make_urlpatterns(
    guard: LookupGuard,
    registry: dict[str, dict[str, Any]] | None = None,
    reviews: JsonLinesHook | None = None,
) -> list[URLPattern]:
    """The portal's URLs, bound to one guard, one registry and one review queue."""
    records = registry if registry is not None else build_registry()
    queue = reviews or review_queue()

    @guarded_view(
        guard, practitioner=practitioner_from_header, nir="nir", session=session_from_header
    )
    def lookup_identity(request: HttpRequest, *, lookup: Any) -> HttpResponse:
        identity = lookup.record(records.get(lookup.nir))  # the fake Infopatient service
        if identity is None:
            body = {"type": "about:blank", "title": "Not Found", "status": 404}
            return JsonResponse(body, status=404, content_type="application/problem+json")
        return JsonResponse(identity)

    @csrf_exempt  # an API called by the portal's front end with its own authentication
    @require_POST
    def infopatient(request: HttpRequest) -> HttpResponse:
        practitioner = practitioner_from_header(request)
        if not practitioner or len(practitioner) > 64:
            return HttpResponse(status=401)
        response: HttpResponse = lookup_identity(request)
        return response

    @require_GET
    def break_glass_reviews(request: HttpRequest) -> HttpResponse:
        # The review queue holds free text that may name a person: the security office only.
        token = os.environ.get("PORTAL_REVIEW_TOKEN", "")
        scheme, _, given = str(request.headers.get("Authorization", "")).partition(" ")
        if (
            not token
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(given.encode(), token.encode())
        ):
            answer = JsonResponse({"detail": "the security office's token is required"}, status=401)
            answer["WWW-Authenticate"] = "Bearer"
            return answer
        return JsonResponse(queue.read(), safe=False)

    @require_GET
    def healthz(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"status": "ok"})

    patterns = [path("infopatient", infopatient), path("healthz", healthz)]
    if os.environ.get("PORTAL_REVIEW_TOKEN"):
        patterns.append(path("break-glass", break_glass_reviews))
    else:
        log.info(
            "GET /break-glass is not served: set PORTAL_REVIEW_TOKEN to serve the review queue"
        )
    return patterns


urlpatterns = make_urlpatterns(create_guard())

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
