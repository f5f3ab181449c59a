"""FastAPI / Starlette integration, through the example portal and the framework's test client."""

# No "from __future__ import annotations" here: FastAPI reads the endpoint annotations at
# runtime, and those refer to names local to the tests.

import gc
import inspect
import uuid
import warnings
from typing import Annotated, Any

import pytest

pytest.importorskip("fastapi", reason="needs the fastapi extra: pip install '.[fastapi]'")

from fastapi import Body, Depends, FastAPI, HTTPException
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

with warnings.catch_warnings():  # recent starlette warns when httpx (not httpx2) backs it
    warnings.filterwarnings("ignore", message=".*httpx2", module="starlette")
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

from nirguard import AuditEvent, LookupGuard, QuotaPolicy
from nirguard.errors import GuardUnavailable, InvalidPractitioner, QuotaExceeded
from nirguard.guard import GuardedLookup
from nirguard.http import HttpOptions
from nirguard.integrations.fastapi import (
    install_exception_handlers,
    lookup_dependency,
    not_found,
)
from nirguard.nir import format as format_nir
from tests import integration_helpers as shared
from tests.guard_helpers import record_requests, session_fingerprint
from tests.integration_helpers import NIRS, REGISTRY, START, UNKNOWN, UNREACHABLE_REDIS, spoiled


def _portal(policy: QuotaPolicy, *, storage: str = "memory://") -> shared.Portal:
    return shared.fastapi_portal(policy, storage=storage)


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
    missing = portal.request("POST", "/infopatient", headers={"X-Practitioner": "dr-a"}, data=b"{}")
    assert missing.status == 422
    shared.assert_no_nir([bad, NIRS[1]], [response, missing], caplog)


def test_quota_gives_exactly_q_answers_then_refusals(caplog: pytest.LogCaptureFixture) -> None:
    portal = _portal(QuotaPolicy.only(lookups="3/hour"))
    responses = [portal.ask("dr-q", n) for n in NIRS[:6]]
    assert [r.status for r in responses] == [200, 200, 200, 403, 403, 403]
    assert all(r.json()["code"] == "denied" for r in responses[3:])
    assert portal.ask("dr-other", NIRS[0]).status == 200  # another practitioner is not affected
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


class LookupBody(BaseModel):
    nir: str


def _app(guard: Any, options: HttpOptions | None = None, **dependency: Any) -> FastAPI:
    """A one-endpoint app: 404 (raised) for an unknown patient, the identity otherwise."""

    def who(request: Request) -> str:
        return request.headers["X-Practitioner"]

    app = FastAPI()
    install_exception_handlers(app, options=options)
    guarded = lookup_dependency(guard, practitioner=who, **dependency)

    @app.post("/infopatient")
    async def infopatient(lookup: Annotated[GuardedLookup, Depends(guarded)]) -> Any:
        identity = REGISTRY.get(lookup.nir)
        if identity is None:
            raise HTTPException(status_code=404)
        return identity

    return app


def _post(client: TestClient, who: str, nir: object, **headers: str) -> Any:
    return client.post(
        "/infopatient", json={"nir": nir}, headers={"X-Practitioner": who, **headers}
    )


def test_http_404_raised_by_the_endpoint_counts_as_a_miss() -> None:
    guard = LookupGuard(QuotaPolicy.only(misses="3/hour", lockout="1 hour"), clock=lambda: START)
    client = TestClient(_app(guard))
    statuses = [_post(client, "dr-404", n).status_code for n in UNKNOWN[:10]]
    assert statuses == [404] * 3 + [403] * 7
    assert _post(client, "dr-404", NIRS[0]).status_code == 403  # the next lookup is refused
    assert guard.status("dr-404").locked
    assert _post(client, "dr-else", NIRS[0]).status_code == 200


def test_other_http_errors_are_not_misses() -> None:
    guard = LookupGuard(QuotaPolicy.only(misses="1/hour"), clock=lambda: START)
    app = FastAPI()
    install_exception_handlers(app)
    guarded = lookup_dependency(guard, practitioner=lambda request: "dr-400")

    @app.post("/infopatient")
    async def infopatient(lookup: Annotated[GuardedLookup, Depends(guarded)]) -> Any:
        raise HTTPException(status_code=400)

    client = TestClient(app)
    assert [_post(client, "x", n).status_code for n in NIRS[:4]] == [400] * 4
    assert not_found(HTTPException(404)) and not not_found(HTTPException(410))
    assert not not_found(LookupError())


