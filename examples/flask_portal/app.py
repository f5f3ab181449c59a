"""Infopatient demo portal on Flask, guarded by nirguard.

A fake Infopatient service answers identity lookups by NIR over a synthetic
registry (``nirguard.testing``). The practitioner comes from the
``X-Practitioner`` header, standing in for real authentication. The NIR is sent
in the JSON body, never in the URL (URLs end up in access logs).

Environment: ``NIRGUARD_KEY`` (key text form; unset: ephemeral key and a
warning), ``NIRGUARD_STORAGE`` (default ``memory://``), ``NIRGUARD_POLICY_*``.

Run (from the repository root; more in ``examples/README.md``)::

    flask --app examples/flask_portal/app.py run
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from flask import Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.alerts import BreakGlass
from nirguard.integrations.flask import init_app, request_field, request_reason
from nirguard.nir import validate as validate_nir
from nirguard.testing import synthetic_registry as build_registry

log = logging.getLogger("portal")


def load_key() -> SecretKey:
    """The key from NIRGUARD_KEY, or an ephemeral one (with a warning) when unset."""
    if os.environ.get("NIRGUARD_KEY"):
        return SecretKey.from_env("NIRGUARD_KEY")
    log.warning(
        "NIRGUARD_KEY is not set: using an ephemeral key; pseudonyms and distinct-patient "
        "counts will not survive a restart nor be shared between processes"
    )
    return SecretKey.generate("ephemeral")


def create_app(
    *,
    storage: str | None = None,
    key: SecretKey | None = None,
    policy: QuotaPolicy | None = None,
    clock: Callable[[], float] | None = None,
    registry: dict[str, dict[str, Any]] | None = None,
) -> Flask:
    """Build the portal; every argument defaults to the environment / demo value."""
    guard_options: dict[str, Any] = {}
    if clock is not None:
        guard_options["clock"] = clock
    reviews: list[BreakGlass] = []  # break-glass lookups, for the security office to review
    guard = LookupGuard(
        policy=policy if policy is not None else QuotaPolicy.from_env(),
        storage=storage or os.environ.get("NIRGUARD_STORAGE", "memory://"),
        pseudonymiser=Pseudonymiser(key or load_key(), purpose="guard"),
        audit=logging.getLogger("portal.audit"),
        on_break_glass=reviews.append,
        **guard_options,
    )
    records = registry if registry is not None else build_registry()

    # The existing lookup function, wrapped: denials raise before it runs.
    @guard.protect(
        practitioner="practitioner_id", nir="nir", reason="reason", is_miss=lambda r: r is None
    )
    def infopatient(practitioner_id: str, nir: str, reason: object = None) -> dict[str, Any] | None:
        return records.get(validate_nir(nir))

    app = Flask(__name__)
    app.extensions["nirguard"] = guard
    app.extensions["break_glass_reviews"] = reviews
    init_app(app)  # a new patient past a quota: 428, retry with X-Nirguard-Reason

    @app.post("/infopatient")
    def infopatient_view() -> ResponseReturnValue:
        practitioner = request.headers.get("X-Practitioner", "").strip()
        if not practitioner or len(practitioner) > 64:
            abort(401)
        # whatever was sent goes to the guard, which validates it (None included)
        value: Any = request_field("nir")
        identity = infopatient(practitioner, value, request_reason())
        if identity is None:
            body = {"type": "about:blank", "title": "Not Found", "status": 404}
            return body, 404, {"Content-Type": "application/problem+json"}
        return jsonify(identity)

    @app.get("/break-glass")
    def break_glass_reviews() -> ResponseReturnValue:
        # The review queue (a real portal: behind the security office's own login).
        return jsonify([asdict(granted) for granted in reviews])

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return {"status": "ok"}

    return app
