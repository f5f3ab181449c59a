"""The audit trail's JSON formatted directly (``nirguard._audit_json``) is the model's
JSON, character for character, and refuses what the model refuses; a batch with one
event that cannot be written still writes the others."""

from __future__ import annotations

import json
import string
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from nirguard import AuditEvent, LookupGuard, QuotaPolicy
from nirguard._audit_json import fast_json, whole_seconds
from nirguard._names import OUTCOMES
from nirguard.audit import event_json
from nirguard.reasons import ReasonCode
from nirguard.testing import NIRGenerator

NIRS = NIRGenerator(seed=23).many(5)
#: How the model refuses an event: a field it does not accept, a text it cannot write.
REFUSALS = (ValidationError, PydanticSerializationError)

#: Texts as a portal may hand them over: plain ids, NIR-shaped runs, quotes, backslashes,
#: control characters, non-ASCII letters, lone surrogates.
texts = st.one_of(
    st.text(string.ascii_letters + string.digits + "-_.@ ", max_size=30),
    st.text(max_size=20),
    st.sampled_from([*NIRS, "dr-" + NIRS[0], 'a"b\\c', "x\ud800y", "é\u2028\x7f", ""]),
)
pseudonyms = st.one_of(
    st.none(),
    st.from_regex(r"k[0-9]:[0-9a-f]{32}", fullmatch=True),
    st.sampled_from(NIRS),
    texts,
)
numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**12), 10**12),
    st.booleans(),
)
fields = st.fixed_dictionaries(
    {
        "time": st.floats(0, 4e9),
        "practitioner": texts,
        "outcome": st.one_of(st.sampled_from(sorted(OUTCOMES)), texts),
    },
    optional={
        "patient": pseudonyms,
        "quota": st.none() | texts,
        "retry_after": numbers,
        "cohort": pseudonyms,
        "kind": st.none() | texts,
        "reason": st.none() | st.sampled_from(list(ReasonCode)),
        "signals": st.lists(texts, max_size=3).map(tuple),
        "evidence": st.none() | st.dictionaries(texts, st.floats(-1e6, 1e6), max_size=3),
        "case": st.none() | texts,
        "actor": st.none() | texts,
        "note": st.none() | texts,
    },
)


def _model_json(event: dict[str, Any]) -> str:
    values = dict(event, time=datetime.fromtimestamp(event["time"], tz=timezone.utc))
    return AuditEvent(**values).model_dump_json()


@settings(max_examples=600, deadline=None)
@given(fields)
def test_the_direct_json_is_the_models_json_or_a_refusal(event: dict[str, Any]) -> None:
    try:
        expected: str | Exception = _model_json(event)
    except REFUSALS as exc:
        expected = exc
    try:
        got: str | Exception = event_json(**event)
    except REFUSALS as exc:
        got = exc
    if isinstance(expected, Exception):
        assert type(got) is type(expected)
    else:
        assert got == expected


@settings(max_examples=300, deadline=None)
@given(fields)
def test_what_the_direct_path_formats_is_the_models_json(event: dict[str, Any]) -> None:
    event.pop("evidence", None)
    args = {k: v for k, v in event.items() if k not in ("time", "practitioner", "outcome")}
    fast = fast_json(
        event["time"],
        event["practitioner"],
        event["outcome"],
        **{
            name: args.get(name, () if name == "signals" else None)
            for name in (
                "patient",
                "quota",
                "retry_after",
                "cohort",
                "kind",
                "reason",
                "signals",
                "case",
                "actor",
                "note",
            )
        },
    )
    if fast is not None:  # the direct path took it: the model agrees, and never refuses it
        assert fast == _model_json(event)


def test_the_common_lookup_event_takes_the_direct_path() -> None:
    line = fast_json(
        0.25, "dr-martin", "allowed", "k1:" + "ab" * 16, None, None, "k1:" + "cd" * 16,
        "gp", None, ("hot_cohort",), None, None, None,
    )  # fmt: skip
    assert line is not None
    assert json.loads(line)["signals"] == ["hot_cohort"]


def test_a_nir_as_a_pseudonym_is_refused_by_the_direct_path_too() -> None:
    with pytest.raises(ValidationError) as caught:
        event_json(0.0, "dr", "allowed", patient=NIRS[0])
    assert NIRS[0] not in str(caught.value)


def test_one_event_that_cannot_be_written_costs_no_other(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    guard = LookupGuard(QuotaPolicy(), audit=str(path))
    reports = guard._path.reports
    said = type("Said", (), {})
    good, bad = said(), said()
    for item, patient in ((good, "k1:" + "ab" * 16), (bad, NIRS[1])):
        item.practitioner, item.decided, item.patient = "dr", 0.0, patient
        item.cohort = item.kind = item.reason = item.case = None
    reports.audit(good, "allowed")  # type: ignore[arg-type]
    reports.audit(bad, "allowed")  # type: ignore[arg-type]
    reports.audit(good, "miss")  # type: ignore[arg-type]
    assert guard.flush(5)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["outcome"] for line in lines] == ["allowed", "miss"]
    assert NIRS[1] not in path.read_text()
    guard.close()


#: The text fields the model masks (NIR-shaped runs), in fast_json's argument order.
MASKED_FIELDS = ("practitioner", "quota", "kind", "case", "actor", "note")


def _fast(**fields: Any) -> str | None:
    """``fast_json`` with every field named (``None``/``()`` unless given)."""
    names = ("time", "practitioner", "outcome", "patient", "quota", "retry_after", "cohort")
    rest = ("kind", "reason", "signals", "case", "actor", "note")
    values = {"time": 0.0, "practitioner": "dr", "outcome": "denied", "signals": (), **fields}
    return fast_json(*(values.get(name) for name in names + rest))  # type: ignore[arg-type]


@pytest.mark.parametrize("field", MASKED_FIELDS)
def test_a_nir_in_any_text_field_is_masked_on_the_direct_path(field: str) -> None:
    """Each free-text field is masked by the direct path itself (not only by the model):
    its line holds no NIR and is the model's line."""
    for _ in range(2):  # the second time from the cache of masked texts
        line = _fast(**{field: "dr-" + NIRS[1]})
        assert line is not None
        assert NIRS[1] not in line and NIRS[1][:13] not in line
        assert line == _model_json({"time": 0.0, "practitioner": "dr", "outcome": "denied",
                                    field: "dr-" + NIRS[1]})  # fmt: skip


def test_a_refusal_with_a_reason_and_a_note_to_escape_takes_the_direct_path() -> None:
    """A 428's event (a float ``retry_after``, a reason code, a note the JSON must escape)
    is formatted directly, twice (cached texts), as the model formats it."""
    event: dict[str, Any] = {
        "time": 1_800_000_000.5,
        "practitioner": "dr-martin",
        "outcome": "reason_required",
        "quota": "distinct_patients",
        "retry_after": 59.9997,
        "reason": ReasonCode.ETREAT,
        "note": 'said "urgent"\\\n\ttwice',
    }
    for _ in range(2):
        line = _fast(**event)
        assert line is not None
        assert line == _model_json(event)
        assert json.loads(line)["retry_after"] == 60


def test_ten_years_is_still_a_retry_after_longer_is_none() -> None:
    ten_years = 10 * 365 * 86400
    assert whole_seconds(float(ten_years)) == ten_years
    assert whole_seconds(ten_years + 1.0) is None
    assert whole_seconds(float("inf")) is None