def test_miss_on_none_falls_back_to_the_guard_default() -> None:
    guard = LookupGuard(QuotaPolicy.only(misses="1/hour"), clock=lambda: START)
    client = TestClient(_app(guard, miss_on=None))
    assert [_post(client, "dr", n).status_code for n in UNKNOWN[:3]] == [404, 404, 404]


def test_guard_protect_with_not_found_counts_misses() -> None:
    guard = LookupGuard(QuotaPolicy.only(misses="2/hour"), clock=lambda: START)
    app = FastAPI()
    install_exception_handlers(app)

    @app.post("/infopatient")
    @guard.protect(
        practitioner=lambda request, body: request.headers["X-Practitioner"],
        nir=lambda request, body: body.nir,
        miss_on=not_found,
    )
    async def infopatient(request: Request, body: LookupBody) -> Any:
        raise HTTPException(status_code=404)

    client = TestClient(app)
    assert [_post(client, "dr-p", n).status_code for n in UNKNOWN[:4]] == [404, 404, 403, 403]


def test_reveal_retry_after_is_an_explicit_opt_in() -> None:
    options = HttpOptions(reveal_retry_after=True)
    rate_guard = LookupGuard(QuotaPolicy.only(lookups="2/minute"), clock=lambda: START)
    client = TestClient(_app(rate_guard, options))
    rate = [_post(client, "dr-rate", NIRS[0]) for _ in range(3)][2]
    assert rate.status_code == 429 and rate.json()["code"] == "quota_exceeded"
    assert 1 <= int(rate.headers["retry-after"]) <= 60
    wide_guard = LookupGuard(
        QuotaPolicy.only(distinct_patients="2/hour", lockout="1 hour"), clock=lambda: START
    )
    client = TestClient(_app(wide_guard, options))
    wide = [_post(client, "dr-wide", n) for n in NIRS[:4]]
    assert [r.status_code for r in wide] == [200, 200, 429, 403]
    assert wide[3].json()["code"] == "locked"
    assert 60 < int(wide[3].headers["retry-after"]) <= 3600


def test_reason_from_a_body_field_and_text_from_a_header() -> None:
    seen: list[Any] = []
    guard = LookupGuard(
        QuotaPolicy.only(distinct_patients="1/hour", break_glass="2/day"),
        clock=lambda: START,
        on_break_glass=seen.append,
    )
    options = HttpOptions(
        reason_header=None, reason_field="why", reason_text_header="X-Why", reason_text_field=None
    )
    client = TestClient(_app(guard, options))
    assert _post(client, "dr", NIRS[0]).status_code == 200
    asked = _post(client, "dr", NIRS[1])
    assert asked.status_code == 428
    body = asked.json()
    assert body["reason_field"] == "why" and body["reason_text_header"] == "X-Why"
    assert "reason_header" not in body and "reason_text_field" not in body
    granted = client.post(
        "/infopatient",
        json={"nir": NIRS[1], "why": "COC"},
        headers={"X-Practitioner": "dr", "X-Why": "r%C3%A9union%20de%20concertation"},
    )
    assert granted.status_code == 200
    assert [(b.reason.code.value, b.reason.text) for b in seen] == [
        ("COC", "réunion de concertation")
    ]


def test_invalid_practitioner_is_an_internal_error() -> None:
    async def boom(request: Request) -> Any:
        raise InvalidPractitioner()

    app = Starlette(routes=[Route("/", boom)])
    install_exception_handlers(app)
    response = TestClient(app, raise_server_exceptions=False).get("/")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"


class _AsyncOnlyLookup:
    def __init__(self, nir: str) -> None:
        self.nir = nir

    def record(self, result: Any) -> Any:
        return result


