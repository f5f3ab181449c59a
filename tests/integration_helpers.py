"""What the three web-integration test files share.

* The example portals (``examples/*/app.py``) behind one client interface,
  :class:`Portal`, with :func:`fastapi_portal`, :func:`flask_portal` and
  :func:`django_portal` (each imports its framework only when called).
* The leak check over answers and log records, :func:`assert_no_nir`.
* Scenarios every framework must pass the same way (``check_*``): each test
  file calls them with its own portal factory, so a framework that answers
  differently fails under its own name.

Log records: ``tests/conftest.py`` sets the root logger to DEBUG for every test, so
pytest's ``caplog`` sees every record; pass it to :func:`assert_no_nir`.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from nirguard import QuotaPolicy, SecretKey
from nirguard._hooks import flush_all
from nirguard.testing import synthetic_registry
from tests.conftest import assert_no_nir as assert_text_has_no_nir
from tests.example_helpers import load_example

START = 1_800_000_000.0
#: The example portals' audit trail goes to this logger in the tests (a file in production).
AUDIT = logging.getLogger("portal.audit")
KEY = SecretKey(bytes(range(32)), "test")
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
REGISTRY = synthetic_registry()
NIRS = sorted(REGISTRY)
UNKNOWN = [n for n in synthetic_registry(size=60, seed=99) if n not in REGISTRY]
"""Valid numbers of no patient of :data:`REGISTRY`: every lookup of one is a miss."""

# Headers that differ from one answer to the next for reasons of transport, not of nirguard.
TRANSPORT_HEADERS = frozenset({"date", "server", "content-length"})


def spaced(nir: str) -> str:
    """The usual printed grouping, valid number or not."""
    return " ".join((nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:]))


def spoiled(nir: str) -> str:
    """Same number with a wrong control key."""
    return nir[:13] + f"{(int(nir[13:]) + 1) % 100:02d}"


def deep_json(depth: int = 100_000) -> list[bytes]:
    """Bodies nested ``depth`` deep: arrays, objects, and a NIR field holding one."""
    return [
        b"[" * depth + b"]" * depth,
        b'{"a":' * depth + b"1" + b"}" * depth,
        b'{"nir":' + b"[" * depth + b"]" * depth + b"}",
    ]


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, whatever the test client: header names in lower case."""

    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    def signature(self) -> tuple[int, tuple[tuple[str, str], ...], str]:
        """Everything a client can see, but the transport headers."""
        kept = sorted((k, v) for k, v in self.headers.items() if k not in TRANSPORT_HEADERS)
        return self.status, tuple(kept), self.text


