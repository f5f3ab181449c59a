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
from typing import Any

from flask import Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.integrations.flask import init_app
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
    guard = LookupGuard(
        policy=policy if policy is not None else QuotaPolicy.from_env(),
        storage=storage or os.environ.get("NIRGUARD_STORAGE", "memory://"),
        pseudonymiser=Pseudonymiser(key or load_key(), purpose="guard"),
        audit=logging.getLogger("portal.audit"),
        **guard_options,
    )
    records = registry if registry is not None else build_registry()

    # The existing lookup function, wrapped: denials raise before it runs.
    @guard.protect(practitioner="practitioner_id", nir="nir", is_miss=lambda r: r is None)
    def infopatient(practitioner_id: str, nir: str) -> dict[str, Any] | None:
        return records.get(validate_nir(nir))

    app = Flask(__name__)
    app.extensions["nirguard"] = guard
    init_app(app)

    @app.post("/infopatient")
    def infopatient_view() -> ResponseReturnValue:
        practitioner = request.headers.get("X-Practitioner", "").strip()
        if not practitioner or len(practitioner) > 64:
            abort(401)
        payload = request.get_json(silent=True)
        # whatever was sent goes to the guard, which validates it (None included)
        value: Any = payload.get("nir") if isinstance(payload, dict) else None
        identity = infopatient(practitioner, value)
        if identity is None:
            body = {"type": "about:blank", "title": "Not Found", "status": 404}
            return body, 404, {"Content-Type": "application/problem+json"}
        return jsonify(identity)

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return {"status": "ok"}

    return app
