"""Infopatient demo portal on Flask, guarded by nirguard.

A fake Infopatient service answers identity lookups by NIR over a synthetic
registry (``nirguard.testing``). The practitioner comes from the
``X-Practitioner`` header, standing in for real authentication. The NIR is sent
in the JSON body, never in the URL (URLs end up in access logs).

The guard is built from the app's config, as flask-limiter reads
``RATELIMIT_STORAGE_URI``: ``app.config["NIRGUARD_STORAGE"]``, ``NIRGUARD_KEY``,
``NIRGUARD_POLICY_*``... (docs/config.md). This demo fills the config from the
environment's ``NIRGUARD_*`` variables; the audit trail, the alerts and the
break-glass review queue default to JSON-lines files (mode 0600) in a private
directory outside the checkout, ``PORTAL_DATA_DIR`` (default
``~/.local/state/nirguard-examples``), their paths logged at start-up.
``PORTAL_REVIEW_TOKEN``: the security office's bearer token for ``GET
/break-glass``; unset, the review queue is not served.

Run (from the repository root; more in ``examples/README.md``)::

    flask --app examples/flask_portal/app.py run
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue

from nirguard import Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.config import GuardSettings, JsonLinesHook
from nirguard.integrations.flask import init_app, request_field, request_reason
from nirguard.nir import validate as validate_nir
from nirguard.testing import synthetic_registry as build_registry

log = logging.getLogger("portal")
FILES = {  # setting -> the demo's default file name in PORTAL_DATA_DIR
    "NIRGUARD_AUDIT_LOG": "audit.jsonl",
    "NIRGUARD_ALERT_LOG": "alerts.jsonl",
    "NIRGUARD_BREAK_GLASS_LOG": "break-glass.jsonl",
}


def configure_logging() -> None:
    """Give the portal's log lines a level and a name on stderr (unless logging is set up)."""
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


def nirguard_config() -> dict[str, str]:
    """The ``NIRGUARD_*`` settings for ``app.config``: the environment's, with the demo's files."""
    config = {k: v for k, v in os.environ.items() if k.startswith("NIRGUARD_")}
    for name, file in FILES.items():
        if not config.get(name):
            config[name] = str(data_dir() / file)
    return config


def load_settings(app: Flask) -> GuardSettings:
    """The guard's settings from the app's config, announced in the portal's log."""
    settings = GuardSettings.load(app.config)
    log.info("audit trail: %s (JSON lines, one per lookup decision)", settings.audit_log)
    log.info(
        "alerts: %s; break-glass review queue: %s", settings.alert_log, settings.break_glass_log
    )
    if settings.key is None:
        log.warning(
            "NIRGUARD_KEY is not set: using an ephemeral key. Pseudonyms in the audit trail and "
            "distinct-patient counts will not survive a restart nor be shared between processes. "
            'Set a key first: export NIRGUARD_KEY="$(nirguard keygen)"'
        )
    return settings


def create_app(
    *,
    storage: str | None = None,
    key: SecretKey | None = None,
    policy: QuotaPolicy | None = None,
    clock: Callable[[], float] | None = None,
    audit: Any = None,
    registry: dict[str, dict[str, Any]] | None = None,
    reviews: JsonLinesHook | None = None,
) -> Flask:
    """Build the portal; every argument defaults to the app config / demo value."""
    configure_logging()
    app = Flask(__name__)
    app.config.from_mapping(nirguard_config())  # or from your config file: app.config.from_file
    settings = load_settings(app)
    queue = reviews or JsonLinesHook(settings.break_glass_log or data_dir() / "break-glass.jsonl")
    given = {"storage": storage, "policy": policy, "clock": clock, "audit": audit}
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if key is not None:
        overrides["pseudonymiser"] = Pseudonymiser(key, purpose="guard")
    guard = settings.build(on_break_glass=queue, **overrides)
    records = registry if registry is not None else build_registry()

    # The existing lookup function, wrapped: denials raise before it runs.
    @guard.protect(
        practitioner="practitioner_id",
        nir="nir",
        reason="reason",
        session="session_id",
        is_miss=lambda r: r is None,
    )
    def infopatient(
        practitioner_id: str, nir: str, reason: object = None, session_id: str | None = None
    ) -> dict[str, Any] | None:
        return records.get(validate_nir(nir))

    app.extensions["nirguard"] = guard
    init_app(app)  # a new patient past a quota: 428, retry with X-Nirguard-Reason

    @app.post("/infopatient")
    def infopatient_view() -> ResponseReturnValue:
        practitioner = request.headers.get("X-Practitioner", "").strip()
        if not practitioner or len(practitioner) > 64:
            abort(401)
        # whatever was sent goes to the guard, which validates it (None included)
        value: Any = request_field("nir")
        # stand-in for the login session (a real portal: its server-side session's id)
        session_id = request.headers.get("X-Session", "").strip()[:128] or None
        identity = infopatient(practitioner, value, request_reason(), session_id)
        if identity is None:
            body = {"type": "about:blank", "title": "Not Found", "status": 404}
            return body, 404, {"Content-Type": "application/problem+json"}
        return jsonify(identity)

    token = os.environ.get("PORTAL_REVIEW_TOKEN", "")
    if token:

        @app.get("/break-glass")
        def break_glass_reviews() -> ResponseReturnValue:
            # The review queue holds free text that may name a person: the security office only.
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.encode(), token.encode()
            ):
                return (
                    {"detail": "the security office's token is required"},
                    401,
                    {"WWW-Authenticate": "Bearer"},
                )
            return jsonify(queue.read())

    else:
        log.info(
            "GET /break-glass is not served: set PORTAL_REVIEW_TOKEN to serve the review queue"
        )

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return {"status": "ok"}

    return app
