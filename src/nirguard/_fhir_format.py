"""Formatting audit events as FHIR R4 ``AuditEvent`` resources (see :mod:`nirguard.audit_fhir`).

The codes, systems and the :class:`Formatter` that :func:`nirguard.audit_fhir.to_fhir`
and :class:`~nirguard.audit_fhir.FhirAuditSink` use; their public names are
re-exported by :mod:`nirguard.audit_fhir`.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from datetime import timezone
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote

from nirguard.audit import AuditEvent
from nirguard.errors import ConfigurationError
from nirguard.nir import is_valid
from nirguard.reasons import ACT_REASON_SYSTEM

__all__ = [
    "BALP_PATIENT_QUERY",
    "BALP_QUERY",
    "DECISION_EXTENSION",
    "FHIR_OUTCOME",
    "OUTCOME_SYSTEM",
    "PSEUDONYM_SYSTEM_PREFIX",
    "Formatter",
    "pseudonym_system",
]

BALP_PATIENT_QUERY: Final = (
    "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"
)
"""Profile declared by successful lookups that name a patient."""
BALP_QUERY: Final = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Query"
"""Profile declared by successful lookups without a patient pseudonym."""
OUTCOME_SYSTEM: Final = "urn:nirguard:fhir:outcome"
"""Code system of nirguard's own outcomes (``allowed``, ``would_lock``...), in ``subtype``."""
DECISION_EXTENSION: Final = "urn:nirguard:fhir:decision"
"""URL of the extension carrying the quota, signals, retry delay and evidence."""
PSEUDONYM_SYSTEM_PREFIX: Final = "urn:nirguard:pseudonym:v1:"
"""Start of every pseudonym identifier system (see :func:`pseudonym_system`)."""

#: FHIR ``AuditEvent.outcome`` (R4 code) of each nirguard outcome: ``"0"``
#: success (the lookup ran, shadow-mode outcomes included), ``"4"`` minor
#: failure (refused by policy or for invalid input, an HTTP 4xx), ``"8"``
#: serious failure (refused because the guard's store could not be reached,
#: HTTP 503). ``"12"`` (the system died) is never used: nirguard does not
#: audit its own death.
FHIR_OUTCOME: Final[Mapping[str, str]] = MappingProxyType(
    {
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
)

_SHADOW = "Lookup allowed in shadow mode; enforcing would have refused it: "
_DESCRIPTION: Final = MappingProxyType(
    {
        "allowed": "Lookup allowed",
        "miss": "Lookup allowed; no patient found",
        "break_glass": "Lookup allowed on a stated reason (break-glass)",
        "unguarded": "Lookup allowed unguarded: the guard's store was unavailable (fail open)",
        "invalid": "Lookup refused: invalid input",
        "denied": "Lookup refused: a quota is exhausted",
        "locked": "Lookup refused: the practitioner is locked out",
        "suspected": "Lookup refused: enumeration suspected",
        "reason_required": "Lookup refused: a reason is required for this new patient",
        "unavailable": "Lookup refused: the guard's store was unavailable",
        "would_deny": _SHADOW + "a quota is exhausted",
        "would_lock": _SHADOW + "the practitioner is locked out",
        "would_suspect": _SHADOW + "enumeration suspected",
        "would_require_reason": _SHADOW + "a reason is required for this new patient",
        "lockout": "Lookup refused: a lockout of the practitioner starts",
        "would_lockout": _SHADOW + "a lockout of the practitioner would start",
        "unlocked": "An administrator lifted the practitioner's lockout",
    }
)

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

# Identifiers from nirguard's own vocabulary (quota and signal names, evidence
# keys, policy names). Anything else is left out rather than escaped.
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}").fullmatch
# Characters a pseudonym may hold that need no percent-encoding in a query string.
_QUERY_SAFE = re.compile(r"[A-Za-z0-9._~:-]+").fullmatch
_ASCII_DIGITS = frozenset("0123456789")
# A NIR-shaped run the audit event masked already (nirguard._redact): the id is unfit too.
_MASKED_RUN = re.compile(r"\*(?:[^0-9A-Za-z*]?\*){12}").search
_WITHHELD_QUERY = "Patient?identifier=(withheld)"

# Every call builds new dicts: a callable target may modify what it receives.


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


def _absent(code: str) -> dict[str, Any]:
    """An element whose value is absent, and why (FHIR ``data-absent-reason``)."""
    return {"extension": [{"url": _DATA_ABSENT, "valueCode": code}]}