class _AsyncOnlyGuard:
    """Supports only ``async with guard.lookup()``: any sync use would fail the test."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, object]] = []

    def lookup(self, practitioner: str, nir: object, *, reason: object = None, **_: Any) -> Any:
        guard = self

        class _Ctx:
            async def __aenter__(self) -> _AsyncOnlyLookup:
                guard.calls.append((practitioner, nir, reason))
                if practitioner == "over":
                    raise QuotaExceeded("lookups", retry_after=0.4)
                return _AsyncOnlyLookup(str(nir))

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Ctx()

    async def open_lookup(
        self, practitioner: str, nir: object, *, reason: object = None, **_: Any
    ) -> Any:
        async with self.lookup(practitioner, nir, reason=reason) as lookup:
            return lookup


def test_guarded_lookup_uses_the_async_guard_and_path_parameters() -> None:
    guard = _AsyncOnlyGuard()
    ran: list[str] = []

    async def who(request: Request) -> str:
        return request.headers["X-Practitioner"]

    async def why(request: Request) -> str:
        return "TREAT"

    app = FastAPI()
    install_exception_handlers(app)
    by_path = lookup_dependency(guard, practitioner=who, nir="nir", reason=why)  # type: ignore[arg-type]

    @app.get("/p/{nir}")
    async def endpoint(lookup: Annotated[Any, Depends(by_path)]) -> dict[str, str]:
        ran.append(lookup.nir)
        return {"ok": "yes"}

    client = TestClient(app)
    assert client.get("/p/abc", headers={"X-Practitioner": "dr"}).status_code == 200
    denied = client.get("/p/abc", headers={"X-Practitioner": "over"})
    assert denied.status_code == 403
    assert "retry-after" not in denied.headers
    assert guard.calls == [("dr", "abc", "TREAT"), ("over", "abc", "TREAT")]
    assert ran == ["abc"]  # the endpoint never ran on the denial


def _stated(options: HttpOptions | None, body: object, **headers: str) -> tuple[object, object]:
    """What the default dependency hands the guard (practitioner and NIR from a sync reader
    and a body field, the reason where ``options`` say) for one POST."""
    guard = _AsyncOnlyGuard()
    app = FastAPI()
    install_exception_handlers(app, options=options)
    guarded = lookup_dependency(
        guard,  # type: ignore[arg-type]
        practitioner=lambda request: request.headers["X-Practitioner"],
        nir="nir",
    )

    @app.post("/lookup")
    async def endpoint(lookup: Annotated[Any, Depends(guarded)]) -> dict[str, str]:
        return {"ok": "yes"}

    response = TestClient(app).post(
        "/lookup", json=body, headers={"X-Practitioner": "dr", **headers}
    )
    assert response.status_code == 200
    [(who, nir, reason)] = guard.calls
    assert who == "dr"
    return nir, reason


def test_the_dependency_reads_the_reason_only_after_a_code() -> None:
    # The quick path (no reason header: no reason) must answer as stated_reason does.
    assert _stated(None, {"nir": "n1", "reason_text": "urgence"}) == ("n1", None)
    assert _stated(None, {"nir": "n1"}, **{"X-Nirguard-Reason": "  "}) == ("n1", None)
    nir, reason = _stated(
        None, {"nir": "n1", "reason_text": "urgence"}, **{"X-Nirguard-Reason": "ETREAT"}
    )
    assert nir == "n1"
    assert (reason.code.value, reason.text) == ("ETREAT", "urgence")  # type: ignore[attr-defined]
    # a code in the body when the header is absent: the body is read for it
    by_field = HttpOptions(reason_field="why")
    nir, reason = _stated(by_field, {"nir": "n2", "why": "ETREAT"})
    assert (nir, reason.code.value, reason.text) == ("n2", "ETREAT", None)  # type: ignore[attr-defined]
    # no header at all read for a code: the body only
    body_only = HttpOptions(reason_header=None, reason_field="why")
    assert _stated(body_only, {"nir": "n3"}, **{"X-Nirguard-Reason": "ETREAT"}) == ("n3", None)
    # an unknown code is handed on as a value the guard refuses, never as None
    nir, reason = _stated(None, {"nir": "n4"}, **{"X-Nirguard-Reason": "NOT-A-CODE"})
    assert nir == "n4" and reason is not None and not isinstance(reason, str)
    # a body that is no JSON object: the NIR is None (refused by the guard as invalid)
    assert _stated(None, ["n5"]) == (None, None)


def test_guard_protect_on_an_endpoint_keeps_its_signature_for_fastapi() -> None:
    guard = LookupGuard(QuotaPolicy.only(lookups="2/hour"), clock=lambda: START)
    calls: list[str] = []

    app = FastAPI()
    install_exception_handlers(app)

    @app.post("/infopatient")
    @guard.protect(
        practitioner=lambda request, body: request.headers["X-Practitioner"],
        nir=lambda request, body: body.nir,
    )
    async def infopatient(request: Request, body: LookupBody) -> dict[str, Any] | None:
        calls.append(body.nir)
        return REGISTRY.get(body.nir)

    client = TestClient(app)
    statuses = [_post(client, "dr-p", NIRS[i]).status_code for i in range(3)]
    assert statuses == [200, 200, 403]
    assert calls == NIRS[:2]
    bad = _post(client, "dr-p2", "12")
    assert bad.status_code == 422 and bad.json()["reason"] == "length"


def test_install_exception_handlers_on_plain_starlette() -> None:
    async def boom(request: Request) -> Any:
        raise GuardUnavailable()

    app = Starlette(routes=[Route("/", boom)])
    install_exception_handlers(app)
    response = TestClient(app, raise_server_exceptions=False).get("/")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:nirguard:problem:unavailable"


def test_validation_errors_do_not_echo_the_value() -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.post("/n")
    async def endpoint(count: Annotated[int, Body(embed=True)]) -> dict[str, int]:
        return {"count": count}

    response = TestClient(app).post("/n", json={"count": NIRS[0] + "x"})
    assert response.status_code == 422
    assert NIRS[0] not in response.text
    assert response.json()["detail"][0]["loc"] == ["body", "count"]

    plain = FastAPI()
    install_exception_handlers(plain, redact_validation_errors=False)

    @plain.post("/n")
    async def endpoint2(count: Annotated[int, Body(embed=True)]) -> dict[str, int]:
        return {"count": count}

    assert NIRS[0] in TestClient(plain).post("/n", json={"count": NIRS[0] + "x"}).text


def test_install_exception_handlers_refuses_non_apps_and_bad_options() -> None:
    with pytest.raises(TypeError):
        install_exception_handlers(object())
    with pytest.raises(ValueError, match="HttpOptions"):
        install_exception_handlers(FastAPI(), options="reveal")  # type: ignore[arg-type]


def test_the_dependency_is_no_yield_dependency_and_finishes_every_lookup_once() -> None:
    # A yield dependency costs FastAPI a context manager and a cancel scope per request: the
    # default one is a plain coroutine, finished by record(), by the 404 handler, or when the
    # request lets go of it.
    events: list[AuditEvent] = []
    guard = LookupGuard(QuotaPolicy.only(misses="2/hour", lookups="100/hour"), audit=events.append)
    plain = lookup_dependency(guard, practitioner=lambda request: "dr")
    assert inspect.iscoroutinefunction(plain) and not inspect.isasyncgenfunction(plain)
    custom = lookup_dependency(guard, practitioner=lambda request: "dr", miss_on=KeyError)
    assert inspect.isasyncgenfunction(custom)  # sees every exception of the endpoint

    app = FastAPI()
    install_exception_handlers(app)

    @app.post("/recorded")
    async def recorded(lookup: Annotated[GuardedLookup, Depends(plain)]) -> Any:
        return lookup.record(REGISTRY.get(lookup.nir)) or {"found": False}

    @app.post("/silent")
    async def silent(lookup: Annotated[GuardedLookup, Depends(plain)]) -> Any:
        return {"nir_seen": len(lookup.nir)}

    client = TestClient(app)
    assert client.post("/recorded", json={"nir": NIRS[0]}).status_code == 200
    assert client.post("/recorded", json={"nir": UNKNOWN[0]}).status_code == 200
    assert client.post("/silent", json={"nir": NIRS[1]}).status_code == 200
    gc.collect()
    assert [e.outcome for e in events] == ["allowed", "miss", "allowed"]
    assert client.post("/recorded", json={"nir": UNKNOWN[1]}).status_code == 200
    assert client.post("/recorded", json={"nir": NIRS[2]}).status_code == 403  # misses spent


def test_shadow_mode_answers_as_enforcement_minus_the_refusals_it_records() -> None:
    answers = {}
    for enforce in (True, False):
        events: list[AuditEvent] = []
        guard = LookupGuard(
            QuotaPolicy.only(lookups="100/hour"), enforce=enforce, audit=events.append
        )
        client = TestClient(_app(guard))
        invalid = _post(client, "dr", spoiled(NIRS[0]))
        bad_reason = _post(client, "dr", NIRS[0], **{"X-Nirguard-Reason": "NOT-A-CODE"})
        answers[enforce] = (invalid.status_code, bad_reason.status_code)
        outcomes = [(e.outcome, e.quota) for e in events]
        if enforce:
            assert outcomes == [("invalid", "invalid_nirs"), ("denied", "reason")]
        else:
            assert outcomes == [
                ("invalid", "invalid_nirs"),
                ("would_deny", "reason"),
                ("allowed", None),
            ]
    # One request must not tell the modes apart on an invalid number: a 422 in both.
    assert answers[True] == (422, 422)
    assert answers[False] == (422, 200)  # the bad reason is only recorded


# -- the portal's session id (issue 17) ---------------------------------------------------------

SESSION_POLICY = QuotaPolicy.only(lookups="100/hour", session_overlap="30 minutes")


def _session(request: Request) -> str | None:
    # The test's stand-in for the login session, as X-Practitioner is for the login itself.
    return request.headers.get("X-Session")


async def _asession(request: Request) -> str | None:
    return request.headers.get("X-Session")


@pytest.mark.parametrize("reader", [_session, _asession], ids=["sync", "async"])
@pytest.mark.parametrize("miss_on", [not_found, LookupError], ids=["returning", "yielding"])
def test_the_dependency_hands_the_session_id_to_the_guard(reader: Any, miss_on: Any) -> None:
    guard = LookupGuard(SESSION_POLICY, clock=lambda: START)
    recording = record_requests(guard)
    client = TestClient(_app(guard, session=reader, miss_on=miss_on))
    assert _post(client, "dr-s", NIRS[0], **{"X-Session": "owner-1"}).status_code == 200
    assert _post(client, "dr-s", NIRS[1], **{"X-Session": "bot-2"}).status_code == 200
    assert _post(client, "dr-s", NIRS[2]).status_code == 200  # no session: unknown
    assert [r.session for r in recording.requests] == [
        session_fingerprint(guard, "owner-1"),
        session_fingerprint(guard, "bot-2"),
        b"",
    ]
    plain = record_requests(other := LookupGuard(SESSION_POLICY, clock=lambda: START))
    answer = _post(TestClient(_app(other)), "dr-s", NIRS[0], **{"X-Session": "owner-1"})
    assert answer.status_code == 200
    assert [r.session for r in plain.requests] == [b""]  # opt-in: no session= reads none


def test_a_session_option_that_is_not_callable_is_refused() -> None:
    guard = LookupGuard(SESSION_POLICY)
    with pytest.raises(TypeError, match="session must be a callable"):
        lookup_dependency(guard, practitioner=lambda r: "dr", session="X-Session")  # type: ignore[arg-type]


def test_a_session_id_that_is_not_a_str_fails_before_the_endpoint_runs() -> None:
    guard = LookupGuard(SESSION_POLICY, clock=lambda: START)
    called: list[bool] = []
    app = FastAPI()
    install_exception_handlers(app)
    guarded = lookup_dependency(guard, practitioner=lambda r: "dr", session=lambda r: 1234)

    @app.post("/infopatient")
    async def infopatient(lookup: Annotated[GuardedLookup, Depends(guarded)]) -> Any:
        called.append(True)

    with pytest.raises(TypeError, match="session must be a str"):
        TestClient(app).post("/infopatient", json={"nir": NIRS[0]})
    assert called == []


@pytest.mark.parametrize("miss_on", [not_found, LookupError], ids=["returning", "yielding"])
def test_two_sessions_on_one_account_get_the_new_patient_refused(miss_on: Any) -> None:
    """End to end: the session reader is Starlette's signed session, set by a login."""
    from starlette.middleware.sessions import SessionMiddleware

    events: list[AuditEvent] = []
    guard = LookupGuard(shared.SESSION_POLICY, clock=lambda: START, audit=events.append)
    app = _app(guard, session=lambda request: request.session.get("login"), miss_on=miss_on)

    @app.post("/login")
    async def login(request: Request) -> Any:
        request.session["login"] = uuid.uuid4().hex
        return {"ok": True}

    app.add_middleware(SessionMiddleware, secret_key="test-only")
    clients: dict[str, dict[str, TestClient]] = {}
    for who, logins in (("dr-stolen", ("owner", "bot")), ("dr-alone", ("owner",))):
        clients[who] = {login: TestClient(app) for login in logins}
        for client in clients[who].values():
            assert client.post("/login").status_code == 200

    def asker(who: str) -> shared.SessionAsk:
        def ask(login: str, nir: str, reason: str | None) -> int:
            stated = {"X-Nirguard-Reason": reason} if reason else {}
            return int(_post(clients[who][login], who, nir, **stated).status_code)

        return ask

    shared.check_two_sessions_on_one_account(asker("dr-stolen"), asker("dr-alone"))
    refused = [e for e in events if e.practitioner == "dr-stolen" and e.quota == "session"]
    assert [e.outcome for e in refused][:1] == ["reason_required"]
    assert "lockout" in [e.outcome for e in refused]


def test_the_example_portal_reads_its_x_session_stand_in() -> None:
    shared.check_example_reads_its_x_session_stand_in(_portal)
