"""FastAPI / Starlette integration, through the example portal and the framework's test client."""

# No "from __future__ import annotations" here: FastAPI reads the endpoint annotations at
# runtime, and those refer to names local to the tests.

import logging
import warnings
from pathlib import Path
from typing import Annotated, Any

import pytest

pytest.importorskip("fastapi", reason="needs the fastapi extra: pip install nirguard[fastapi]")

from fastapi import Body, Depends, FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

with warnings.catch_warnings():  # recent starlette warns when httpx (not httpx2) backs it
    warnings.filterwarnings("ignore", message=".*httpx2", module="starlette")
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

from nirguard import LookupGuard, QuotaPolicy, SecretKey
from nirguard.errors import GuardUnavailable, QuotaExceeded
from nirguard.integrations.fastapi import install_exception_handlers, lookup_dependency
from nirguard.nir import format as format_nir
from tests.example_helpers import load_example

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
START = 1_800_000_000.0


portal = load_example("fastapi_portal")
REGISTRY = portal.build_registry()
NIRS = sorted(REGISTRY)


def _client(policy: QuotaPolicy, *, storage: str = "memory://") -> TestClient:
    app = portal.create_app(
        storage=storage,
        key=SecretKey(bytes(range(32)), "test"),
        policy=policy,
        clock=lambda: START,
        registry=REGISTRY,
    )
    return TestClient(app, raise_server_exceptions=False)


def _ask(client: TestClient, practitioner: str, nir: object) -> Any:
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
    texts = [r.text for r in responses] + [str(dict(r.headers)) for r in responses]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.args) for record in caplog.records]
    for text in texts:
        for spelling in spellings:
            assert spelling not in text


def test_allowed_lookup_returns_the_identity(captured_logs: pytest.LogCaptureFixture) -> None:
    client = _client(QuotaPolicy.only(lookups="10/hour"))
    response = _ask(client, "dr-a", format_nir(NIRS[0]))
    assert response.status_code == 200
    assert response.json() == REGISTRY[NIRS[0]]
    _assert_no_nir([NIRS[0]], [response], captured_logs)


def test_unknown_patient_is_a_404_problem() -> None:
    client = _client(QuotaPolicy.only(lookups="10/hour"))
    unknown = next(n for n in portal.build_registry(seed=99, size=50) if n not in REGISTRY)
    response = _ask(client, "dr-a", unknown)
    assert response.status_code == 404
    assert unknown not in response.text


def test_invalid_nir_is_422(captured_logs: pytest.LogCaptureFixture) -> None:
    client = _client(QuotaPolicy.only(lookups="10/hour"))
    bad = _spoiled(NIRS[1])
    response = _ask(client, "dr-a", bad)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:nirguard:problem:invalid_nir"
    assert body["reason"] == "key"
    missing = client.post("/infopatient", json={}, headers={"X-Practitioner": "dr-a"})
    assert missing.status_code == 422
    _assert_no_nir([bad, NIRS[1]], [response, missing], captured_logs)


def test_quota_gives_exactly_q_answers_then_429_with_retry_after(
    captured_logs: pytest.LogCaptureFixture,
) -> None:
    client = _client(QuotaPolicy.only(lookups="3/hour"))
    responses = [_ask(client, "dr-q", n) for n in NIRS[:6]]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429, 429]
    for denied in responses[3:]:
        assert denied.headers["content-type"] == "application/problem+json"
        assert denied.json()["code"] == "quota_exceeded"
        retry = int(denied.headers["retry-after"])
        assert 1 <= retry <= 3600
        assert denied.json()["retry_after"] == retry
    # another practitioner is not affected
    assert _ask(client, "dr-other", NIRS[0]).status_code == 200
    _assert_no_nir(NIRS[:6], responses, captured_logs)


def test_lockout_after_invalid_numbers_is_403(captured_logs: pytest.LogCaptureFixture) -> None:
    client = _client(QuotaPolicy.only(invalid_nirs="2/hour", lockout="1 hour"))
    bad = [_spoiled(n) for n in NIRS[:3]]
    statuses = [_ask(client, "dr-l", b).status_code for b in bad]
    assert statuses == [422, 422, 429]
    locked = _ask(client, "dr-l", NIRS[5])
    assert locked.status_code == 403
    assert locked.json()["code"] == "locked"
    assert 1 <= int(locked.headers["retry-after"]) <= 3600
    assert _ask(client, "dr-fine", NIRS[5]).status_code == 200
    _assert_no_nir(bad + NIRS[:6], [locked], captured_logs)


def test_unreachable_store_is_503_and_fails_closed(captured_logs: pytest.LogCaptureFixture) -> None:
    client = _client(QuotaPolicy.only(lookups="10/hour"), storage=UNREACHABLE_REDIS)
    response = _ask(client, "dr-a", NIRS[0])
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert "127.0.0.1" not in response.text
    _assert_no_nir([NIRS[0]], [response], captured_logs)


def test_missing_practitioner_is_401() -> None:
    client = _client(QuotaPolicy.only(lookups="10/hour"))
    response = client.post("/infopatient", json={"nir": NIRS[0]})
    assert response.status_code == 401


# -- the integration pieces on their own -------------------------------------------------------


class _AsyncOnlyLookup:
    def __init__(self, nir: str) -> None:
        self.nir = nir

    def record(self, result: Any) -> Any:
        return result


class _AsyncOnlyGuard:
    """Supports only ``async with guard.lookup()``: any sync use would fail the test."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def lookup(self, practitioner: str, nir: object, *, is_miss: Any = None) -> Any:
        guard = self

        class _Ctx:
            async def __aenter__(self) -> _AsyncOnlyLookup:
                guard.calls.append((practitioner, nir))
                if practitioner == "over":
                    raise QuotaExceeded("lookups", retry_after=0.4)
                return _AsyncOnlyLookup(str(nir))

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Ctx()


def test_guarded_lookup_uses_the_async_guard_and_path_parameters() -> None:
    guard = _AsyncOnlyGuard()
    ran: list[str] = []

    async def who(request: Request) -> str:
        return request.headers["X-Practitioner"]

    app = FastAPI()
    install_exception_handlers(app)
    by_path = lookup_dependency(guard, practitioner=who, nir="nir")

    @app.get("/p/{nir}")
    async def endpoint(lookup: Annotated[Any, Depends(by_path)]) -> dict[str, str]:
        ran.append(lookup.nir)
        return {"ok": "yes"}

    client = TestClient(app)
    assert client.get("/p/abc", headers={"X-Practitioner": "dr"}).status_code == 200
    denied = client.get("/p/abc", headers={"X-Practitioner": "over"})
    assert denied.status_code == 429
    assert denied.headers["retry-after"] == "1"
    assert guard.calls == [("dr", "abc"), ("over", "abc")]
    assert ran == ["abc"]  # the endpoint never ran on the denial


class LookupBody(BaseModel):
    nir: str


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
    statuses = [
        client.post(
            "/infopatient", json={"nir": NIRS[i]}, headers={"X-Practitioner": "dr-p"}
        ).status_code
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert calls == NIRS[:2]
    bad = client.post("/infopatient", json={"nir": "12"}, headers={"X-Practitioner": "dr-p2"})
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


def test_install_exception_handlers_refuses_non_apps() -> None:
    with pytest.raises(TypeError):
        install_exception_handlers(object())