class Portal:
    """An example portal behind its framework's test client."""

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        raise NotImplementedError

    def ask(
        self,
        practitioner: str | None,
        nir: object,
        *,
        reason: str | None = None,
        reason_text: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """POST /infopatient {"nir": ...} as ``practitioner``, with a reason when given."""
        sent = dict(headers or {})
        if practitioner is not None:
            sent["X-Practitioner"] = practitioner
        if reason is not None:
            sent["X-Nirguard-Reason"] = reason
        body: dict[str, object] = {"nir": nir}
        if reason_text is not None:
            body["reason_text"] = reason_text
        answer = self.request(
            "POST", "/infopatient", headers=sent, data=json.dumps(body).encode("utf-8")
        )
        flush_all()  # the guard's hooks run off the request path: let them deliver
        return answer

    def post_raw(self, practitioner: str, data: bytes, content_type: str) -> Answer:
        """POST /infopatient with a body as given."""
        answer = self.request(
            "POST",
            "/infopatient",
            headers={"X-Practitioner": practitioner},
            data=data,
            content_type=content_type,
        )
        flush_all()
        return answer

    def reviews(self) -> list[dict[str, Any]]:
        """The portal's break-glass review queue (GET /break-glass)."""
        token = os.environ["PORTAL_REVIEW_TOKEN"]  # the security office's (tests/conftest.py)
        answer = self.request("GET", "/break-glass", headers={"Authorization": f"Bearer {token}"})
        assert answer.status == 200, answer
        reviews: list[dict[str, Any]] = answer.json()
        return reviews


PortalFactory = Callable[..., Portal]


class _FastAPIPortal(Portal):
    def __init__(self, policy: QuotaPolicy, storage: str) -> None:
        with warnings.catch_warnings():  # recent starlette warns when httpx (not httpx2) backs it
            warnings.filterwarnings("ignore", message=".*httpx2")
            from starlette.testclient import TestClient

            app = load_example("fastapi_portal").create_app(
                storage=storage,
                key=KEY,
                policy=policy,
                clock=lambda: START,
                registry=REGISTRY,
                audit=AUDIT,
            )
            self.client = TestClient(app, raise_server_exceptions=False)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        sent = {**(headers or {}), "Content-Type": content_type}
        r = self.client.request(method, path, headers=sent, content=data)
        return Answer(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.text)


class _FlaskPortal(Portal):
    def __init__(self, policy: QuotaPolicy, storage: str) -> None:
        app = load_example("flask_portal").create_app(
            storage=storage,
            key=KEY,
            policy=policy,
            clock=lambda: START,
            registry=REGISTRY,
            audit=AUDIT,
        )
        self.client = app.test_client()

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        r = self.client.open(
            path, method=method, headers=dict(headers or {}), data=data, content_type=content_type
        )
        text = r.get_data(as_text=True)
        return Answer(r.status_code, {k.lower(): v for k, v in r.headers.items()}, text)


class _DjangoPortal(Portal):
    def __init__(self, policy: QuotaPolicy, storage: str) -> None:
        from types import ModuleType

        from django.test import Client

        portal = load_example("django_portal")
        self.reviews_queue = portal.review_queue()
        guard = portal.create_guard(
            storage=storage,
            key=KEY,
            policy=policy,
            clock=lambda: START,
            reviews=self.reviews_queue,
            audit=AUDIT,
        )
        urls = ModuleType("nirguard_test_urls")
        urls.urlpatterns = portal.make_urlpatterns(  # type: ignore[attr-defined]
            guard, REGISTRY, reviews=self.reviews_queue
        )
        self.urlconf = urls
        self.client = Client()

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        from django.test import override_settings

        with override_settings(ROOT_URLCONF=self.urlconf):
            if method == "GET":
                r = self.client.get(path, headers=dict(headers or {}))
            else:
                r = self.client.generic(
                    method, path, data or b"", content_type, headers=dict(headers or {})
                )
        return Answer(
            r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content.decode()
        )


def fastapi_portal(policy: QuotaPolicy, *, storage: str = "memory://") -> Portal:
    """``examples/fastapi_portal`` behind Starlette's test client."""
    return _FastAPIPortal(policy, storage)


def flask_portal(policy: QuotaPolicy, *, storage: str = "memory://") -> Portal:
    """``examples/flask_portal`` behind Flask's test client."""
    return _FlaskPortal(policy, storage)


def django_portal(policy: QuotaPolicy, *, storage: str = "memory://") -> Portal:
    """``examples/django_portal`` behind Django's test client (its own ROOT_URLCONF)."""
    return _DjangoPortal(policy, storage)


def assert_no_nir(
    nirs: Iterable[str], answers: Iterable[Answer], caplog: pytest.LogCaptureFixture
) -> None:
    """No NIR of ``nirs`` (any spelling), nor any valid NIR, in the answers or log records."""
    known = list(nirs)
    spellings = {s for n in known for s in (n, spaced(n), n[:13])}
    texts = [a.text + json.dumps(a.headers) for a in answers]
    texts += [record.getMessage() + repr(record.args) for record in caplog.records]
    for text in texts:
        for spelling in spellings:
            assert spelling not in text
        assert_text_has_no_nir(text)


# -- scenarios every framework passes the same way ----------------------------------------------


def refusals(make: PortalFactory) -> dict[str, Answer]:
    """One answer of each kind of refusal the guard gives, each from a fresh portal."""
    out: dict[str, Answer] = {}
    rate = make(QuotaPolicy.only(lookups="3/minute"))
    answers = [rate.ask("dr-rate", NIRS[0]) for _ in range(4)]
    assert [a.status for a in answers[:3]] == [200, 200, 200]
    out["lookups rate"] = answers[3]

    breadth = make(QuotaPolicy.only(distinct_patients="3/hour", lockout="1 hour"))
    answers = [breadth.ask("dr-wide", n) for n in NIRS[:5]]
    assert [a.status for a in answers[:3]] == [200, 200, 200]
    out["distinct patients breach"] = answers[3]
    out["lockout"] = answers[4]

    detect = make(QuotaPolicy.only(miss_ratio=0.5, miss_ratio_min_lookups=4, lockout="1 hour"))
    answers = [detect.ask("dr-miss", n) for n in UNKNOWN[:5]]
    assert [a.status for a in answers[:4]] == [404, 404, 404, 404]
    out["detection"] = answers[4]

    misses = make(QuotaPolicy.only(misses="2/hour", lockout="1 day"))
    answers = [misses.ask("dr-misses", n) for n in UNKNOWN[:3]]
    out["misses breach"] = answers[2]
    invalid = make(QuotaPolicy.only(invalid_nirs="2/hour", lockout="1 day"))
    answers = [invalid.ask("dr-bad", spoiled(n)) for n in NIRS[:3]]
    assert [a.status for a in answers[:2]] == [422, 422]
    out["invalid numbers breach"] = answers[2]
    return out


def check_refusals_are_indistinguishable(make: PortalFactory) -> None:
    """A rate limit, a breadth breach, a detection and a lockout: one answer, byte for byte."""
    answers = refusals(make)
    signatures = {name: answer.signature() for name, answer in answers.items()}
    first = next(iter(signatures.values()))
    for name, signature in signatures.items():
        assert signature == first, f"{name} answers differently"
    sample = next(iter(answers.values()))
    assert sample.status == 403
    assert "retry-after" not in sample.headers
    assert sample.headers["content-type"] == "application/problem+json"
    assert sample.headers["cache-control"] == "no-store"
    body = sample.json()
    assert body["type"] == "urn:nirguard:problem:denied"
    assert "Do not retry" in body["detail"]
    assert set(body) == {"type", "title", "status", "code", "detail"}
    for word in (
        "lookups",
        "distinct",
        "patients",
        "miss",
        "lock",
        "suspect",
        "quota",
        "retry_after",
    ):
        assert word not in sample.text.lower().replace("do not retry", "")


def check_break_glass_round_trip(make: PortalFactory, caplog: pytest.LogCaptureFixture) -> None:
    """Refused with 428 -> retried with a reason -> allowed, and the hook's review queue shows it."""
    portal = make(
        QuotaPolicy.only(distinct_patients="2/hour", break_glass="3/day", lockout="1 hour")
    )
    assert [portal.ask("dr-bg", n).status for n in NIRS[:2]] == [200, 200]
    asked = portal.ask("dr-bg", NIRS[2])
    assert asked.status == 428
    assert asked.headers["content-type"] == "application/problem+json"
    assert "retry-after" not in asked.headers
    body = asked.json()
    assert body["type"] == "urn:nirguard:problem:reason_required"
    assert body["code"] == "reason_required"
    assert body["reason_header"] == "X-Nirguard-Reason"
    assert body["reason_text_field"] == "reason_text"
    assert {c["code"] for c in body["reason_codes"]} >= {"ETREAT", "TREAT"}
    assert "X-Nirguard-Reason" in body["detail"]
    assert "distinct" not in asked.text and "quota" not in asked.text.lower()
    assert portal.reviews() == []

    unknown_code = portal.ask("dr-bg", NIRS[2], reason="BECAUSE-I-SAY-SO")
    assert unknown_code.status == 422
    assert unknown_code.json()["code"] == "reason_invalid"
    assert "BECAUSE" not in unknown_code.text

    text = "patient unconscious at the emergency desk"
    granted = portal.ask("dr-bg", spaced(NIRS[2]), reason="etreat", reason_text=text)
    assert granted.status == 200, granted
    assert granted.json() == REGISTRY[NIRS[2]]
    again = portal.ask("dr-bg", NIRS[2])  # the grant opens this patient for a while
    assert again.status == 200
    [review] = portal.reviews()
    assert review["practitioner"] == "dr-bg"
    assert review["reason"] == {"code": "ETREAT", "text": text}
    assert review["quota"] == "distinct_patients"
    assert NIRS[2] not in json.dumps(review)
    audited = [
        r.nirguard_audit  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "portal.audit" and hasattr(r, "nirguard_audit")
    ]
    outcomes = [(e["outcome"], e["quota"], e["reason"]) for e in audited]
    assert ("reason_required", "distinct_patients", None) in outcomes
    assert ("denied", "reason", None) in outcomes  # the unknown code, audited
    assert ("break_glass", "distinct_patients", "ETREAT") in outcomes
    assert text not in caplog.text  # the free text goes to the hook only
    assert_no_nir(NIRS[:3], [asked, unknown_code, granted, again], caplog)


def check_deep_json_is_a_bad_body(make: PortalFactory) -> None:
    """JSON nested 100,000 deep is refused like any bad body (422), never a 500."""
    portal = make(QuotaPolicy.only(lookups="100/hour"))
    for body in deep_json():
        answer = portal.post_raw("dr-deep", body, "application/json")
        assert answer.status == 422, (answer.status, answer.text[:200])
        assert answer.json()["type"] == "urn:nirguard:problem:invalid_nir"
    assert portal.ask("dr-deep", NIRS[0]).status == 200


# -- the portal's session id (issue 17) ----------------------------------------------------------

#: The session signal with what a refusal costs: a question while one break-glass a day lasts,
#: then a lockout.
SESSION_POLICY = QuotaPolicy.only(
    session_overlap="30 minutes",
    distinct_patients="1000/day",
    break_glass="1/day",
    lockout="1 hour",
)
#: What the audit trail records of :func:`check_two_sessions_on_one_account`, by quota
#: ``session``: the owner's return asked, answered with a reason, then the bot's lockout.
SESSION_TRAIL = ["reason_required", "break_glass", "lockout"]


def session_trail(events: Iterable[Any]) -> list[str]:
    """The outcomes of the audit events of quota ``session``, in order."""
    return [e.outcome for e in events if e.quota == "session"]


#: One request of the scenario: (which login, NIR, stated reason) -> the answer's status.
SessionAsk = Callable[[str, str, "str | None"], int]


def check_two_sessions_on_one_account(ask: SessionAsk, other: SessionAsk) -> None:
    """The owner and a harvester logged in on one account, each reading new patients.

    ``ask`` sends as the account from the login named ``"owner"`` or ``"bot"``; ``other``
    as another account, from its own one login. A hand-over is let through; the owner's
    return while the bot's session is active is the signal: 428 (a reason lets one
    through), then, the break-glass budget spent, the lockout.
    """
    assert ask("owner", NIRS[0], None) == 200
    assert ask("bot", NIRS[1], None) == 200  # a new login takes over: nothing to see yet
    assert ask("owner", NIRS[2], None) == 428  # the owner is back: two sessions at once
    assert ask("owner", NIRS[2], "TREAT") == 200  # the day's one break-glass
    assert ask("owner", NIRS[2], None) == 200  # a repeat of the granted patient
    assert ask("bot", NIRS[3], None) == 403  # the bot is back: the budget is spent, lockout
    assert ask("owner", NIRS[4], None) == 403  # the account is locked, for both
    assert [other("owner", n, None) for n in NIRS[5:9]] == [200] * 4  # one login: never


def check_example_reads_its_x_session_stand_in(make: PortalFactory) -> None:
    """The example portal reads ``X-Session`` (the login session's stand-in): the scenario of
    :func:`check_two_sessions_on_one_account`; without the header nothing is checked."""
    portal = make(SESSION_POLICY)

    def asker(who: str) -> SessionAsk:
        def ask(login: str, nir: str, reason: str | None) -> int:
            return portal.ask(who, nir, reason=reason, headers={"X-Session": login}).status

        return ask

    check_two_sessions_on_one_account(asker("dr-stolen"), asker("dr-alone"))
    assert [portal.ask("dr-plain", n).status for n in NIRS[:4]] == [200] * 4
