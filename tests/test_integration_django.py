"""Django integration, through the example portal and Django's test client."""

from __future__ import annotations

import asyncio
import logging
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("django", reason="needs the django extra: pip install nirguard[django]")

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View

from nirguard import QuotaPolicy, SecretKey
from nirguard.errors import GuardUnavailable, PractitionerLocked, QuotaExceeded
from nirguard.integrations.django import (
    NirguardMiddleware,
    guarded_view,
    nirguard_problems,
)
from nirguard.nir import format as format_nir
from tests.example_helpers import load_example

portal = load_example("django_portal")

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
START = 1_800_000_000.0


REGISTRY = portal.build_registry()
NIRS = sorted(REGISTRY)


def _urlconf(urlpatterns: list[Any]) -> ModuleType:
    """A throwaway URLconf module for ROOT_URLCONF."""
    module = ModuleType("nirguard_test_urls")
    module.urlpatterns = urlpatterns  # type: ignore[attr-defined]
    return module


class _Portal:
    """A Django test client bound to a fresh guard through ROOT_URLCONF."""

    def __init__(self, policy: QuotaPolicy, storage: str = "memory://") -> None:
        guard = portal.create_guard(
            storage=storage,
            key=SecretKey(bytes(range(32)), "test"),
            policy=policy,
            clock=lambda: START,
        )
        self.urlconf = _urlconf(portal.make_urlpatterns(guard, REGISTRY))
        self.client = Client()

    def ask(self, practitioner: str, nir: object) -> Any:
        with override_settings(ROOT_URLCONF=self.urlconf):
            return self.client.post(
                "/infopatient",
                {"nir": nir},
                content_type="application/json",
                headers={"X-Practitioner": practitioner},
            )


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
    texts = [r.content.decode() for r in responses] + [str(dict(r.headers)) for r in responses]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.args) for record in caplog.records]
    for text in texts:
        for spelling in spellings:
            assert spelling not in text


def test_allowed_lookup_returns_the_identity(captured_logs: pytest.LogCaptureFixture) -> None:
    site = _Portal(QuotaPolicy.only(lookups="10/hour"))
    response = site.ask("dr-a", format_nir(NIRS[0]))
    assert response.status_code == 200
    assert response.json() == REGISTRY[NIRS[0]]
    _assert_no_nir([NIRS[0]], [response], captured_logs)


def test_form_field_and_unknown_patient() -> None:
    site = _Portal(QuotaPolicy.only(lookups="10/hour"))
    unknown = next(n for n in portal.build_registry(seed=99, size=50) if n not in REGISTRY)
    with override_settings(ROOT_URLCONF=site.urlconf):
        response = site.client.post(
            "/infopatient", {"nir": unknown}, headers={"X-Practitioner": "dr-a"}
        )
    assert response.status_code == 404
    assert unknown not in response.content.decode()


def test_invalid_nir_is_422(captured_logs: pytest.LogCaptureFixture) -> None:
    site = _Portal(QuotaPolicy.only(lookups="10/hour"))
    bad = _spoiled(NIRS[1])
    response = site.ask("dr-a", bad)
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:nirguard:problem:invalid_nir"
    assert body["reason"] == "key"
    _assert_no_nir([bad, NIRS[1]], [response], captured_logs)


def test_quota_gives_exactly_q_answers_then_429_with_retry_after(
    captured_logs: pytest.LogCaptureFixture,
) -> None:
    site = _Portal(QuotaPolicy.only(lookups="3/hour"))
    responses = [site.ask("dr-q", n) for n in NIRS[:6]]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429, 429]
    for denied in responses[3:]:
        assert denied.json()["code"] == "quota_exceeded"
        retry = int(denied["Retry-After"])
        assert 1 <= retry <= 3600
        assert denied.json()["retry_after"] == retry
    assert site.ask("dr-other", NIRS[0]).status_code == 200
    _assert_no_nir(NIRS[:6], responses, captured_logs)


