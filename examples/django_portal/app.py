"""Infopatient demo portal on Django (settings, URLs and views in one file).

A fake Infopatient service answers identity lookups by NIR over a synthetic
registry (``nirguard.testing``). The practitioner comes from the
``X-Practitioner`` header, standing in for real authentication. The NIR is sent
in the JSON body (or a form field), never in the URL.

Environment: ``NIRGUARD_KEY`` (key text form; unset: ephemeral key and a
warning), ``NIRGUARD_STORAGE`` (default ``memory://``), ``NIRGUARD_POLICY_*``.

Run (from the repository root; more in ``examples/README.md``)::

    python examples/django_portal/app.py runserver
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(32),
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        INSTALLED_APPS=[],
        MIDDLEWARE=["nirguard.integrations.django.NirguardMiddleware"],
        DATABASES={},
        LOGGING_CONFIG=None,
    )

import django
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.alerts import BreakGlass
from nirguard.integrations.django import guarded_view
from nirguard.testing import synthetic_registry as build_registry

django.setup()

log = logging.getLogger("portal")

REVIEWS: list[BreakGlass] = []  # break-glass lookups, for the security office to review


def load_key() -> SecretKey:
    """The key from NIRGUARD_KEY, or an ephemeral one (with a warning) when unset."""
    if os.environ.get("NIRGUARD_KEY"):
        return SecretKey.from_env("NIRGUARD_KEY")
    log.warning(
        "NIRGUARD_KEY is not set: using an ephemeral key; pseudonyms and distinct-patient "
        "counts will not survive a restart nor be shared between processes"
    )
    return SecretKey.generate("ephemeral")


def practitioner_from_header(request: HttpRequest) -> str:
    """Stand-in for authentication: the practitioner id from ``X-Practitioner``."""
    return str(request.headers.get("X-Practitioner", "")).strip()


def create_guard(
    *,
    storage: str | None = None,
    key: SecretKey | None = None,
    policy: QuotaPolicy | None = None,
    clock: Callable[[], float] | None = None,
    reviews: list[BreakGlass] | None = None,
) -> LookupGuard:
    """The portal's guard; every argument defaults to the environment / demo value."""
    options: dict[str, Any] = {}
    if clock is not None:
        options["clock"] = clock
    return LookupGuard(
        policy=policy if policy is not None else QuotaPolicy.from_env(),
        storage=storage or os.environ.get("NIRGUARD_STORAGE", "memory://"),
        pseudonymiser=Pseudonymiser(key or load_key(), purpose="guard"),
        audit=logging.getLogger("portal.audit"),
        on_break_glass=(REVIEWS if reviews is None else reviews).append,
        **options,
    )


def make_urlpatterns(
    guard: LookupGuard,
    registry: dict[str, dict[str, Any]] | None = None,
    reviews: list[BreakGlass] | None = None,
) -> list[URLPattern]:
    """The portal's URLs, bound to one guard, one registry and one review queue."""
    records = registry if registry is not None else build_registry()

    @guarded_view(guard, practitioner=practitioner_from_header, nir="nir")
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
        # The review queue (a real portal: behind the security office's own login).
        queue = REVIEWS if reviews is None else reviews
        return JsonResponse([asdict(granted) for granted in queue], safe=False)

    @require_GET
    def healthz(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"status": "ok"})

    return [
        path("infopatient", infopatient),
        path("break-glass", break_glass_reviews),  # granted with an X-Nirguard-Reason header
        path("healthz", healthz),
    ]


urlpatterns = make_urlpatterns(create_guard())

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
