"""nirguard.http: problem details for every nirguard exception."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from nirguard.errors import (
    EnumerationSuspected,
    GuardUnavailable,
    InvalidKey,
    InvalidNIR,
    InvalidToken,
    LookupDenied,
    NirguardError,
    PolicyError,
    PractitionerLocked,
    QuotaExceeded,
)
from nirguard.http import (
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPE_PREFIX,
    PROBLEMS,
    Problem,
    problem_for,
    problem_json,
)

# A syntactically valid NIR (key 91), used only to check that it never leaks.
SAMPLE_NIR = "185057800608491"

CASES: list[tuple[NirguardError, int, str]] = [
    (InvalidNIR("key"), 422, "invalid_nir"),
    (InvalidNIR("length"), 422, "invalid_nir"),
    (QuotaExceeded("lookups", retry_after=30), 429, "quota_exceeded"),
    (QuotaExceeded("distinct_patients", retry_after=3600), 429, "quota_exceeded"),
    (QuotaExceeded("invalid_nirs"), 429, "quota_exceeded"),
    (PractitionerLocked(retry_after=120.5), 403, "locked"),
    (PractitionerLocked(), 403, "locked"),
    (EnumerationSuspected("cohort", retry_after=3600), 403, "locked"),
    (GuardUnavailable(), 503, "unavailable"),
    (LookupDenied(retry_after=5), 403, "denied"),
    (InvalidToken(), 500, "internal_error"),
    (InvalidKey(), 500, "internal_error"),
    (PolicyError(), 500, "internal_error"),
    (NirguardError(), 500, "internal_error"),
]


@pytest.mark.parametrize(("exc", "status", "code"), CASES, ids=lambda v: repr(v)[:40])
def test_status_type_and_code(exc: NirguardError, status: int, code: str) -> None:
    problem = problem_for(exc)
    assert isinstance(problem, Problem)
    assert problem.status == status
    assert problem.body["status"] == status
    assert problem.body["code"] == code
    assert problem.body["type"] == PROBLEM_TYPE_PREFIX + code
    assert isinstance(problem.body["title"], str) and problem.body["title"]
    assert problem.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert problem.headers["Cache-Control"] == "no-store"
    decoded = json.loads(problem_json(problem))
    assert decoded == problem.body


def test_problem_types_are_unique_and_documented() -> None:
    codes = [p.code for p in PROBLEMS]
    assert len(codes) == len(set(codes))
    produced = {problem_for(exc).body["code"] for exc, _, _ in CASES}
    assert produced == set(codes)
    for kind in PROBLEMS:
        assert kind.type == f"urn:nirguard:problem:{kind.code}"


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(0.2, "1"), (0, "1"), (59.0, "59"), (59.01, "60"), (3600, "3600"), (86399.5, "86400")],
)
def test_retry_after_is_integer_seconds_rounded_up(retry_after: float, header: str) -> None:
    for exc in (
        QuotaExceeded("lookups", retry_after=retry_after),
        PractitionerLocked(retry_after=retry_after),
        GuardUnavailable(retry_after=retry_after),
    ):
        problem = problem_for(exc)
        assert problem.headers["Retry-After"] == header
        assert problem.body["retry_after"] == int(header)
        assert int(header) >= retry_after


@pytest.mark.parametrize("retry_after", [None, math.inf, math.nan])
def test_no_retry_after_when_unknown(retry_after: float | None) -> None:
    for exc in (
        QuotaExceeded("lookups", retry_after=retry_after),
        PractitionerLocked(retry_after=retry_after),
        GuardUnavailable(retry_after=retry_after),
    ):
        problem = problem_for(exc)
        assert "Retry-After" not in problem.headers
        assert "retry_after" not in problem.body


def test_quota_name_is_not_revealed() -> None:
    bodies = {
        problem_json(problem_for(QuotaExceeded(name, retry_after=60)))
        for name in ("lookups", "distinct_patients", "invalid_nirs", "misses", "portal")
    }
    assert len(bodies) == 1
    body = bodies.pop().decode()
    for name in ("lookups", "distinct", "invalid_nirs", "misses", "portal"):
        assert name not in body


def test_enumeration_signal_and_lock_reason_are_not_revealed() -> None:
    suspected = problem_for(EnumerationSuspected("miss_ratio", retry_after=60))
    locked = problem_for(PractitionerLocked(retry_after=60))
    assert problem_json(suspected) == problem_json(locked)
    assert suspected.headers == locked.headers
    text = problem_json(suspected).decode()
    assert "miss_ratio" not in text and "cohort" not in text and "suspect" not in text


def test_invalid_nir_says_why_with_a_fixed_detail() -> None:
    problem = problem_for(InvalidNIR("key"))
    assert problem.body["reason"] == "key"
    assert problem.body["detail"] == str(InvalidNIR("key"))
    assert "Retry-After" not in problem.headers
    for code in InvalidNIR.codes:
        assert problem_for(InvalidNIR(code)).body["reason"] == code


def test_messages_of_other_errors_are_never_echoed() -> None:
    # A careless raise elsewhere puts a NIR in a message: the response must not carry it.
    for exc in (
        NirguardError(f"failed for {SAMPLE_NIR}"),
        PolicyError(f"bad policy {SAMPLE_NIR}"),
        LookupDenied(f"denied {SAMPLE_NIR}", retry_after=1),
    ):
        problem = problem_for(exc)
        raw = problem_json(problem).decode() + json.dumps(problem.headers)
        assert SAMPLE_NIR not in raw
        assert "failed" not in raw and "policy" not in raw.lower()


def test_only_nirguard_errors_are_accepted() -> None:
    with pytest.raises(TypeError):
        problem_for(ValueError(SAMPLE_NIR))  # type: ignore[arg-type]


def test_problem_json_is_compact_utf8() -> None:
    raw = problem_json(problem_for(GuardUnavailable(retry_after=2)))
    assert raw.startswith(b'{"type":"urn:nirguard:problem:unavailable"')
    assert b" " not in raw.replace(b"Lookup guard unavailable", b"")
    raw.decode("utf-8")


def test_import_nirguard_imports_no_framework_or_redis_client() -> None:
    code = (
        "import sys, nirguard, nirguard.http, nirguard.integrations, nirguard.audit_fhir\n"
        "heavy = ('fastapi', 'starlette', 'flask', 'django', 'redis', 'coredis', 'uvicorn',\n"
        "         'fhir', 'fhir_core')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
