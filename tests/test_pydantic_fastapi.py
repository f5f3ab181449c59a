"""NIRStr in FastAPI request bodies: what a 422 answer shows, with and without
``install_exception_handlers``.

What a portal must do (docs/integrations.md): call ``install_exception_handlers(app)``,
whose validation handler drops ``input`` and ``ctx`` from every 422 error. Without it,
FastAPI's own 422 body echoes ``input``: NIRStr's own errors show ``"[redacted]"``, but a
missing field echoes the whole body (valid NIRs included) and a union's other members echo
the raw value, unless the body or the union is wrapped in ``RedactErrors``.
"""

# No "from __future__ import annotations": FastAPI reads the endpoint annotations at runtime.

import warnings
from typing import Annotated, Literal, Optional

import pytest

pytest.importorskip("fastapi", reason="needs the fastapi extra: pip install '.[fastapi]'")

from fastapi import FastAPI
from pydantic import BaseModel

with warnings.catch_warnings():  # recent starlette warns when httpx (not httpx2) backs it
    warnings.filterwarnings("ignore", message=".*httpx2", module="starlette")
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

from nirguard import NIRStr, RedactErrors
from nirguard.integrations.fastapi import install_exception_handlers
from tests.conftest import assert_no_nir

VALID = "185057800608491"
OTHER = "282049741112380"
WRONG_KEY = "185057800608490"
BODY_ONLY = "1850578006084"


class Referral(BaseModel):
    nir: NIRStr
    note: str = ""


class Visit(BaseModel):
    patient: NIRStr
    relatives: list[NIRStr] = []
    guardian: Optional[NIRStr] = None  # noqa: UP045
    carer: NIRStr | None = None
    by_role: dict[str, NIRStr] = {}
    contact: Annotated[NIRStr | Literal["unknown"], RedactErrors()] = "unknown"
    referral: Annotated[Referral | None, RedactErrors()] = None
    age: int


def _app(*, handlers: bool) -> TestClient:
    app = FastAPI()
    if handlers:
        install_exception_handlers(app)

    @app.post("/visit")
    async def visit(body: Visit) -> dict[str, str]:
        return {"patient": body.patient}

    @app.post("/visit-redacted")
    async def visit_redacted(body: Annotated[Visit, RedactErrors()]) -> dict[str, str]:
        return {"patient": body.patient}

    return TestClient(app, raise_server_exceptions=False)


def _bad_bodies(bad: object) -> dict[str, dict[str, object]]:
    """One body per field shape, each with ``bad`` in that field (and a valid patient)."""
    base: dict[str, object] = {"patient": OTHER, "age": 40}
    return {
        "patient": {**base, "patient": bad},
        "relatives": {**base, "relatives": [VALID, bad]},
        "guardian": {**base, "guardian": bad},
        "carer": {**base, "carer": bad},
        "by_role": {**base, "by_role": {"mother": bad}},
        "contact": {**base, "contact": bad},
        "referral": {**base, "referral": {"nir": bad}},
    }


BAD = [WRONG_KEY, BODY_ONLY, "1 85 05 78 006 084 90", int(VALID)]


def _check_clean(response: object, *raw: object) -> None:
    text = response.text  # type: ignore[attr-defined]
    assert response.status_code == 422, text  # type: ignore[attr-defined]
    assert_no_nir(text, VALID, OTHER)
    for value in raw:
        assert str(value) not in text
        assert str(value).replace(" ", "")[:13] not in text


def test_the_valid_body_goes_through_and_the_response_has_the_number() -> None:
    client = _app(handlers=True)
    response = client.post("/visit", json={"patient": "1 85 05 78 006 084 91", "age": 3})
    assert response.status_code == 200
    assert response.json() == {"patient": VALID}


@pytest.mark.parametrize("path", ["/visit", "/visit-redacted"])
@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_with_the_handlers_no_422_shows_a_nir(bad: object, path: str) -> None:
    client = _app(handlers=True)
    for field, body in _bad_bodies(bad).items():
        response = client.post(path, json=body)
        _check_clean(response, bad)
        assert response.json()["detail"], field
        assert all("input" not in e and "ctx" not in e for e in response.json()["detail"])
    missing_age = client.post(path, json={"patient": VALID, "relatives": [OTHER]})
    _check_clean(missing_age)
    assert missing_age.json()["detail"][0]["type"] == "missing"


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_without_the_handlers_nirstr_errors_are_still_redacted(bad: object) -> None:
    client = _app(handlers=False)
    for field, body in _bad_bodies(bad).items():
        response = client.post("/visit", json=body)
        _check_clean(response, bad)
        inputs = [e.get("input") for e in response.json()["detail"]]
        assert "[redacted]" in inputs, field


def test_without_the_handlers_a_missing_field_echoes_the_body_unless_redacted() -> None:
    # FastAPI's own 422 shows the error's input: for a missing field, the whole body.
    client = _app(handlers=False)
    body = {"patient": VALID, "relatives": [OTHER]}
    leaky = client.post("/visit", json=body)
    assert leaky.status_code == 422
    assert VALID in leaky.text  # why a portal must install the handlers (or use RedactErrors)
    redacted = client.post("/visit-redacted", json=body)
    _check_clean(redacted)
    assert redacted.json()["detail"][0]["type"] == "missing"
    assert redacted.json()["detail"][0]["loc"] == ["body", "age"]
