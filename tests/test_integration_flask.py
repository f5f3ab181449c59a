"""Flask integration, through the example portal and Flask's test client."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

pytest.importorskip("flask", reason="needs the flask extra: pip install '.[flask]'")

from flask import Blueprint, Flask, Response, abort, request, session
from flask.testing import FlaskClient
from werkzeug.exceptions import BadRequest, HTTPException, NotFound

from nirguard import AuditEvent, LookupGuard, QuotaPolicy
from nirguard.errors import EnumerationSuspected, InvalidPractitioner, PolicyError, ReasonRequired
from nirguard.http import HttpOptions
from nirguard.integrations.flask import (
    guarded_view,
    init_app,
    not_found,
    request_field,
    request_reason,
)
from nirguard.nir import format as format_nir
from nirguard.reasons import Reason, ReasonCode
from tests import integration_helpers as shared
from tests.guard_helpers import record_requests, session_fingerprint
from tests.integration_helpers import NIRS, REGISTRY, START, UNKNOWN, UNREACHABLE_REDIS, spoiled


def _portal(policy: QuotaPolicy, *, storage: str = "memory://") -> shared.Portal:
    return shared.flask_portal(policy, storage=storage)


# -- the example portal -------------------------------------------------------------------------


def test_allowed_lookup_returns_the_identity(caplog: pytest.LogCaptureFixture) -> None:
    response = _portal(QuotaPolicy.only(lookups="10/hour")).ask("dr-a", format_nir(NIRS[0]))
    assert response.status == 200
    assert response.json() == REGISTRY[NIRS[0]]
    shared.assert_no_nir([NIRS[0]], [response], caplog)


def test_unknown_patient_is_a_404_problem() -> None:
    response = _portal(QuotaPolicy.only(lookups="10/hour")).ask("dr-a", UNKNOWN[0])
    assert response.status == 404
    assert UNKNOWN[0] not in response.text


def test_invalid_nir_is_422(caplog: pytest.LogCaptureFixture) -> None:
    portal = _portal(QuotaPolicy.only(lookups="10/hour"))
    bad = spoiled(NIRS[1])
    response = portal.ask("dr-a", bad)
    assert response.status == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:nirguard:problem:invalid_nir"
    assert body["reason"] == "key"
    missing = portal.post_raw("dr-a", b"not json", "application/json")
    assert missing.status == 422
    shared.assert_no_nir([bad, NIRS[1]], [response, missing], caplog)


def test_quota_gives_exactly_q_answers_then_refusals(caplog: pytest.LogCaptureFixture) -> None:
    portal = _portal(QuotaPolicy.only(lookups="3/hour"))
    responses = [portal.ask("dr-q", n) for n in NIRS[:6]]
    assert [r.status for r in responses] == [200, 200, 200, 403, 403, 403]
    assert all(r.json()["code"] == "denied" for r in responses[3:])
    assert portal.ask("dr-other", NIRS[0]).status == 200
    shared.assert_no_nir(NIRS[:6], responses, caplog)


def test_refusals_are_indistinguishable() -> None:
    shared.check_refusals_are_indistinguishable(_portal)


def test_break_glass_round_trip(caplog: pytest.LogCaptureFixture) -> None:
    shared.check_break_glass_round_trip(_portal, caplog)


def test_deep_json_is_a_bad_body_not_a_500() -> None:
    shared.check_deep_json_is_a_bad_body(_portal)


def test_unreachable_store_is_503_and_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    portal = _portal(QuotaPolicy.only(lookups="10/hour"), storage=UNREACHABLE_REDIS)
    response = portal.ask("dr-a", NIRS[0])
    assert response.status == 503
    assert response.json()["code"] == "unavailable"
    assert "127.0.0.1" not in response.text
    shared.assert_no_nir([NIRS[0]], [response], caplog)


def test_missing_practitioner_is_401() -> None:
    assert _portal(QuotaPolicy.only(lookups="10/hour")).ask(None, NIRS[0]).status == 401


# -- the integration pieces on their own -------------------------------------------------------


def _who() -> str:
    return request.headers["X-Practitioner"]


def _app(guard: LookupGuard, options: HttpOptions | None = None, **guarding: Any) -> Flask:
    """A one-view app: abort(404) for an unknown patient, the identity otherwise."""
    app = Flask(__name__)
    init_app(app, options=options)

    @app.post("/infopatient")
    @guarded_view(guard, practitioner=_who, **guarding)
    def infopatient(*, lookup: Any) -> Any:
        identity = REGISTRY.get(lookup.nir)
        if identity is None:
            abort(404)
        return identity

    return app


def _post(client: FlaskClient, who: str, nir: object, **headers: str) -> Any:
    return client.post(
        "/infopatient", json={"nir": nir}, headers={"X-Practitioner": who, **headers}
    )


def test_abort_404_in_a_guarded_view_counts_as_a_miss() -> None:
    guard = LookupGuard(QuotaPolicy.only(misses="3/hour", lockout="1 hour"), clock=lambda: START)
    client = _app(guard).test_client()
    statuses = [_post(client, "dr-404", n).status_code for n in UNKNOWN[:10]]
    assert statuses == [404] * 3 + [403] * 7
    assert _post(client, "dr-404", NIRS[0]).status_code == 403  # the next lookup is refused
    assert guard.status("dr-404").locked
    assert _post(client, "dr-else", NIRS[0]).status_code == 200


def test_not_found_recognises_only_404() -> None:
    assert not_found(NotFound())
    assert not not_found(BadRequest())
    assert not not_found(KeyError("x"))
    with pytest.raises(
        HTTPException
    ) as gone:  # abort with a response: an HTTPException carrying it
        abort(Response("gone", status=404))
    assert not_found(gone.value)
    with pytest.raises(HTTPException) as bad:
        abort(Response("bad", status=400))
    assert not not_found(bad.value)


def test_guarded_view_reads_url_variables_forms_and_reasons() -> None:
    calls: list[tuple[str, object, object]] = []

    class _Guard:
        def lookup(self, who: str, nir: object, *, reason: object = None, **_: Any) -> Any:
            calls.append((who, nir, reason))

            class _Ctx:
                def __enter__(self) -> Any:
                    if who == "over":
                        raise ReasonRequired("cohort")
                    return type("L", (), {"nir": str(nir)})()

                def __exit__(self, *exc: object) -> None:
                    return None

            return _Ctx()

    app = Flask(__name__)
    init_app(app)

    @app.get("/p/<nir>")
    @guarded_view(_Guard(), practitioner=_who)  # type: ignore[arg-type]
    def by_path(nir: str, *, lookup: Any) -> Any:
        return {"n": lookup.nir}

    @app.post("/form")
    @guarded_view(_Guard(), practitioner=_who, reason=lambda: "TREAT")  # type: ignore[arg-type]
    def by_form(*, lookup: Any) -> Any:
        return {"n": lookup.nir}

    client = app.test_client()
    assert client.get("/p/abc", headers={"X-Practitioner": "dr"}).get_json() == {"n": "abc"}
    assert (
        client.post("/form", data={"nir": "xyz"}, headers={"X-Practitioner": "dr"}).status_code
        == 200
    )
    asked = client.get("/p/abc", headers={"X-Practitioner": "over", "X-Nirguard-Reason": "PATRQT"})
    assert asked.status_code == 428
    assert "cohort" not in asked.get_data(as_text=True)
    assert calls == [
        ("dr", "abc", None),
        ("dr", "xyz", "TREAT"),
        ("over", "abc", Reason(ReasonCode.PATRQT)),
    ]


def test_request_reason_outside_a_guarded_view() -> None:
    app = Flask(__name__)
    init_app(app, options=HttpOptions(reason_field="why", reason_text_header="X-Why"))
    with app.test_request_context(
        "/", method="POST", json={"why": "hpaymt"}, headers={"X-Why": "droits%20AMO"}
    ):
        stated = request_reason()
        assert stated == Reason(ReasonCode.HPAYMT, "droits AMO")
        assert request_field("why") == "hpaymt"
    with app.test_request_context("/", method="POST", json={"why": 12}):
        assert repr(request_reason()) == "<invalid reason>"


def test_reveal_retry_after_is_an_explicit_opt_in() -> None:
    guard = LookupGuard(
        QuotaPolicy.only(distinct_patients="2/hour", lockout="1 hour"), clock=lambda: START
    )
    client = _app(guard, HttpOptions(reveal_retry_after=True)).test_client()
    wide = [_post(client, "dr-wide", n) for n in NIRS[:4]]
    assert [r.status_code for r in wide] == [200, 200, 429, 403]
    assert wide[3].get_json(force=True)["code"] == "locked"
    assert 60 < int(wide[3].headers["Retry-After"]) <= 3600


def test_init_app_maps_any_nirguard_error_including_on_blueprints() -> None:
    app = Flask(__name__)
    init_app(app)
    bp = Blueprint("bp", __name__)
    init_app(bp, options=HttpOptions(reveal_retry_after=True))  # the app's own options win

    @app.get("/suspected")
    def suspected() -> str:
        raise EnumerationSuspected("cohort", retry_after=10)

    @bp.get("/policy")
    def policy() -> str:
        raise PolicyError(f"bad policy for {NIRS[0]}")

    @bp.get("/practitioner")
    def practitioner() -> str:
        raise InvalidPractitioner()

    app.register_blueprint(bp)
    client = app.test_client()
    response = client.get("/suspected")
    assert response.status_code == 403
    assert "Retry-After" not in response.headers
    assert "cohort" not in response.get_data(as_text=True)
    internal = client.get("/policy")
    assert internal.status_code == 500
    assert internal.get_json(force=True)["code"] == "internal_error"
    assert NIRS[0] not in internal.get_data(as_text=True)
    assert client.get("/practitioner").status_code == 500

    alone = Flask(__name__)
    bp2 = Blueprint("bp2", __name__)
    init_app(bp2, options=HttpOptions(reveal_retry_after=True))
    bp2.add_url_rule("/s", view_func=suspected)
    alone.register_blueprint(bp2)
    assert alone.test_client().get("/s").headers["Retry-After"] == "10"


def test_guard_protect_directly_on_a_view() -> None:
    guard = LookupGuard(QuotaPolicy.only(lookups="2/hour"), clock=lambda: START)
    app = Flask(__name__)
    init_app(app)
    served: list[object] = []

    @app.post("/infopatient")
    @guard.protect(practitioner=_who, nir=lambda: request_field("nir"))
    def infopatient() -> Any:
        served.append(request_field("nir"))
        return {"found": request_field("nir") in REGISTRY}

    client = app.test_client()
    statuses = [_post(client, "dr-v", n).status_code for n in NIRS[:3]]
    assert statuses == [200, 200, 403]
    assert served == NIRS[:2]
    assert _post(client, "dr-v2", "1234").status_code == 422


def test_init_app_refuses_non_apps_and_bad_options() -> None:
    with pytest.raises(TypeError):
        init_app(object())
    with pytest.raises(ValueError, match="HttpOptions"):
        init_app(Flask(__name__), options={"retry": True})  # type: ignore[arg-type]


# -- the portal's session id (issue 17) ---------------------------------------------------------

SESSION_POLICY = QuotaPolicy.only(lookups="100/hour", session_overlap="30 minutes")


def _login_app(guard: LookupGuard) -> Flask:
    """The login stores an id of its own in Flask's (signed) session; the guard reads it."""
    app = _app(guard, session=lambda: session.get("login_id"))
    app.secret_key = "test-only"

    @app.post("/login")
    def login() -> Any:
        session["login_id"] = secrets.token_urlsafe(16)
        return {"ok": True}

    return app


