"""Infopatient demo portal on Flask, guarded by nirguard.

A fake Infopatient service answers identity lookups by NIR over a synthetic
registry (``nirguard.testing``). The practitioner comes from the
``X-Practitioner`` header, standing in for real authentication. The NIR is sent
in the JSON body, never in the URL (URLs end up in access logs).

Environment (all optional; see ``examples/README.md``): ``NIRGUARD_KEY`` (key text
form; unset: an ephemeral key and a warning), ``NIRGUARD_STORAGE`` (default
``memory://``), ``NIRGUARD_STORAGE_OPTIONS`` (a JSON object), ``NIRGUARD_KEY_PREFIX``,
``NIRGUARD_POLICY_*``, and ``NIRGUARD_AUDIT_LOG``: the audit trail, a JSON-lines file
(mode 0600, one line per decision), by default ``nirguard-audit.jsonl`` in the current
directory; its path is logged at start-up. ``NIRGUARD_REVIEW_LOG``: the break-glass review
queue, a JSON-lines file (mode 0600), by default ``nirguard-break-glass.jsonl``, shown at
``GET /break-glass``.

Run (from the repository root; more in ``examples/README.md``)::

    flask --app examples/flask_portal/app.py run
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.alerts import BreakGlass
from nirguard.integrations.flask import init_app, request_field, request_reason
from nirguard.nir import validate as validate_nir
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
        "distinct-patient counts will not survive a restart nor be shared between processes. "
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


def create_app(
    *,
    storage: str | None = None,
    key: SecretKey | None = None,
    policy: QuotaPolicy | None = None,
    clock: Callable[[], float] | None = None,
    audit: Any = None,
    registry: dict[str, dict[str, Any]] | None = None,
    reviews: ReviewQueue | None = None,
) -> Flask:
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
        return jsonify(reviews.entries())

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return {"status": "ok"}

    return app