def pseudonym_system(purpose: str, key_id: str) -> str:
    """The identifier system of pseudonyms made for ``purpose`` with key ``key_id``.

    ``urn:nirguard:pseudonym:v1:<purpose>:<key id>``, each part
    percent-encoded (``/`` is kept in the purpose). Two systems are equal
    exactly when their pseudonyms are comparable: same construction
    version, purpose and key.

    >>> pseudonym_system("guard/cohort", "k2026")
    'urn:nirguard:pseudonym:v1:guard/cohort:k2026'
    """
    return f"{PSEUDONYM_SYSTEM_PREFIX}{quote(purpose, safe='/')}:{quote(key_id, safe='')}"


def _instant(event: AuditEvent) -> str:
    when = event.time
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    else:
        when = when.astimezone(timezone.utc)
    return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _printable(value: object, limit: int) -> bool:
    """A non-empty string of at most ``limit`` printable characters, no surrounding space."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= limit
        and value.isprintable()
        and value == value.strip()
    )


def _practitioner(value: str, system: str | None) -> dict[str, Any]:
    """The practitioner's reference, or a masked one when the id is unfit to record."""
    if (
        not _printable(value, 256)
        or _MASKED_RUN(value)
        # A NIR has at least 13 ASCII digits: only then is the full check worth it.
        or (sum(ch in _ASCII_DIGITS for ch in value) >= 13 and is_valid(value, strict=False))
    ):
        return _absent("masked")
    identifier = {"system": system, "value": value} if system else {"value": value}
    return {"type": "Practitioner", "identifier": identifier}