def test_guarded_view_hands_the_login_session_id_to_the_guard() -> None:
    guard = LookupGuard(SESSION_POLICY, clock=lambda: START)
    recording = record_requests(guard)
    app = _login_app(guard)
    owner, bot = app.test_client(), app.test_client()
    assert _post(owner, "dr-s", NIRS[0]).status_code == 200  # before logging in: unknown
    owner.post("/login")
    bot.post("/login")
    assert [
        _post(c, "dr-s", n).status_code for c, n in zip((owner, bot, owner), NIRS[1:4], strict=True)
    ] == [200, 200, 403]  # the owner back while the bot is active: the signal (below)
    first, a, b, c = (r.session for r in recording.requests)
    assert first == b"" and a == c and a != b and b"" not in (a, b)


def test_guarded_view_session_is_the_callable_s_value_exactly() -> None:
    guard = LookupGuard(SESSION_POLICY, clock=lambda: START)
    recording = record_requests(guard)
    client = _app(guard, session=lambda: request.headers.get("X-Session")).test_client()
    assert _post(client, "dr-s", NIRS[0], **{"X-Session": "owner-1"}).status_code == 200
    assert recording.requests[0].session == session_fingerprint(guard, "owner-1")
    plain = record_requests(other := LookupGuard(SESSION_POLICY, clock=lambda: START))
    _post(_app(other).test_client(), "dr-s", NIRS[0], **{"X-Session": "owner-1"})
    assert [r.session for r in plain.requests] == [b""]  # opt-in: no session= reads none