def test_lockout_after_invalid_numbers_is_403(captured_logs: pytest.LogCaptureFixture) -> None:
    site = _Portal(QuotaPolicy.only(invalid_nirs="2/hour", lockout="1 hour"))
    bad = [_spoiled(n) for n in NIRS[:3]]
    assert [site.ask("dr-l", b).status_code for b in bad] == [422, 422, 429]
    locked = site.ask("dr-l", NIRS[5])
    assert locked.status_code == 403
    assert locked.json()["code"] == "locked"
    assert 1 <= int(locked["Retry-After"]) <= 3600
    assert site.ask("dr-fine", NIRS[5]).status_code == 200
    _assert_no_nir(bad + NIRS[:6], [locked], captured_logs)


def test_unreachable_store_is_503_and_fails_closed(captured_logs: pytest.LogCaptureFixture) -> None:
    site = _Portal(QuotaPolicy.only(lookups="10/hour"), storage=UNREACHABLE_REDIS)
    response = site.ask("dr-a", NIRS[0])
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert "127.0.0.1" not in response.content.decode()
    _assert_no_nir([NIRS[0]], [response], captured_logs)


def test_missing_practitioner_is_401() -> None:
    site = _Portal(QuotaPolicy.only(lookups="10/hour"))
    with override_settings(ROOT_URLCONF=site.urlconf):
        response = site.client.post(
            "/infopatient", {"nir": NIRS[0]}, content_type="application/json"
        )
    assert response.status_code == 401


# -- the integration pieces on their own -------------------------------------------------------


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

    def lookup(self, practitioner: str, nir: object, *, is_miss: Any = None) -> Any:
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


def _who(request: HttpRequest) -> str:
    return str(request.headers["X-Practitioner"])


def test_guarded_view_sync_async_and_class_based() -> None:
    sync_guard, async_guard = _FakeGuard(sync=True), _FakeGuard(sync=False)
    ran: list[str] = []

    @guarded_view(sync_guard, practitioner=_who, nir="nir")
    def sync_view(request: HttpRequest, nir: str, *, lookup: Any) -> HttpResponse:
        ran.append("sync")
        return JsonResponse({"nir_len": len(lookup.nir)})

    @guarded_view(async_guard, practitioner=_who, nir=lambda request: request.GET.get("n"))
    async def async_view(request: HttpRequest, *, lookup: Any) -> HttpResponse:
        ran.append("async")
        return JsonResponse({"nir_len": len(lookup.nir)})

    class ClassView(View):
        @method_decorator(guarded_view(sync_guard, practitioner=_who))
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
        assert denied.status_code == 429 and denied["Retry-After"] == "30"
        assert (
            client.post("/c", {"nir": "xyz"}, headers={"X-Practitioner": "dr"}).status_code == 200
        )

        async def run_async() -> list[int]:
            aclient = AsyncClient()
            ok = await aclient.get("/a?n=abcd", headers={"X-Practitioner": "dr"})
            no = await aclient.get("/a?n=abcd", headers={"X-Practitioner": "over"})
            return [ok.status_code, no.status_code]

        assert asyncio.run(run_async()) == [200, 429]
    assert sync_guard.calls == [("dr", "abc"), ("over", "abc"), ("dr", "xyz")]
    assert async_guard.calls == [("dr", "abcd"), ("over", "abcd")]
    assert ran == ["sync", "class", "async"]  # never on a denial


def test_middleware_and_decorator_map_escaping_errors() -> None:
    def locked(request: HttpRequest) -> HttpResponse:
        raise PractitionerLocked(retry_after=7.5)

    async def unavailable(request: HttpRequest) -> HttpResponse:
        raise GuardUnavailable()

    urls = _urlconf(
        [
            path("locked", locked),
            path("unavailable", unavailable),
            path("decorated", nirguard_problems(locked)),
        ]
    )
    middleware = ["nirguard.integrations.django.NirguardMiddleware"]
    with override_settings(ROOT_URLCONF=urls, MIDDLEWARE=middleware):
        response = Client().get("/locked")
        assert response.status_code == 403 and response["Retry-After"] == "8"

        async def run_async() -> Any:
            return await AsyncClient().get("/unavailable")

        response = asyncio.run(run_async())
        assert response.status_code == 503
        assert response["Content-Type"] == "application/problem+json"
    with override_settings(ROOT_URLCONF=urls, MIDDLEWARE=[]):
        assert Client().get("/decorated").status_code == 403
    assert (
        NirguardMiddleware(lambda r: HttpResponse()).process_exception(
            HttpRequest(), ValueError("x")
        )
        is None
    )