def _check(name: str, value: object, limit: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not _printable(value, limit):
        raise ConfigurationError(f"{name} must be a non-empty printable string")


class Formatter:
    """Formats events for one configuration (checked once, here)."""

    __slots__ = ("_practitioner_system", "_purpose", "_server", "_source", "_subtypes", "_systems")

    def __init__(
        self,
        *,
        source: str,
        purpose: str,
        server: str | None,
        practitioner_system: str | None,
        subtypes: Sequence[Mapping[str, str]],
    ) -> None:
        _check("source", source, 1024)
        if not isinstance(purpose, str) or not purpose:
            raise ConfigurationError("purpose must be a non-empty string")
        _check("server", server, 2048, optional=True)
        _check("practitioner_system", practitioner_system, 1024, optional=True)
        if isinstance(subtypes, (str, Mapping)):
            raise ConfigurationError("subtypes must be a sequence of codings")
        extra: list[tuple[str, str, str]] = []
        for coding in subtypes:
            if not isinstance(coding, Mapping):
                raise ConfigurationError("each subtype must be a mapping with a system and a code")
            _check("a subtype's system", coding.get("system"), 1024)
            _check("a subtype's code", coding.get("code"), 256)
            _check("a subtype's display", coding.get("display"), 1024, optional=True)
            extra.append((coding["system"], coding["code"], coding.get("display") or ""))
        self._source = source
        self._purpose = purpose
        self._server = server
        self._practitioner_system = practitioner_system
        self._subtypes = tuple(extra)
        self._systems: dict[tuple[str, str], str] = {}

    def _identifier(self, purpose: str, pseudonym: str) -> dict[str, str]:
        """The identifier of a pseudonym (systems cached: a few keys, a few purposes)."""
        key_id, sep, _digest = pseudonym.partition(":")
        cache_key = (purpose, key_id if sep else "")
        system = self._systems.get(cache_key)
        if system is None:
            system = pseudonym_system(*cache_key)
            if len(self._systems) < 64:
                self._systems[cache_key] = system
        return {"system": system, "value": pseudonym}

    def _decision(self, event: AuditEvent) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"url": "outcome", "valueCode": event.outcome}]
        if event.quota is not None and _TOKEN(event.quota):
            parts.append({"url": "quota", "valueCode": event.quota})
        if event.retry_after is not None:  # whole seconds, at least 1 (AuditEvent)
            parts.append({"url": "retryAfter", "valueDecimal": event.retry_after})
        if event.kind is not None and _TOKEN(event.kind):
            parts.append({"url": "kind", "valueCode": event.kind})
        parts.extend({"url": "signal", "valueCode": s} for s in event.signals if _TOKEN(s))
        if event.cohort is not None:
            cohort = self._identifier(self._purpose + "/cohort", event.cohort)
            parts.append({"url": "cohort", "valueIdentifier": cohort})
        if event.evidence:
            counts = [
                {"url": key, "valueDecimal": value}
                for key, value in event.evidence.items()
                if _TOKEN(key) and math.isfinite(value)
            ]
            if counts:
                parts.append({"url": "evidence", "extension": counts})
        return {"url": DECISION_EXTENSION, "extension": parts}

    def _subtype(self, outcome: str) -> list[dict[str, str]]:
        subtype = [
            _coding(_RESTFUL_INTERACTION, "search-type", "search-type"),
            _coding(OUTCOME_SYSTEM, outcome, outcome.replace("_", " ")),
        ]
        if outcome == "break_glass":
            subtype.append(_coding(_DCM, "110127", "Emergency Override Started"))
        for system, code, display in self._subtypes:
            subtype.append(
                _coding(system, code, display) if display else {"system": system, "code": code}
            )
        return subtype

    def _agents(self, event: AuditEvent) -> list[dict[str, Any]]:
        user: dict[str, Any] = {
            "type": _concept(_PARTICIPATION_TYPE, "IRCP", "information recipient"),
            "who": _practitioner(event.practitioner, self._practitioner_system),
            "requestor": True,
        }
        if event.reason is not None:
            reason = (ACT_REASON_SYSTEM, event.reason.value, event.reason.display)
            user["purposeOfUse"] = [_concept(*reason)]
        client = {
            # The practitioner's client software: nirguard never sees the request.
            "type": _concept(_DCM, "110153", "Source Role ID"),
            "who": _absent("unknown"),
            "requestor": False,
            "network": _absent("unknown"),
        }
        server = {
            "type": _concept(_DCM, "110152", "Destination Role ID"),
            "who": {"display": self._source},
            "requestor": False,
            "network": {"address": self._server, "type": "5"}
            if self._server
            else _absent("unknown"),
        }
        return [user, client, server]

    def _entities(self, event: AuditEvent) -> list[dict[str, Any]]:
        entities: list[dict[str, Any]] = []
        if event.patient is not None:
            identifier = self._identifier(self._purpose, event.patient)
            entities.append(
                {
                    "type": _coding(_ENTITY_TYPE, "1", "Person"),
                    "role": _coding(_OBJECT_ROLE, "1", "Patient"),
                    "what": {"type": "Patient", "identifier": identifier},
                }
            )
            # The query as if made with the pseudonym: the NIR never goes in.
            system, value = identifier["system"], event.patient
            if not _QUERY_SAFE(value):
                value = quote(value, safe=":")
            query = f"Patient?identifier={quote(system, safe=':/')}%7C{value}"
        else:
            query = _WITHHELD_QUERY
        entities.append(
            {
                "type": _coding(_ENTITY_TYPE, "2", "System Object"),
                "role": _coding(_OBJECT_ROLE, "24", "Query"),
                "description": query,
                "query": base64.b64encode(query.encode("ascii")).decode("ascii"),
            }
        )
        return entities

    def __call__(self, event: AuditEvent) -> dict[str, Any]:
        """The FHIR R4 ``AuditEvent`` of ``event`` (a new ``dict``)."""
        outcome = event.outcome
        resource: dict[str, Any] = {"resourceType": "AuditEvent"}
        if FHIR_OUTCOME[outcome] == "0":  # BALP's query profiles fix the outcome to success
            profile = BALP_PATIENT_QUERY if event.patient is not None else BALP_QUERY
            resource["meta"] = {"profile": [profile]}
        resource["extension"] = [self._decision(event)]
        resource["type"] = _coding(_AUDIT_EVENT_TYPE, "rest", "Restful Operation")
        resource["subtype"] = self._subtype(outcome)
        resource["action"] = "E"
        resource["recorded"] = _instant(event)
        resource["outcome"] = FHIR_OUTCOME[outcome]
        resource["outcomeDesc"] = _DESCRIPTION[outcome]
        if event.reason is not None:
            reason = (ACT_REASON_SYSTEM, event.reason.value, event.reason.display)
            resource["purposeOfEvent"] = [_concept(*reason)]
        resource["agent"] = self._agents(event)
        resource["source"] = {
            "site": self._source,
            "observer": {"display": self._source},
            "type": [_coding(_SOURCE_TYPE, "4", "Application Server")],
        }
        resource["entity"] = self._entities(event)
        return resource