def test_guarded_view_refuses_a_bad_session_option_and_a_session_that_is_not_a_str() -> None:
    guard = LookupGuard(SESSION_POLICY, clock=lambda: START)
    with pytest.raises(TypeError, match="session must be a callable"):
        guarded_view(guard, practitioner=_who, session="login_id")  # type: ignore[arg-type]
    called: list[bool] = []
    app = Flask(__name__)

    @app.post("/infopatient")
    @guarded_view(guard, practitioner=_who, session=lambda: b"bytes-id")  # type: ignore[arg-type,return-value]
    def infopatient(*, lookup: Any) -> Any:
        called.append(True)
        return {}

    assert _post(app.test_client(), "dr-s", NIRS[0]).status_code == 500  # the portal's bug
    assert called == []


def test_two_sessions_on_one_account_get_the_new_patient_refused() -> None:
    """End to end: each login stores its own id in Flask's session; the guard reads it."""
    events: list[AuditEvent] = []
    guard = LookupGuard(shared.SESSION_POLICY, clock=lambda: START, audit=events.append)
    app = _login_app(guard)
    clients = {
        ("dr-stolen", "owner"): app.test_client(),
        ("dr-stolen", "bot"): app.test_client(),
        ("dr-alone", "owner"): app.test_client(),
    }
    for client in clients.values():
        assert client.post("/login").status_code == 200

    def asker(who: str) -> shared.SessionAsk:
        def ask(login: str, nir: str, reason: str | None) -> int:
            stated = {"X-Nirguard-Reason": reason} if reason else {}
            return int(_post(clients[who, login], who, nir, **stated).status_code)

        return ask

    shared.check_two_sessions_on_one_account(asker("dr-stolen"), asker("dr-alone"))
    assert shared.session_trail(events) == shared.SESSION_TRAIL


def test_the_example_portal_reads_its_x_session_stand_in() -> None:
    shared.check_example_reads_its_x_session_stand_in(_portal)
