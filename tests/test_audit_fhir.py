"""FHIR AuditEvent records: every outcome validates as FHIR R4 and follows IHE BALP.

Two checks per record:

* the FHIR R4 ``AuditEvent`` model of ``fhir.resources`` (its R4B package: R4B
  kept R4's AuditEvent unchanged; the package's default models are R5);
* the elements that IHE BALP's ``IHE.BasicAudit.Query`` and
  ``IHE.BasicAudit.PatientQuery`` profiles (BALP 1.1.x, FHIR 4.0.1) require,
  written out below from the profiles' differentials, since ``fhir.resources``
  does not read profiles.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import sys
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from nirguard import InvalidNIR, LookupDenied, LookupGuard, Pseudonymiser
from nirguard.audit import REFUSED, WOULD, AuditEvent, Outcome
from nirguard.audit_fhir import (
    BALP_PATIENT_QUERY,
    BALP_QUERY,
    DECISION_EXTENSION,
    FHIR_OUTCOME,
    OUTCOME_SYSTEM,
    FhirAuditSink,
    pseudonym_system,
    to_fhir,
    validate_r4,
)
from nirguard.errors import ConfigurationError
from nirguard.reasons import ACT_REASON_SYSTEM, ReasonCode
from nirguard.testing import valid_nir
from tests.conftest import assert_no_nir
from tests.guard_helpers import KEY, Clock, only

pytest.importorskip("fhir.resources", reason="needs the fhir extra")

from fhir.resources.R4B.auditevent import AuditEvent as R4AuditEvent

OUTCOMES: tuple[str, ...] = typing.get_args(Outcome)
PATIENT = "k2026:17a5e394a6e0cabc0ac4f56e5d056ea6"
COHORT = "k2026:0ee6a7485241dc1a966684bc396c5f4c"
SOURCE = "portal.example.fr"
PURPOSE = "guard"

# The reviewed mapping: nirguard outcome -> FHIR AuditEvent.outcome (R4 code).
EXPECTED_FHIR_OUTCOME = {
    "allowed": "0",
    "miss": "0",
    "break_glass": "0",
    "unguarded": "0",
    "would_deny": "0",
    "would_lock": "0",
    "would_suspect": "0",
    "would_require_reason": "0",
    "invalid": "4",
    "denied": "4",
    "locked": "4",
    "suspected": "4",
    "reason_required": "4",
    "lockout": "4",
    "would_lockout": "0",
    "unlocked": "0",
    "unavailable": "8",
}

# Code systems the BALP profiles fix (by pattern).
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ALL_SEARCH = {"search", "search-type", "search-system"}  # BALP AllSearchVS


def event(outcome: str, *, patient: str | None = PATIENT, **fields: Any) -> AuditEvent:
    return AuditEvent(
        time=1_773_480_413.589793,
        practitioner="10003456789",
        patient=patient,
        outcome=outcome,
        **fields,
    )


def has_coding(concept: dict[str, Any] | None, system: str, code: str) -> bool:
    """patternCodeableConcept: some coding has this system and code."""
    return concept is not None and any(
        c.get("system") == system and c.get("code") == code for c in concept.get("coding", ())
    )


def is_coding(coding: dict[str, Any] | None, system: str, code: str) -> bool:
    """patternCoding: the coding has this system and code."""
    return coding is not None and coding.get("system") == system and coding.get("code") == code


def assert_balp(resource: dict[str, Any], *, with_patient: bool) -> None:
    """The elements BALP's Query / PatientQuery profiles require (outcome aside).

    IHE.BasicAudit.Query (parent AuditEvent):
      type = audit-event-type#rest; subtype 1..*, slice anySearch 1..1 from AllSearchVS;
      action = E; recorded 1..1; outcome 1..1 (pattern 0: checked by the caller);
      agent 2..*, sliced by type: client 1..1 (DCM#110153; who 1..1, network 1..1,
      media 0..0), server 1..1 (DCM#110152; who 1..1, network 1..1, media 0..0),
      user 0..1 (v3-ParticipationType#IRCP; who 1..1, requestor = true, media 0..0,
      network 0..0); source (1..1 in core, observer 1..1);
      entity 1..*, sliced by type: transaction 0..1, query 1..1 (audit-entity-type#2,
      role object-role#24, what 0..0, lifecycle 0..0, query 1..1, detail 0..0).
    IHE.BasicAudit.PatientQuery (parent Query):
      entity 2..*; patient 1..1 (audit-entity-type#1, role object-role#1,
      what 1..1 Reference(Patient)).
    """
    assert resource["resourceType"] == "AuditEvent"
    assert is_coding(resource.get("type"), AUDIT_EVENT_TYPE, "rest")

    subtypes = resource.get("subtype", [])
    assert len(subtypes) >= 1
    searches = [s for s in subtypes if s.get("system") == RESTFUL_INTERACTION]
    assert len(searches) == 1 and searches[0]["code"] in ALL_SEARCH

    assert resource.get("action") == "E"
    assert resource.get("recorded")
    assert resource.get("outcome") in {"0", "4", "8", "12"}

    agents = resource.get("agent", [])
    assert len(agents) >= 2
    clients = [a for a in agents if has_coding(a.get("type"), DCM, "110153")]
    servers = [a for a in agents if has_coding(a.get("type"), DCM, "110152")]
    users = [a for a in agents if has_coding(a.get("type"), PARTICIPATION_TYPE, "IRCP")]
    assert len(clients) == 1 and len(servers) == 1 and len(users) <= 1
    for agent in (*clients, *servers):
        assert agent.get("who") and agent.get("network")
        assert "media" not in agent
    for user in users:
        assert user.get("who")
        assert user.get("requestor") is True
        assert "media" not in user and "network" not in user

    source = resource.get("source")
    assert source and source.get("observer")

    entities = resource.get("entity", [])
    queries = [
        e
        for e in entities
        if is_coding(e.get("type"), ENTITY_TYPE, "2")
        and is_coding(e.get("role"), OBJECT_ROLE, "24")
    ]
    assert len(queries) == 1
    query = queries[0]
    assert query.get("query") and base64.b64decode(query["query"], validate=True)
    for absent in ("what", "lifecycle", "detail"):
        assert absent not in query

    patients = [e for e in entities if is_coding(e.get("type"), ENTITY_TYPE, "1")]
    if with_patient:
        assert len(entities) >= 2
        assert len(patients) == 1
        patient = patients[0]
        assert is_coding(patient.get("role"), OBJECT_ROLE, "1")
        what = patient.get("what")
        assert what and (
            what.get("type") == "Patient" or str(what.get("reference", "")).startswith("Patient/")
        )
    else:
        assert patients == []


def all_text(resource: dict[str, Any]) -> str:
    """The JSON of a resource plus its decoded base64 query, for leak checks."""
    text = json.dumps(resource, ensure_ascii=False)
    for entity in resource.get("entity", []):
        if "query" in entity:
            text += "\n" + base64.b64decode(entity["query"]).decode("utf-8")
    return text


# -- the mapping -------------------------------------------------------------------


def test_every_outcome_is_mapped_as_reviewed() -> None:
    assert set(FHIR_OUTCOME) == set(OUTCOMES)
    assert dict(FHIR_OUTCOME) == EXPECTED_FHIR_OUTCOME
    # Refusals fail, everything else (shadow mode included) ran and succeeded.
    for outcome in OUTCOMES:
        assert (FHIR_OUTCOME[outcome] != "0") == (outcome in REFUSED)
    assert all(FHIR_OUTCOME[would] == "0" for would in WOULD.values())


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("with_patient", [True, False], ids=["patient", "no-patient"])
def test_every_outcome_validates_as_r4_and_follows_balp(outcome: str, with_patient: bool) -> None:
    source_event = event(
        outcome,
        patient=PATIENT if with_patient else None,
        quota="distinct_patients" if outcome in REFUSED or outcome in WOULD.values() else None,
        retry_after=3600.0 if outcome in ("denied", "locked", "would_lock") else None,
        reason=ReasonCode.ETREAT if outcome == "break_glass" else None,
        cohort=COHORT if with_patient else None,
        kind="gp",
        signals=("hot_cohort",),
        evidence={"distinct_patients": 4, "window_s": 86400.0},
    )
    resource = to_fhir(source_event, source=SOURCE, purpose=PURPOSE)

    R4AuditEvent.model_validate(resource)
    validate_r4(resource)
    assert_balp(resource, with_patient=with_patient)
    assert_no_nir(all_text(resource))

    assert resource["outcome"] == EXPECTED_FHIR_OUTCOME[outcome]
    profiles = resource.get("meta", {}).get("profile", [])
    if resource["outcome"] == "0":
        # BALP's profiles fix outcome to success: only successes declare them.
        assert profiles == [BALP_PATIENT_QUERY if with_patient else BALP_QUERY]
    else:
        assert profiles == []
    assert {"system": OUTCOME_SYSTEM, "code": outcome, "display": outcome.replace("_", " ")} in (
        resource["subtype"]
    )


def test_outcome_description_is_fixed_per_outcome() -> None:
    descriptions = {}
    for outcome in OUTCOMES:
        plain = to_fhir(event(outcome), source=SOURCE, purpose=PURPOSE)["outcomeDesc"]
        busy = to_fhir(
            event(outcome, quota="portal_cohort", signals=("hot_cohort",), evidence={"n": 3}),
            source=SOURCE,
            purpose=PURPOSE,
        )["outcomeDesc"]
        assert plain == busy
        descriptions[outcome] = plain
    assert len(set(descriptions.values())) == len(OUTCOMES)
    assert descriptions["denied"] == "Lookup refused: a quota is exhausted"
    assert descriptions["would_lock"].startswith("Lookup allowed in shadow mode")


@pytest.mark.parametrize(
    ("time", "recorded"),
    [
        (0, "1970-01-01T00:00:00.000000Z"),
        ("2026-03-14T10:26:53.5+01:00", "2026-03-14T09:26:53.500000Z"),
        (datetime(2026, 3, 14, 9, 26, 53), "2026-03-14T09:26:53.000000Z"),  # naive: UTC
    ],
)
def test_recorded_is_the_decision_time_in_utc(time: Any, recorded: str) -> None:
    source_event = AuditEvent(time=time, practitioner="p", outcome="allowed")
    resource = to_fhir(source_event, source=SOURCE, purpose=PURPOSE)
    assert resource["recorded"] == recorded
    R4AuditEvent.model_validate(resource)


# -- the patient, the practitioner, the reason ---------------------------------------


def test_patient_is_identified_by_its_pseudonym_in_a_purpose_and_key_system() -> None:
    resource = to_fhir(event("allowed"), source=SOURCE, purpose=PURPOSE)
    patient = resource["entity"][0]
    assert patient["what"] == {
        "type": "Patient",
        "identifier": {"system": "urn:nirguard:pseudonym:v1:guard:k2026", "value": PATIENT},
    }
    query = resource["entity"][1]
    assert base64.b64decode(query["query"]).decode() == query["description"]
    assert PATIENT in query["description"]


def test_pseudonym_matches_the_nir_with_the_key() -> None:
    pseudonymiser = Pseudonymiser(KEY, purpose="guard")
    value = valid_nir(seed=7)
    resource = to_fhir(
        event("allowed", patient=pseudonymiser.pseudonymise(value)),
        source=SOURCE,
        purpose=pseudonymiser.purpose,
    )
    identifier = resource["entity"][0]["what"]["identifier"]
    assert identifier["system"] == pseudonym_system("guard", pseudonymiser.key_ids[0])
    assert pseudonymiser.matches(value, identifier["value"])
    assert_no_nir(all_text(resource), value)


def test_pseudonym_system_encodes_odd_purposes() -> None:
    system = pseudonym_system("export: hôpital A/2026", "k1")
    assert system == "urn:nirguard:pseudonym:v1:export%3A%20h%C3%B4pital%20A/2026:k1"
    resource = to_fhir(event("allowed"), source=SOURCE, purpose="export: hôpital A/2026")
    R4AuditEvent.model_validate(resource)


def test_invalid_without_patient_withholds_the_query() -> None:
    resource = to_fhir(event("invalid", patient=None), source=SOURCE, purpose=PURPOSE)
    assert [e["role"]["code"] for e in resource["entity"]] == ["24"]
    assert resource["entity"][0]["description"] == "Patient?identifier=(withheld)"
    assert resource["outcome"] == "4"
    assert "meta" not in resource


def test_practitioner_is_the_requesting_agent() -> None:
    resource = to_fhir(
        event("allowed"),
        source=SOURCE,
        purpose=PURPOSE,
        practitioner_system="urn:example:rpps",
    )
    user = resource["agent"][0]
    assert user["requestor"] is True
    assert user["who"] == {
        "type": "Practitioner",
        "identifier": {"system": "urn:example:rpps", "value": "10003456789"},
    }
    assert "purposeOfUse" not in user and "purposeOfEvent" not in resource


@pytest.mark.parametrize(
    "practitioner",
    ["", " padded ", "bad\x00id", "x" * 300, "185057800608491", "1 85 05 78 006 084 91"],
    ids=["empty", "padded", "control", "long", "nir", "spaced-nir"],
)
def test_unfit_practitioner_ids_are_masked(practitioner: str) -> None:
    source_event = AuditEvent(time=0, practitioner=practitioner, outcome="invalid")
    resource = to_fhir(source_event, source=SOURCE, purpose=PURPOSE)
    R4AuditEvent.model_validate(resource)
    who = resource["agent"][0]["who"]
    assert who == {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "masked",
            }
        ]
    }
    assert_no_nir(all_text(resource), "185057800608491")


@pytest.mark.parametrize("code", list(ReasonCode))
def test_break_glass_reason_is_the_purpose_of_use(code: ReasonCode) -> None:
    resource = to_fhir(event("break_glass", reason=code), source=SOURCE, purpose=PURPOSE)
    R4AuditEvent.model_validate(resource)
    expected = [
        {"coding": [{"system": ACT_REASON_SYSTEM, "code": code.value, "display": code.display}]}
    ]
    assert resource["agent"][0]["purposeOfUse"] == expected
    assert resource["purposeOfEvent"] == expected
    assert {"system": DCM, "code": "110127", "display": "Emergency Override Started"} in (
        resource["subtype"]
    )
    assert resource["outcome"] == "0"


def test_break_glass_free_text_cannot_reach_the_record() -> None:
    # The audit event has no field for the free text; a Reason's text stays in the hook.
    assert "text" not in AuditEvent.model_fields
    with pytest.raises(ValueError, match="reason"):
        AuditEvent(time=0, practitioner="p", outcome="break_glass", reason="seen today at 10")


# -- the decision extension ----------------------------------------------------------


def decision(resource: dict[str, Any]) -> dict[str, Any]:
    (extension,) = [e for e in resource["extension"] if e["url"] == DECISION_EXTENSION]
    out: dict[str, Any] = {}
    for part in extension["extension"]:
        value = part.get("extension") or next(v for k, v in part.items() if k.startswith("value"))
        if part["url"] == "signal":
            out.setdefault("signal", []).append(value)
        else:
            out[part["url"]] = value
    return out


def test_decision_extension_carries_quota_signals_and_evidence() -> None:
    resource = to_fhir(
        event(
            "would_lock",
            quota="portal_cohort",
            retry_after=3597.857738,
            kind="gp",
            cohort=COHORT,
            signals=("hot_cohort", "miss_ratio"),
            evidence={"new_patients": 12, "share": 0.4},
        ),
        source=SOURCE,
        purpose=PURPOSE,
    )
    assert decision(resource) == {
        "outcome": "would_lock",
        "quota": "portal_cohort",
        "retryAfter": 3598,  # whole seconds, rounded up (AuditEvent.retry_after)
        "kind": "gp",
        "signal": ["hot_cohort", "miss_ratio"],
        "cohort": {"system": "urn:nirguard:pseudonym:v1:guard/cohort:k2026", "value": COHORT},
        "evidence": [
            {"url": "new_patients", "valueDecimal": 12},
            {"url": "share", "valueDecimal": 0.4},
        ],
    }


def test_decision_extension_leaves_out_what_is_not_an_identifier_or_a_number() -> None:
    resource = to_fhir(
        event(
            "locked",
            quota="not a quota name",
            retry_after=float("inf"),
            signals=("ok_signal", "free text here"),
            evidence={"fine": 1, "bad key": 2, "nan": float("nan")},
        ),
        source=SOURCE,
        purpose=PURPOSE,
    )
    R4AuditEvent.model_validate(resource)
    json.dumps(resource, allow_nan=False)
    assert decision(resource) == {
        "outcome": "locked",
        "signal": ["ok_signal"],
        "evidence": [{"url": "fine", "valueDecimal": 1}],
    }


# -- configuration -------------------------------------------------------------------


def test_server_address_and_extra_subtypes() -> None:
    iti78 = {
        "system": "urn:ihe:event-type-code",
        "code": "ITI-78",
        "display": "Mobile Patient Demographics Query",
    }
    resource = to_fhir(
        event("allowed"),
        source=SOURCE,
        purpose=PURPOSE,
        server="https://portal.example.fr/api/patients",
        subtypes=[iti78],
    )
    R4AuditEvent.model_validate(resource)
    assert_balp(resource, with_patient=True)
    assert resource["subtype"][-1] == iti78
    server = resource["agent"][2]
    assert server["network"] == {"address": "https://portal.example.fr/api/patients", "type": "5"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"source": ""},
        {"source": None},
        {"source": "two\nlines"},
        {"purpose": ""},
        {"purpose": 3},
        {"server": ""},
        {"practitioner_system": " x"},
        {"subtypes": {"system": "s", "code": "c"}},
        {"subtypes": [{"system": "s"}]},
        {"subtypes": ["ITI-78"]},
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"source": SOURCE, "purpose": PURPOSE, **kwargs}
    with pytest.raises(ConfigurationError):
        to_fhir(event("allowed"), **arguments)
    with pytest.raises(ConfigurationError):
        FhirAuditSink(lambda r: None, **arguments)


def test_each_record_is_a_fresh_dict() -> None:
    sink_records: list[dict[str, Any]] = []
    sink = FhirAuditSink(sink_records.append, source=SOURCE, purpose=PURPOSE)
    sink(event("allowed"))
    sink_records[0]["type"]["code"] = "tampered"
    sink_records[0]["agent"][1]["who"]["extension"].clear()
    sink_records[0]["source"]["site"] = "tampered"
    sink(event("allowed"))
    assert sink_records[1]["type"]["code"] == "rest"
    assert sink_records[1]["agent"][1]["who"]["extension"]
    assert sink_records[1]["source"]["site"] == SOURCE


# -- the sink ------------------------------------------------------------------------


def test_sink_writes_json_lines_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "audit.fhir.jsonl"
    sink = FhirAuditSink(path, source=SOURCE, purpose=PURPOSE)
    for outcome in OUTCOMES:
        sink(event(outcome))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(OUTCOMES)
    for line in lines:
        resource = json.loads(line)
        assert line == json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
        R4AuditEvent.model_validate(resource)
    assert repr(sink) == f"FhirAuditSink({str(path)!r})"
    assert (
        repr(FhirAuditSink(print, source=SOURCE, purpose=PURPOSE)) == "FhirAuditSink('<callable>')"
    )


def test_sink_validates_when_asked() -> None:
    records: list[dict[str, Any]] = []
    sink = FhirAuditSink(records.append, source=SOURCE, purpose=PURPOSE, validate=True)
    sink(event("break_glass", reason="TREAT"))
    assert records[0]["outcome"] == "0"


def test_bad_target_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        FhirAuditSink(42, source=SOURCE, purpose=PURPOSE)  # type: ignore[arg-type]


def test_validation_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fhir.resources.R4B.auditevent", None)
    with pytest.raises(ConfigurationError, match=r"fhir extra, pip install .\.\[fhir\]"):
        validate_r4({})
    with pytest.raises(ConfigurationError, match=r"fhir extra, pip install .\.\[fhir\]"):
        FhirAuditSink(print, source=SOURCE, purpose=PURPOSE, validate=True)
    # Formatting needs no extra.
    assert to_fhir(event("allowed"), source=SOURCE, purpose=PURPOSE)["outcome"] == "0"


def test_validate_r4_rejects_what_is_not_r4() -> None:
    resource = to_fhir(event("allowed"), source=SOURCE, purpose=PURPOSE)
    with pytest.raises(ValueError, match="recorded"):
        validate_r4({**resource, "recorded": "yesterday"})
    with pytest.raises(ValueError, match="outcome"):
        validate_r4({**resource, "outcome": {"code": "0"}})


def test_default_fhir_resources_models_are_r5_and_reject_r4() -> None:
    # Why the R4B package: the default AuditEvent is R5, where outcome is an object.
    from fhir.resources.auditevent import AuditEvent as R5AuditEvent

    with pytest.raises(ValueError, match="outcome"):
        R5AuditEvent.model_validate(to_fhir(event("allowed"), source=SOURCE, purpose=PURPOSE))


# -- with a guard --------------------------------------------------------------------


def test_guard_with_a_fhir_sink(tmp_path: Path) -> None:
    path = tmp_path / "audit.fhir.jsonl"
    pseudonymiser = Pseudonymiser(KEY, purpose="guard")
    guard = LookupGuard(
        only(distinct_patients="2/day"),
        pseudonymiser=pseudonymiser,
        audit=FhirAuditSink(path, source=SOURCE, purpose=pseudonymiser.purpose, validate=True),
        clock=Clock(),
    )
    nirs = [valid_nir(seed=seed) for seed in range(3)]
    outcomes = []
    for value in [*nirs, "185057800608492"]:  # the last one's key is wrong
        try:
            with guard.lookup("10003456789", value) as lookup:
                lookup.record({"found": True})
            outcomes.append("ran")
        except (LookupDenied, InvalidNIR):
            outcomes.append("refused")
    guard.close()  # the sink runs on the hook worker: flush it
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert outcomes == ["ran", "ran", "refused", "refused"]
    assert [r["outcome"] for r in records] == ["0", "0", "4", "4"]
    for record in records:
        R4AuditEvent.model_validate(record)
        assert_balp(record, with_patient=any(e["role"]["code"] == "1" for e in record["entity"]))
    assert_no_nir(path.read_text(encoding="utf-8"), *nirs)
    first = records[0]["entity"][0]["what"]["identifier"]["value"]
    assert pseudonymiser.matches(nirs[0], first)


# -- the documentation ----------------------------------------------------------------


def test_the_documented_sample_is_what_to_fhir_gives() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "audit.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- The sample record below[^>]*-->\n```json\n(.*?)\n```", text, re.S)
    assert match, "docs/audit.md lost its sample record"
    documented = json.loads(match.group(1))
    sample = AuditEvent(
        time="2026-03-14T09:26:53.589793Z",
        practitioner="10003456789",
        patient=PATIENT,
        outcome="break_glass",
        quota="distinct_patients",
        reason="ETREAT",
        kind="gp",
        cohort=COHORT,
        evidence={"distinct_patients": 31},
    )
    resource = to_fhir(
        sample, source=SOURCE, purpose=PURPOSE, server="https://portal.example.fr/api/patients"
    )
    assert documented == resource
    R4AuditEvent.model_validate(documented)
    assert_balp(documented, with_patient=True)
