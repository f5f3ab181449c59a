"""nirguard.http: problem details for every nirguard exception, and reading a stated reason."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from nirguard.errors import (
    ConfigurationError,
    EnumerationSuspected,
    GuardUnavailable,
    InvalidKey,
    InvalidNIR,
    InvalidPractitioner,
    InvalidReason,
    InvalidToken,
    LookupDenied,
    NirguardError,
    PolicyError,
    PractitionerLocked,
    QuotaExceeded,
    ReasonRequired,
)
from nirguard.http import (
    DEFAULT_OPTIONS,
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPE_PREFIX,
    PROBLEMS,
    HttpOptions,
    Problem,
    problem_for,
    problem_json,
    stated_reason,
)
from nirguard.reasons import MAX_REASON_TEXT, Reason, ReasonCode

# A syntactically valid NIR (key 91), used only to check that it never leaks.
SAMPLE_NIR = "185057800608491"
REVEAL = HttpOptions(reveal_retry_after=True)

CASES: list[tuple[NirguardError, int, str]] = [
    (InvalidNIR("key"), 422, "invalid_nir"),
    (InvalidNIR("length"), 422, "invalid_nir"),
    (QuotaExceeded("lookups", retry_after=30), 403, "denied"),
    (QuotaExceeded("distinct_patients", retry_after=3600), 403, "denied"),
    (QuotaExceeded("invalid_nirs"), 403, "denied"),
    (PractitionerLocked(retry_after=120.5), 403, "denied"),
    (PractitionerLocked(), 403, "denied"),
    (EnumerationSuspected("cohort", retry_after=3600), 403, "denied"),
    (LookupDenied(retry_after=5), 403, "denied"),
    (ReasonRequired("distinct_patients", retry_after=600), 428, "reason_required"),
    (InvalidReason(), 422, "reason_invalid"),
    (GuardUnavailable(), 503, "unavailable"),
    (InvalidPractitioner(), 500, "internal_error"),
    (InvalidToken(), 500, "internal_error"),
    (InvalidKey(), 500, "internal_error"),
    (PolicyError(), 500, "internal_error"),
    (ConfigurationError(), 500, "internal_error"),
    (NirguardError(), 500, "internal_error"),
]

REVEALED: list[tuple[NirguardError, int, str]] = [
    (QuotaExceeded("lookups", retry_after=30), 429, "quota_exceeded"),
    (QuotaExceeded("invalid_nirs"), 429, "quota_exceeded"),
    (PractitionerLocked(retry_after=120.5), 403, "locked"),
    (EnumerationSuspected("cohort", retry_after=3600), 403, "locked"),
    (LookupDenied(retry_after=5), 403, "denied"),
    (ReasonRequired("cohort"), 428, "reason_required"),
    (InvalidReason(), 422, "reason_invalid"),
    (InvalidPractitioner(), 500, "internal_error"),
    (InvalidNIR("key"), 422, "invalid_nir"),
]

# Every refusal the guard gives for a quota, a detection or a lockout, with the
# retry_after it carries: one minute for a rate window up to a day for a lockout.
REFUSALS: list[LookupDenied] = [
    QuotaExceeded("lookups", retry_after=42.5),
    QuotaExceeded("distinct_patients", retry_after=3600),
    QuotaExceeded("invalid_nirs", retry_after=7200),
    QuotaExceeded("misses", retry_after=None),
    QuotaExceeded("portal", retry_after=1),
    QuotaExceeded("portal_cohort", retry_after=86400),
    PractitionerLocked(retry_after=3599.2),
    PractitionerLocked(retry_after=86400),
    PractitionerLocked(),
    EnumerationSuspected("cohort", retry_after=3600),
    EnumerationSuspected("miss_ratio", retry_after=60),
    EnumerationSuspected("portal_cohort"),
    LookupDenied(retry_after=12),
    LookupDenied(),
]


def _check(problem: Problem, status: int, code: str) -> None:
    assert isinstance(problem, Problem)
    assert problem.status == status
    assert problem.body["status"] == status
    assert problem.body["code"] == code
    assert problem.body["type"] == PROBLEM_TYPE_PREFIX + code
    assert isinstance(problem.body["title"], str) and problem.body["title"]
    assert problem.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert problem.headers["Cache-Control"] == "no-store"
    assert json.loads(problem_json(problem)) == problem.body


@pytest.mark.parametrize(("exc", "status", "code"), CASES, ids=lambda v: repr(v)[:40])
def test_status_type_and_code(exc: NirguardError, status: int, code: str) -> None:
    _check(problem_for(exc), status, code)
    assert problem_for(exc, DEFAULT_OPTIONS) == problem_for(exc)


@pytest.mark.parametrize(("exc", "status", "code"), REVEALED, ids=lambda v: repr(v)[:40])
def test_status_type_and_code_when_revealing(exc: NirguardError, status: int, code: str) -> None:
    _check(problem_for(exc, REVEAL), status, code)


def test_problem_types_are_unique_and_all_produced() -> None:
    codes = [p.code for p in PROBLEMS]
    assert len(codes) == len(set(codes))
    produced = {problem_for(exc).body["code"] for exc, _, _ in CASES}
    produced |= {problem_for(exc, REVEAL).body["code"] for exc, _, _ in REVEALED}
    assert produced == set(codes)
    for kind in PROBLEMS:
        assert kind.type == f"urn:nirguard:problem:{kind.code}"


def test_every_refusal_gives_the_same_answer() -> None:
    answers = {
        (p.status, tuple(p.headers.items()), problem_json(p)) for p in map(problem_for, REFUSALS)
    }
    assert len(answers) == 1
    status, headers, raw = answers.pop()
    assert status == 403
    assert "Retry-After" not in dict(headers)
    body = json.loads(raw)
    assert set(body) == {"type", "title", "status", "code", "detail"}
    assert "retry_after" not in body
    assert "Do not retry it automatically" in body["detail"]
    text = raw.decode().lower()
    for word in ("lookups", "distinct", "invalid_nirs", "misses", "portal", "cohort",
                 "miss_ratio", "lock", "suspect", "quota"):  # fmt: skip
        assert word not in text


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(0.2, "1"), (0, "1"), (59.0, "59"), (59.01, "60"), (3600, "3600"), (86399.5, "86400")],
)
def test_retry_after_is_integer_seconds_rounded_up(retry_after: float, header: str) -> None:
    revealed = (
        QuotaExceeded("lookups", retry_after=retry_after),
        PractitionerLocked(retry_after=retry_after),
        ReasonRequired("cohort", retry_after=retry_after),
        LookupDenied(retry_after=retry_after),
    )
    for problem in [problem_for(GuardUnavailable(retry_after=retry_after))] + [
        problem_for(exc, REVEAL) for exc in revealed
    ]:
        assert problem.headers["Retry-After"] == header
        assert problem.body["retry_after"] == int(header)
        assert int(header) >= retry_after
    for exc in revealed:  # hidden by default
        assert "Retry-After" not in problem_for(exc).headers
        assert "retry_after" not in problem_for(exc).body


@pytest.mark.parametrize("retry_after", [None, math.inf, -math.inf, math.nan, "soon", True])
def test_no_retry_after_when_unknown(retry_after: object) -> None:
    for exc in (
        QuotaExceeded("lookups", retry_after=retry_after),  # type: ignore[arg-type]
        PractitionerLocked(retry_after=retry_after),  # type: ignore[arg-type]
        GuardUnavailable(retry_after=retry_after),  # type: ignore[arg-type]
    ):
        for options in (DEFAULT_OPTIONS, REVEAL):
            problem = problem_for(exc, options)
            assert "Retry-After" not in problem.headers
            assert "retry_after" not in problem.body


def test_input_errors_never_carry_retry_after_even_when_revealing() -> None:
    for exc in (InvalidReason(), InvalidPractitioner()):
        exc.retry_after = 30
        assert "Retry-After" not in problem_for(exc, REVEAL).headers


def test_quota_name_is_not_revealed_even_when_revealing() -> None:
    bodies = {
        problem_json(problem_for(QuotaExceeded(name, retry_after=60), REVEAL))
        for name in ("lookups", "distinct_patients", "invalid_nirs", "misses", "portal")
    }
    assert len(bodies) == 1
    body = bodies.pop().decode()
    for name in ("lookups", "distinct", "invalid_nirs", "misses", "portal"):
        assert name not in body


def test_enumeration_signal_is_not_revealed_even_when_revealing() -> None:
    suspected = problem_for(EnumerationSuspected("miss_ratio", retry_after=60), REVEAL)
    locked = problem_for(PractitionerLocked(retry_after=60), REVEAL)
    assert problem_json(suspected) == problem_json(locked)
    assert suspected.headers == locked.headers
    text = problem_json(suspected).decode()
    assert "miss_ratio" not in text and "cohort" not in text and "suspect" not in text


def test_reason_required_says_how_to_give_a_reason_and_never_which_quota() -> None:
    answers = {
        problem_json(problem_for(ReasonRequired(quota, retry_after=600)))
        for quota in ("distinct_patients", "cohort", "portal_cohort", "hot_cohort")
    }
    assert len(answers) == 1
    problem = problem_for(ReasonRequired("distinct_patients", retry_after=600))
    assert problem.status == 428
    assert "Retry-After" not in problem.headers
    body = problem.body
    assert body["reason_header"] == "X-Nirguard-Reason"
    assert body["reason_text_field"] == "reason_text"
    assert "reason_field" not in body and "reason_text_header" not in body
    assert body["reason_codes"] == [{"code": c.value, "display": c.display} for c in ReasonCode]
    assert body["detail"] == (
        "This patient can be looked up only with a stated reason: resubmit the request with "
        "one of reason_codes in the X-Nirguard-Reason header, and optionally a free-text "
        "explanation in the reason_text body field. The access is recorded and reviewed."
    )
    text = problem_json(problem).decode()
    for word in ("distinct", "cohort", "quota", "patients"):
        assert word not in text


def test_reason_required_follows_the_portal_options() -> None:
    body = problem_for(
        ReasonRequired("cohort"),
        HttpOptions(
            reason_header=None,
            reason_field="why",
            reason_text_header="X-Why",
            reason_text_field=None,
        ),
    ).body
    assert body["reason_field"] == "why" and body["reason_text_header"] == "X-Why"
    assert "reason_header" not in body and "reason_text_field" not in body
    assert body["detail"] == (
        "This patient can be looked up only with a stated reason: resubmit the request with "
        "one of reason_codes in the why body field, and optionally a free-text explanation "
        "in the X-Why header (percent-encoded). The access is recorded and reviewed."
    )
    every_way = problem_for(
        ReasonRequired("cohort"), HttpOptions(reason_field="why", reason_text_header="X-Why")
    ).body["detail"]
    assert "in the X-Why header (percent-encoded) or the reason_text body field." in str(every_way)
    both = problem_for(
        ReasonRequired("cohort"), HttpOptions(reason_field="why", reason_text_field=None)
    ).body
    assert "X-Nirguard-Reason header or in the why body field" in str(both["detail"])
    assert "free-text" not in str(both["detail"])
    nowhere = problem_for(
        ReasonRequired("cohort"), HttpOptions(reason_header=None, reason_text_field=None)
    ).body
    assert set(nowhere) == {"type", "title", "status", "code", "detail"}
    assert nowhere["detail"] == "This patient can be looked up only with a stated reason."


def test_invalid_reason_lists_the_codes_and_echoes_nothing() -> None:
    problem = problem_for(InvalidReason())
    assert problem.status == 422
    assert [c["code"] for c in problem.body["reason_codes"]] == [c.value for c in ReasonCode]  # type: ignore[attr-defined]
    assert problem.body["detail"] == "The stated reason is not one of reason_codes."


def test_invalid_nir_says_why_with_a_fixed_detail() -> None:
    problem = problem_for(InvalidNIR("key"))
    assert problem.body["reason"] == "key"
    assert problem.body["detail"] == str(InvalidNIR("key"))
    assert "Retry-After" not in problem.headers
    for code in InvalidNIR.codes:
        assert problem_for(InvalidNIR(code)).body["reason"] == code
        assert problem_for(InvalidNIR(code)).body["detail"] == str(InvalidNIR(code))
    odd = InvalidNIR("key")
    odd.code = f"made up {SAMPLE_NIR}"
    body = problem_for(odd).body
    assert (body["reason"], body["detail"]) == ("invalid", "invalid NIR")


def test_messages_of_other_errors_are_never_echoed() -> None:
    # A careless raise elsewhere puts a NIR in a message: the response must not carry it.
    for exc in (
        NirguardError(f"failed for {SAMPLE_NIR}"),
        PolicyError(f"bad policy {SAMPLE_NIR}"),
        LookupDenied(f"denied {SAMPLE_NIR}", retry_after=1),
    ):
        for options in (DEFAULT_OPTIONS, REVEAL):
            problem = problem_for(exc, options)
            raw = problem_json(problem).decode() + json.dumps(problem.headers)
            assert SAMPLE_NIR not in raw
            assert "failed" not in raw and "policy" not in raw.lower()


def test_only_nirguard_errors_are_accepted() -> None:
    with pytest.raises(TypeError, match=r"^problem_for\(\) expects a NirguardError$") as caught:
        problem_for(ValueError(SAMPLE_NIR))  # type: ignore[arg-type]
    assert SAMPLE_NIR not in str(caught.value)


def test_problem_json_is_compact_utf8() -> None:
    raw = problem_json(problem_for(GuardUnavailable(retry_after=2)))
    assert raw.startswith(b'{"type":"urn:nirguard:problem:unavailable"')
    assert b" " not in raw.replace(b"Lookup guard unavailable", b"")
    raw.decode("utf-8")


# -- HttpOptions --------------------------------------------------------------------------------


def test_options_defaults_and_of() -> None:
    assert HttpOptions.of(None) is DEFAULT_OPTIONS
    assert HttpOptions() == DEFAULT_OPTIONS
    assert not DEFAULT_OPTIONS.reveal_retry_after
    assert DEFAULT_OPTIONS.reason_header == "X-Nirguard-Reason"
    assert DEFAULT_OPTIONS.reason_text_field == "reason_text"
    assert DEFAULT_OPTIONS.reason_field is None and DEFAULT_OPTIONS.reason_text_header is None
    assert HttpOptions.of(REVEAL) is REVEAL
    assert HttpOptions.of({"reveal_retry_after": True}) == REVEAL
    with pytest.raises(ConfigurationError, match=r"^unknown HttpOptions field$"):
        HttpOptions.of({"reveal": True})
    for bad in ("reveal", 1, ["x"]):
        with pytest.raises(ConfigurationError, match=r"^expected HttpOptions, a dict of"):
            HttpOptions.of(bad)


@pytest.mark.parametrize(
    "fields",
    [
        {"reason_header": "X Reason"},
        {"reason_header": "X-Reason\r\nSet-Cookie: a=b"},
        {"reason_header": ""},
        {"reason_header": 5},
        {"reason_text_header": "Motif:"},
        {"reason_field": "why not"},
        {"reason_field": ""},
        {"reason_field": "x" * 65},
        {"reason_text_field": b"text"},
        {"reveal_retry_after": 1},
        {"reveal_retry_after": "yes"},
    ],
)
def test_options_refuse_bad_names(fields: dict[str, object]) -> None:
    [(name, value)] = fields.items()
    expected = "True or False" if name == "reveal_retry_after" else "name.* or None"
    with pytest.raises(ConfigurationError, match=rf"^{name} must be .*{expected}") as caught:
        HttpOptions(**fields)  # type: ignore[arg-type]
    if isinstance(value, str) and value:
        assert value not in str(caught.value)


def test_options_accept_header_and_field_names() -> None:
    HttpOptions(
        reason_header="X-Break_Glass.Reason~1",
        reason_field="reason.code-1",
        reason_text_header="X-Reason-Text",
        reason_text_field="x" * 64,
    )


# -- stated_reason ------------------------------------------------------------------------------


def _read(
    headers: dict[str, str] | None = None,
    body: dict[str, object] | None = None,
    options: HttpOptions = DEFAULT_OPTIONS,
) -> object:
    sent_headers, sent_body = headers or {}, body or {}
    return stated_reason(options, sent_headers.get, sent_body.get)


def test_no_reason_stated() -> None:
    assert _read() is None
    assert _read({"X-Nirguard-Reason": ""}) is None
    assert _read({"X-Nirguard-Reason": "   "}) is None
    assert _read(body={"reason": "ETREAT", "reason_text": "x"}) is None  # no reason_field set
    assert _read({"X-Nirguard-Reason": "ETREAT"}, options=HttpOptions(reason_header=None)) is None


def test_reason_from_the_header_with_text_from_the_body() -> None:
    assert _read({"X-Nirguard-Reason": " etreat "}) == Reason(ReasonCode.ETREAT)
    stated = _read({"X-Nirguard-Reason": "TREAT"}, {"reason_text": "  suivi post-op  "})
    assert stated == Reason(ReasonCode.TREAT, "suivi post-op")
    assert _read({"X-Nirguard-Reason": "TREAT"}, {"reason_text": ""}) == Reason(ReasonCode.TREAT)


def test_reason_from_the_body_when_the_header_is_absent_or_empty() -> None:
    options = HttpOptions(reason_field="reason")
    assert _read(body={"reason": "COC"}, options=options) == Reason(ReasonCode.COC)
    assert _read({"X-Nirguard-Reason": ""}, {"reason": "COC"}, options) == Reason(ReasonCode.COC)
    both = _read({"X-Nirguard-Reason": "PATRQT"}, {"reason": "COC"}, options)
    assert both == Reason(ReasonCode.PATRQT)  # the header wins
    assert _read(body={"reason": ""}, options=options) is None


def test_reason_text_from_a_percent_encoded_header() -> None:
    options = HttpOptions(reason_text_header="X-Why")
    assert _read({"X-Nirguard-Reason": "ETREAT"}, options=options) == Reason(ReasonCode.ETREAT)
    stated = _read(
        {"X-Nirguard-Reason": "ETREAT", "X-Why": "arr%C3%AAt%20cardiaque"}, options=options
    )
    assert stated == Reason(ReasonCode.ETREAT, "arrêt cardiaque")
    header_wins = _read(
        {"X-Nirguard-Reason": "ETREAT", "X-Why": "a"}, {"reason_text": "b"}, options
    )
    assert header_wins == Reason(ReasonCode.ETREAT, "a")
    falls_back = _read({"X-Nirguard-Reason": "ETREAT", "X-Why": " "}, {"reason_text": "b"}, options)
    assert falls_back == Reason(ReasonCode.ETREAT, "b")


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"X-Nirguard-Reason": "BECAUSE"}, {}),
        ({"X-Nirguard-Reason": SAMPLE_NIR}, {}),
        ({"X-Nirguard-Reason": "E" * 10_000}, {}),
        ({"X-Nirguard-Reason": "ETREAT"}, {"reason_text": 12}),
        ({"X-Nirguard-Reason": "ETREAT"}, {"reason_text": ["a"]}),
    ],
)
def test_an_unreadable_reason_is_refused_by_the_guard_and_never_echoed(
    headers: dict[str, str], body: dict[str, object]
) -> None:
    stated = _read(headers, body)
    assert stated is not None and not isinstance(stated, Reason)
    assert repr(stated) == "<invalid reason>"
    assert SAMPLE_NIR not in repr(stated)
    with pytest.raises(InvalidReason):
        Reason.of(stated)


def test_a_padded_code_is_read_up_to_a_length() -> None:
    assert _read({"X-Nirguard-Reason": " ETREAT".ljust(32)}) == Reason(ReasonCode.ETREAT)
    assert repr(_read({"X-Nirguard-Reason": " ETREAT".ljust(33)})) == "<invalid reason>"


def test_a_non_string_code_from_a_body_is_unreadable() -> None:
    stated = _read(body={"why": 1}, options=HttpOptions(reason_field="why"))
    assert repr(stated) == "<invalid reason>"


def test_long_free_text_is_cut() -> None:
    stated = _read({"X-Nirguard-Reason": "ETREAT"}, {"reason_text": "a" * 100_000})
    assert isinstance(stated, Reason)
    assert stated.text == "a" * MAX_REASON_TEXT


def test_http_module_uses_no_private_name_of_errors() -> None:
    import nirguard.http as http

    assert not any(name.startswith("_NIR") for name in vars(http))


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
