"""Django integration, through the example portal and Django's test client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("django", reason="needs the django extra: pip install '.[django]'")

from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View

from nirguard import AuditEvent, LookupGuard, QuotaPolicy
from nirguard.errors import (
    GuardUnavailable,
    InvalidPractitioner,
    PractitionerLocked,
    QuotaExceeded,
)
from nirguard.http import HttpOptions
from nirguard.integrations.django import (
    NirguardMiddleware,
    guarded_view,
    http_options,
    nirguard_problems,
    not_found,
    request_reason,
)
from nirguard.nir import format as format_nir
from nirguard.reasons import Reason, ReasonCode
from tests import integration_helpers as shared
from tests.example_helpers import load_example
from tests.guard_helpers import record_requests, session_fingerprint
from tests.integration_helpers import NIRS, REGISTRY, START, UNKNOWN, UNREACHABLE_REDIS, spoiled


@pytest.fixture(autouse=True)
def _django_settings() -> Iterator[None]:
    """Django's settings, configured by every test itself, with its own files.

    The example portal's import configures them once per process, from the environment of
    the test that imports it first. Under xdist a worker may run a test below that builds its
    own views before any portal test, and find the settings not configured; and a test's
    break-glass review queue would be the file of whichever test came first in the process.
    """
    portal = load_example("django_portal")
    with override_settings(**portal.nirguard_settings()):
        yield


def _portal(policy: QuotaPolicy, *, storage: str = "memory://") -> shared.Portal:
    return shared.django_portal(policy, storage=storage)


def _urlconf(urlpatterns: list[Any]) -> ModuleType:
    """A throwaway URLconf module for ROOT_URLCONF."""
    module = ModuleType("nirguard_test_urls")
    module.urlpatterns = urlpatterns  # type: ignore[attr-defined]
    return module


# -- the example portal -------------------------------------------------------------------------


def test_allowed_lookup_returns_the_identity(caplog: pytest.LogCaptureFixture) -> None:
    response = _portal(QuotaPolicy.only(lookups="10/hour")).ask("dr-a", format_nir(NIRS[0]))
    assert response.status == 200
    assert response.json() == REGISTRY[NIRS[0]]
    shared.assert_no_nir([NIRS[0]], [response], caplog)


def test_form_field_and_unknown_patient() -> None:
    portal = _portal(QuotaPolicy.only(lookups="10/hour"))
    body = f"nir={UNKNOWN[0]}".encode()
    response = portal.request(
        "POST",
        "/infopatient",
        headers={"X-Practitioner": "dr-a"},
        data=body,
        content_type="application/x-www-form-urlencoded",
    )
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
    shared.assert_no_nir([bad, NIRS[1]], [response], caplog)


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


def _who(request: HttpRequest) -> str:
    return str(request.headers["X-Practitioner"])


class _Identity:
    """Stands in for a model: ``.get()`` raises its ``DoesNotExist``."""

    class DoesNotExist(ObjectDoesNotExist):
        pass

    @classmethod
    def get(cls, nir: str) -> dict[str, Any]:
        if nir not in REGISTRY:
            raise cls.DoesNotExist()
        return REGISTRY[nir]


def _raising_views(guard: LookupGuard) -> ModuleType:
    @guarded_view(guard, practitioner=_who)
    def by_404(request: HttpRequest, *, lookup: Any) -> HttpResponse:
        if lookup.nir not in REGISTRY:
            raise Http404()
        return JsonResponse(REGISTRY[lookup.nir])

    @guarded_view(guard, practitioner=_who)
    async def by_model(request: HttpRequest, *, lookup: Any) -> HttpResponse:
        return JsonResponse(_Identity.get(lookup.nir))

    return _urlconf([path("404", by_404), path("model", by_model)])


def _post(client: Client, url: str, who: str, nir: object) -> Any:
    return client.post(
        url, {"nir": nir}, content_type="application/json", headers={"X-Practitioner": who}
    )


def test_http404_raised_by_a_guarded_view_counts_as_a_miss() -> None:
    guard = LookupGuard(QuotaPolicy.only(misses="3/hour", lockout="1 hour"), clock=lambda: START)
    with override_settings(ROOT_URLCONF=_raising_views(guard)):
        client = Client()
        statuses = [_post(client, "/404", "dr-404", n).status_code for n in UNKNOWN[:10]]
        assert statuses == [404] * 3 + [403] * 7
        assert _post(client, "/404", "dr-404", NIRS[0]).status_code == 403
        assert _post(client, "/404", "dr-else", NIRS[0]).status_code == 200
    assert guard.status("dr-404").locked


def test_does_not_exist_raised_by_an_async_view_counts_as_a_miss() -> None:
    guard = LookupGuard(QuotaPolicy.only(misses="3/hour", lockout="1 hour"), clock=lambda: START)

    async def run() -> list[int]:
        client = AsyncClient(raise_request_exception=False)
        out = []
        for nir in [*UNKNOWN[:10], NIRS[0]]:
            response = await client.post(
                "/model",
                {"nir": nir},
                content_type="application/json",
                headers={"X-Practitioner": "dr-model"},
            )
            out.append(response.status_code)
        return out

    with override_settings(ROOT_URLCONF=_raising_views(guard)):
        assert asyncio.run(run()) == [500] * 3 + [403] * 8  # a DoesNotExist left unhandled
    assert guard.status("dr-model").locked
    assert not_found(_Identity.DoesNotExist()) and not_found(Http404())
    assert not not_found(LookupError())


def test_options_come_from_the_nirguard_http_setting() -> None:
    guard = LookupGuard(
        QuotaPolicy.only(distinct_patients="2/hour", lockout="1 hour"), clock=lambda: START
    )
    urls = _raising_views(guard)
    with override_settings(ROOT_URLCONF=urls, NIRGUARD_HTTP={"reveal_retry_after": True}):
        assert http_options() == HttpOptions(reveal_retry_after=True)
        client = Client()
        wide = [_post(client, "/404", "dr-wide", n) for n in NIRS[:4]]
        assert [r.status_code for r in wide] == [200, 200, 429, 403]
        assert 60 < int(wide[3]["Retry-After"]) <= 3600
    with override_settings(ROOT_URLCONF=urls, NIRGUARD_HTTP=HttpOptions(reason_field="why")):
        factory = RequestFactory()
        request = factory.post("/", {"why": "coc"}, content_type="application/json")
        assert request_reason(request) == Reason(ReasonCode.COC)
        form = factory.post("/", {"why": "ETREAT", "reason_text": "arrêt cardiaque"})
        assert request_reason(form) == Reason(ReasonCode.ETREAT, "arrêt cardiaque")
    with override_settings(NIRGUARD_HTTP="nope"), pytest.raises(ValueError, match="HttpOptions"):
        http_options()


class _Lookup:
    def __init__(self, nir: str) -> None:
        self.nir = nir

    def record(self, result: Any) -> Any:
        return result


class _FakeGuard:
    """Sync or async only, to prove which path each kind of view takes."""

    def __init__(self, *, sync: bool) -> None:
        self.sync = sync
        self.calls: list[tuple[str, object]] = []

    def _enter(self, practitioner: str, nir: object) -> _Lookup:
        self.calls.append((practitioner, nir))
        if practitioner == "over":
            raise QuotaExceeded("misses", retry_after=30)
        return _Lookup(str(nir))

    def lookup(self, practitioner: str, nir: object, **_: Any) -> Any:
        guard = self

        class _Sync:
            def __enter__(self) -> _Lookup:
                return guard._enter(practitioner, nir)

            def __exit__(self, *exc: object) -> None:
                return None

        class _Async:
            async def __aenter__(self) -> _Lookup:
                return guard._enter(practitioner, nir)

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Sync() if self.sync else _Async()


def test_guarded_view_sync_async_and_class_based() -> None:
    sync_guard, async_guard = _FakeGuard(sync=True), _FakeGuard(sync=False)
    ran: list[str] = []

    @guarded_view(sync_guard, practitioner=_who, nir="nir")  # type: ignore[arg-type]
    def sync_view(request: HttpRequest, nir: str, *, lookup: Any) -> HttpResponse:
        ran.append("sync")
        return JsonResponse({"nir_len": len(lookup.nir)})

    @guarded_view(async_guard, practitioner=_who, nir=lambda request: request.GET.get("n"))  # type: ignore[arg-type]
    async def async_view(request: HttpRequest, *, lookup: Any) -> HttpResponse:
        ran.append("async")
        return JsonResponse({"nir_len": len(lookup.nir)})

    class ClassView(View):
        @method_decorator(guarded_view(sync_guard, practitioner=_who))  # type: ignore[arg-type]
        def post(self, request: HttpRequest, *, lookup: Any) -> HttpResponse:
            ran.append("class")
            return JsonResponse({"nir_len": len(lookup.nir)})

    urls = _urlconf(
        [
            path("s/<str:nir>", sync_view),
            path("a", async_view),
            path("c", ClassView.as_view()),
        ]
    )
    with override_settings(ROOT_URLCONF=urls):
        client = Client()
        assert client.get("/s/abc", headers={"X-Practitioner": "dr"}).status_code == 200
        denied = client.get("/s/abc", headers={"X-Practitioner": "over"})
        assert denied.status_code == 403 and "Retry-After" not in denied
        assert (
            client.post("/c", {"nir": "xyz"}, headers={"X-Practitioner": "dr"}).status_code == 200
        )

        async def run_async() -> list[int]:
            aclient = AsyncClient()
            ok = await aclient.get("/a?n=abcd", headers={"X-Practitioner": "dr"})
            no = await aclient.get("/a?n=abcd", headers={"X-Practitioner": "over"})
            return [ok.status_code, no.status_code]

        assert asyncio.run(run_async()) == [200, 403]
    assert sync_guard.calls == [("dr", "abc"), ("over", "abc"), ("dr", "xyz")]
    assert async_guard.calls == [("dr", "abcd"), ("over", "abcd")]
    assert ran == ["sync", "class", "async"]  # never on a denial


def test_middleware_and_decorator_map_escaping_errors() -> None:
    def locked(request: HttpRequest) -> HttpResponse:
        raise PractitionerLocked(retry_after=7.5)

    async def unavailable(request: HttpRequest) -> HttpResponse:
        raise GuardUnavailable()

    def broken_id(request: HttpRequest) -> HttpResponse:
        raise InvalidPractitioner()

    urls = _urlconf(
        [
            path("locked", locked),
            path("unavailable", unavailable),
            path("broken", broken_id),
            path("decorated", nirguard_problems(locked)),
        ]
    )
    middleware = ["nirguard.integrations.django.NirguardMiddleware"]
    with override_settings(ROOT_URLCONF=urls, MIDDLEWARE=middleware):
        response = Client().get("/locked")
        assert response.status_code == 403 and "Retry-After" not in response
        assert Client().get("/broken").status_code == 500

        async def run_async() -> Any:
            return await AsyncClient().get("/unavailable")

        response = asyncio.run(run_async())
        assert response.status_code == 503
        assert response["Content-Type"] == "application/problem+json"
    with override_settings(
        ROOT_URLCONF=urls, MIDDLEWARE=middleware, NIRGUARD_HTTP={"reveal_retry_after": True}
    ):
        assert Client().get("/locked")["Retry-After"] == "8"
    with override_settings(ROOT_URLCONF=urls, MIDDLEWARE=[]):
        assert Client().get("/decorated").status_code == 403
    assert (
        NirguardMiddleware(lambda r: HttpResponse()).process_exception(
            HttpRequest(), ValueError("x")
        )
        is None
    )


# -- the portal's session id (issue 17) ---------------------------------------------------------

SESSION_POLICY = QuotaPolicy.only(lookups="100/hour", session_overlap="30 minutes")
#: Django's sessions without a database: the cache backend (locmem). Not ``signed_cookies``:
#: there the "key" is the cookie itself, which changes whenever the session's data does.
SESSIONS = {
    "SESSION_ENGINE": "django.contrib.sessions.backends.cache",
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "nirguard.integrations.django.NirguardMiddleware",
    ],
}


def _session_views(guard: LookupGuard) -> ModuleType:
    def login(request: HttpRequest) -> HttpResponse:
        request.session["rpps"] = request.headers["X-Practitioner"]
        return JsonResponse({"ok": True})

    @guarded_view(guard, practitioner=_who, session=lambda request: request.session.session_key)
    def lookup(request: HttpRequest, *, lookup: Any) -> HttpResponse:
        return JsonResponse(REGISTRY[lookup.nir])

    async def header(request: HttpRequest) -> str | None:  # awaited, for an async view
        return request.headers.get("X-Session")

    @guarded_view(guard, practitioner=_who, session=header)
    async def alookup(request: HttpRequest, *, lookup: Any) -> HttpResponse:
        return JsonResponse(REGISTRY[lookup.nir])

    @guarded_view(guard, practitioner=_who)
    def plain(request: HttpRequest, *, lookup: Any) -> HttpResponse:
        return JsonResponse(REGISTRY[lookup.nir])

    return _urlconf(
        [path("login", login), path("lookup", lookup), path("a", alookup), path("p", plain)]
    )


def test_guarded_view_hands_the_login_session_key_to_the_guard() -> None:
    guard = LookupGuard(SESSION_POLICY, clock=lambda: START)
    recording = record_requests(guard)
    with override_settings(ROOT_URLCONF=_session_views(guard), **SESSIONS):
        owner, bot = Client(), Client()
        assert _post(owner, "/lookup", "dr-s", NIRS[0]).status_code == 200  # no session yet
        for client in (owner, bot):
            client.post("/login", headers={"X-Practitioner": "dr-s"})
        answers = [_post(c, "/lookup", "dr-s", n) for c, n in zip((owner, bot, owner), NIRS[1:4])]
        assert [a.status_code for a in answers] == [
            200,
            200,
            403,
        ]  # the owner back: the signal (below)
        keys = owner.session.session_key, bot.session.session_key
        assert _post(owner, "/p", "dr-p", NIRS[4]).status_code == 200  # opt-in: none read
    assert [r.session for r in recording.requests] == [
        b"",
        session_fingerprint(guard, keys[0]),
        session_fingerprint(guard, keys[1]),
        session_fingerprint(guard, keys[0]),
        b"",
    ]
    assert keys[0] != keys[1]


def test_an_async_view_awaits_the_session_reader() -> None:
    guard = LookupGuard(SESSION_POLICY, clock=lambda: START)
    recording = record_requests(guard)

    async def run() -> int:
        response = await AsyncClient().post(
            "/a",
            {"nir": NIRS[0]},
            content_type="application/json",
            headers={"X-Practitioner": "dr-s", "X-Session": "owner-1"},
        )
        return response.status_code

    with override_settings(ROOT_URLCONF=_session_views(guard), **SESSIONS):
        assert asyncio.run(run()) == 200
    assert [r.session for r in recording.requests] == [session_fingerprint(guard, "owner-1")]


def test_guarded_view_refuses_a_bad_session_option_and_a_session_that_is_not_a_str() -> None:
    guard = LookupGuard(SESSION_POLICY, clock=lambda: START)
    with pytest.raises(TypeError, match="session must be a callable"):
        guarded_view(guard, practitioner=_who, session="sessionid")  # type: ignore[arg-type]
    called: list[bool] = []

    @guarded_view(guard, practitioner=_who, session=lambda request: 12345)  # type: ignore[arg-type,return-value]
    def view(request: HttpRequest, *, lookup: Any) -> HttpResponse:
        called.append(True)
        return JsonResponse({})

    with override_settings(ROOT_URLCONF=_urlconf([path("v", view)])):
        client = Client(raise_request_exception=False)
        assert _post(client, "/v", "dr-s", NIRS[0]).status_code == 500  # the portal's bug
    assert called == []


def test_two_sessions_on_one_account_get_the_new_patient_refused() -> None:
    """End to end: Django's session login; the guard reads the session's key."""
    events: list[AuditEvent] = []
    guard = LookupGuard(shared.SESSION_POLICY, clock=lambda: START, audit=events.append)
    with override_settings(ROOT_URLCONF=_session_views(guard), **SESSIONS):
        clients = {
            ("dr-stolen", "owner"): Client(),
            ("dr-stolen", "bot"): Client(),
            ("dr-alone", "owner"): Client(),
        }
        for (who, _), client in clients.items():
            assert client.post("/login", headers={"X-Practitioner": who}).status_code == 200

        def asker(who: str) -> shared.SessionAsk:
            def ask(login: str, nir: str, reason: str | None) -> int:
                headers = {"X-Practitioner": who}
                if reason:
                    headers["X-Nirguard-Reason"] = reason
                answer = clients[who, login].post(
                    "/lookup", {"nir": nir}, content_type="application/json", headers=headers
                )
                return int(answer.status_code)

            return ask

        shared.check_two_sessions_on_one_account(asker("dr-stolen"), asker("dr-alone"))
    assert shared.session_trail(events) == shared.SESSION_TRAIL


def test_two_sessions_on_one_account_through_an_async_view() -> None:
    events: list[AuditEvent] = []
    guard = LookupGuard(shared.SESSION_POLICY, clock=lambda: START, audit=events.append)

    def asker(who: str) -> shared.SessionAsk:
        def ask(login: str, nir: str, reason: str | None) -> int:
            headers = {"X-Practitioner": who, "X-Session": f"{who}/{login}"}
            if reason:
                headers["X-Nirguard-Reason"] = reason

            async def send() -> int:
                answer = await AsyncClient().post(
                    "/a", {"nir": nir}, content_type="application/json", headers=headers
                )
                return int(answer.status_code)

            return asyncio.run(send())

        return ask

    with override_settings(ROOT_URLCONF=_session_views(guard), **SESSIONS):
        shared.check_two_sessions_on_one_account(asker("dr-stolen"), asker("dr-alone"))
    assert shared.session_trail(events) == shared.SESSION_TRAIL


def test_the_example_portal_reads_its_x_session_stand_in() -> None:
    shared.check_example_reads_its_x_session_stand_in(_portal)
