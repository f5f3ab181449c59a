"""Flask integration, through the example portal and Flask's test client."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flask", reason="needs the flask extra: pip install nirguard[flask]")

from flask import Blueprint, Flask, request
from flask.testing import FlaskClient

from nirguard import LookupGuard, QuotaPolicy, SecretKey
from nirguard.errors import EnumerationSuspected, PolicyError
from nirguard.integrations.flask import init_app
from nirguard.nir import format as format_nir
from tests.example_helpers import load_example

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
START = 1_800_000_000.0


portal = load_example("flask_portal")
REGISTRY = portal.build_registry()
NIRS = sorted(REGISTRY)


def _client(policy: QuotaPolicy, *, storage: str = "memory://") -> FlaskClient:
    app = portal.create_app(
        storage=storage,
        key=SecretKey(bytes(range(32)), "test"),
        policy=policy,
        clock=lambda: START,
        registry=REGISTRY,
    )
    return app.test_client()


def _ask(client: FlaskClient, practitioner: str, nir: object) -> Any:
    return client.post("/infopatient", json={"nir": nir}, headers={"X-Practitioner": practitioner})


def _spaced(nir: str) -> str:
    """The usual printed grouping, valid number or not."""
    return " ".join((nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:]))


def _spoiled(nir: str) -> str:
    """Same number with a wrong control key."""
    return nir[:13] + f"{(int(nir[13:]) + 1) % 100:02d}"


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _assert_no_nir(nirs: list[str], responses: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    spellings = {s for n in nirs for s in (n, _spaced(n), n[:13])}
    texts = [r.get_data(as_text=True) for r in responses] + [str(r.headers) for r in responses]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.args) for record in caplog.records]
    for text in texts:
        for spelling in spellings:
            assert spelling not in text


def test_allowed_lookup_returns_the_identity(captured_logs: pytest.LogCaptureFixture) -> None:
    client = _client(QuotaPolicy.only(lookups="10/hour"))
    response = _ask(client, "dr-a", format_nir(NIRS[0]))
    assert response.status_code == 200
    assert response.get_json() == REGISTRY[NIRS[0]]
    _assert_no_nir([NIRS[0]], [response], captured_logs)


def test_unknown_patient_is_a_404_problem() -> None:
    client = _client(QuotaPolicy.only(lookups="10/hour"))
    unknown = next(n for n in portal.build_registry(seed=99, size=50) if n not in REGISTRY)
    response = _ask(client, "dr-a", unknown)
    assert response.status_code == 404
    assert unknown not in response.get_data(as_text=True)


def test_invalid_nir_is_422(captured_logs: pytest.LogCaptureFixture) -> None:
    client = _client(QuotaPolicy.only(lookups="10/hour"))
    bad = _spoiled(NIRS[1])
    response = _ask(client, "dr-a", bad)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["type"] == "urn:nirguard:problem:invalid_nir"
    assert body["reason"] == "key"
    missing = client.post("/infopatient", data="not json", headers={"X-Practitioner": "dr-a"})
    assert missing.status_code == 422
    _assert_no_nir([bad, NIRS[1]], [response, missing], captured_logs)


def test_quota_gives_exactly_q_answers_then_429_with_retry_after(
    captured_logs: pytest.LogCaptureFixture,
) -> None:
    client = _client(QuotaPolicy.only(lookups="3/hour"))
    responses = [_ask(client, "dr-q", n) for n in NIRS[:6]]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429, 429]
    for denied in responses[3:]:
        body = denied.get_json(force=True)
        assert body["code"] == "quota_exceeded"
        retry = int(denied.headers["Retry-After"])
        assert 1 <= retry <= 3600
        assert body["retry_after"] == retry
    assert _ask(client, "dr-other", NIRS[0]).status_code == 200
    _assert_no_nir(NIRS[:6], responses, captured_logs)


def test_lockout_after_invalid_numbers_is_403(captured_logs: pytest.LogCaptureFixture) -> None:
    client = _client(QuotaPolicy.only(invalid_nirs="2/hour", lockout="1 hour"))
    bad = [_spoiled(n) for n in NIRS[:3]]
    statuses = [_ask(client, "dr-l", b).status_code for b in bad]
    assert statuses == [422, 422, 429]
    locked = _ask(client, "dr-l", NIRS[5])
    assert locked.status_code == 403
    assert locked.get_json(force=True)["code"] == "locked"
    assert 1 <= int(locked.headers["Retry-After"]) <= 3600
    assert _ask(client, "dr-fine", NIRS[5]).status_code == 200
    _assert_no_nir(bad + NIRS[:6], [locked], captured_logs)


def test_unreachable_store_is_503_and_fails_closed(captured_logs: pytest.LogCaptureFixture) -> None:
    client = _client(QuotaPolicy.only(lookups="10/hour"), storage=UNREACHABLE_REDIS)
    response = _ask(client, "dr-a", NIRS[0])
    assert response.status_code == 503
    assert response.get_json(force=True)["code"] == "unavailable"
    assert "127.0.0.1" not in response.get_data(as_text=True)
    _assert_no_nir([NIRS[0]], [response], captured_logs)


def test_missing_practitioner_is_401() -> None:
    client = _client(QuotaPolicy.only(lookups="10/hour"))
    assert client.post("/infopatient", json={"nir": NIRS[0]}).status_code == 401


def test_init_app_maps_any_nirguard_error_including_on_blueprints() -> None:
    app = Flask(__name__)
    init_app(app)
    bp = Blueprint("bp", __name__)

    @app.get("/suspected")
    def suspected() -> str:
        raise EnumerationSuspected("cohort", retry_after=10)

    @bp.get("/policy")
    def policy() -> str:
        raise PolicyError(f"bad policy for {NIRS[0]}")

    app.register_blueprint(bp)
    client = app.test_client()
    response = client.get("/suspected")
    assert response.status_code == 403
    assert response.headers["Retry-After"] == "10"
    assert "cohort" not in response.get_data(as_text=True)
    internal = client.get("/policy")
    assert internal.status_code == 500
    assert internal.get_json(force=True)["code"] == "internal_error"
    assert NIRS[0] not in internal.get_data(as_text=True)


def test_guard_protect_directly_on_a_view() -> None:
    guard = LookupGuard(QuotaPolicy.only(lookups="2/hour"), clock=lambda: START)
    app = Flask(__name__)
    init_app(app)
    served: list[str] = []

    def sent_nir() -> Any:
        payload = request.get_json(silent=True)
        return payload.get("nir") if isinstance(payload, dict) else None

    @app.post("/infopatient")
    @guard.protect(practitioner=lambda: request.headers["X-Practitioner"], nir=sent_nir)
    def infopatient() -> Any:
        served.append(sent_nir())
        return {"found": sent_nir() in REGISTRY}

    client = app.test_client()
    statuses = [_ask(client, "dr-v", n).status_code for n in NIRS[:3]]
    assert statuses == [200, 200, 429]
    assert served == NIRS[:2]
    assert _ask(client, "dr-v2", "1234").status_code == 422


def test_init_app_refuses_non_apps() -> None:
    with pytest.raises(TypeError):
        init_app(object())
