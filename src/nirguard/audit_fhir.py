"""Audit events as FHIR R4 ``AuditEvent`` resources (IHE BALP "patient query").

Security information systems and health-data audit repositories ingest FHIR
``AuditEvent`` resources; IHE's Basic Audit Log Patterns (BALP) say how a
patient query should look. :func:`to_fhir` turns one nirguard
:class:`~nirguard.audit.AuditEvent` into such a resource (a JSON-ready
``dict``), and :class:`FhirAuditSink` is an ``audit=`` sink for
:class:`~nirguard.LookupGuard` that writes one resource per line to a file or
hands it to a callable.

What goes where (the full mapping is in ``docs/audit.md``):

* ``type`` ``rest``, ``subtype`` ``search-type`` (BALP's query pattern), plus
  the nirguard outcome as a code of the system :data:`OUTCOME_SYSTEM` (and DICOM
  ``110127`` "Emergency Override Started" for a break-glass lookup);
  ``action`` ``E``; ``recorded`` the guard's decision time;
* ``outcome`` ``0`` when the lookup ran, ``4`` when the guard refused it by
  policy or for bad input (an HTTP 4xx), ``8`` when the guard could not decide
  (its store was down, HTTP 503): see :data:`FHIR_OUTCOME`; ``outcomeDesc`` is
  a fixed sentence per outcome, never free text;
* the practitioner is the ``agent`` of type ``IRCP`` (requestor), with the
  break-glass reason code as ``purposeOfUse`` (HL7 v3 ActReason); the patient
  is the ``entity`` of role ``Patient``, identified by its **pseudonym** in an
  identifier system naming the purpose and key id (:func:`pseudonym_system`);
* the quota or signal, ``retry_after``, the policy name, the cohort pseudonym
  and the evidence counts go in one extension, :data:`DECISION_EXTENSION`.

No NIR ever goes in: the event only holds pseudonyms, a practitioner id that
validates as a NIR is masked, and the query entity is rebuilt from the
pseudonym rather than copied from the request. A successful lookup with a
patient declares BALP's ``IHE.BasicAudit.PatientQuery`` profile; a refusal
follows the same pattern but declares no profile, since BALP's query profiles
fix ``outcome`` to success.

Formatting needs nothing beyond nirguard itself. Validating against the FHIR
models (:func:`validate_r4`, ``FhirAuditSink(validate=True)``) needs the
``fhir`` extra (``fhir.resources``, whose ``R4B`` models are used: R4B left
``AuditEvent`` exactly as R4 has it, and the package's default models are R5,
where ``AuditEvent`` changed shape).

>>> from nirguard.audit import AuditEvent
>>> event = AuditEvent(time=0, practitioner="10003456789", patient="k1:ab12", outcome="denied",
...                    quota="distinct_patients", retry_after=3600)
>>> record = to_fhir(event, source="portal.example.fr", purpose="guard")
>>> record["outcome"], record["outcomeDesc"]
('4', 'Lookup refused: a quota is exhausted')
>>> record["entity"][0]["what"]["identifier"]
{'system': 'urn:nirguard:pseudonym:v1:guard:k1', 'value': 'k1:ab12'}
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nirguard._fhir_format import (
    BALP_PATIENT_QUERY,
    BALP_QUERY,
    DECISION_EXTENSION,
    FHIR_OUTCOME,
    OUTCOME_SYSTEM,
    PSEUDONYM_SYSTEM_PREFIX,
    Formatter,
    pseudonym_system,
)
from nirguard.audit import AuditEvent
from nirguard.errors import ConfigurationError

__all__ = [
    "BALP_PATIENT_QUERY",
    "BALP_QUERY",
    "DECISION_EXTENSION",
    "FHIR_OUTCOME",
    "FhirAuditSink",
    "OUTCOME_SYSTEM",
    "PSEUDONYM_SYSTEM_PREFIX",
    "pseudonym_system",
    "to_fhir",
    "validate_r4",
]


def to_fhir(
    event: AuditEvent,
    *,
    source: str,
    purpose: str,
    server: str | None = None,
    practitioner_system: str | None = None,
    subtypes: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The FHIR R4 ``AuditEvent`` of one guarded lookup, as a JSON-ready ``dict``.

    Args:
        event: the nirguard audit event.
        source: who records the event: the portal (``source.site``,
            ``source.observer`` and the server agent), e.g. its host name.
        purpose: the purpose of the guard's pseudonymiser
            (``Pseudonymiser.purpose``); it names, with the key id, the
            identifier system of the patient's pseudonym.
        server: the URL of the guarded endpoint (the server agent's network
            address); unknown when ``None``.
        practitioner_system: the identifier system of practitioner ids (a
            URI, e.g. the namespace of the national identifiers the portal
            uses); none when ``None``.
        subtypes: more ``subtype`` codings (``{"system", "code", "display"}``),
            e.g. the IHE transaction the portal implements.

    Returns:
        A new ``dict`` (nothing in it is shared with other calls).

    Raises:
        ConfigurationError: ``source``, ``purpose``, ``server``,
            ``practitioner_system`` or ``subtypes`` is not valid.
    """
    return Formatter(
        source=source,
        purpose=purpose,
        server=server,
        practitioner_system=practitioner_system,
        subtypes=subtypes,
    )(event)


def _r4_model() -> Any:
    try:
        from fhir.resources.R4B.auditevent import AuditEvent as R4AuditEvent
    except ImportError as exc:
        raise ConfigurationError(
            f"FHIR validation needs fhir.resources: pip install 'nirguard[fhir]' ({type(exc).__name__})"
        ) from None
    return R4AuditEvent


def validate_r4(resource: Mapping[str, Any]) -> None:
    """Check a resource against the FHIR R4 ``AuditEvent`` model (``fhir`` extra).

    Uses the ``R4B`` models of ``fhir.resources``: R4B kept R4's
    ``AuditEvent`` unchanged. This checks FHIR's structure, types and
    formats, not BALP's slices (the test suite checks those).

    Raises:
        ConfigurationError: ``fhir.resources`` is not installed.
        ValueError: the resource is not a valid R4 ``AuditEvent`` (a pydantic
            ``ValidationError``).
    """
    _r4_model().model_validate(dict(resource))


class _JsonLines:
    """Appends one compact JSON document per line (mode 0600, one write each, thread-safe)."""

    __slots__ = ("_lock", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, resource: dict[str, Any]) -> None:
        line = json.dumps(resource, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        data = (line + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)


class FhirAuditSink:
    """An ``audit=`` sink that emits each event as a FHIR R4 ``AuditEvent``.

    ``LookupGuard(audit=FhirAuditSink("audit.fhir.jsonl", source=..., purpose=...))``
    appends one compact JSON resource per line (file created with mode 0600,
    one write per event, thread-safe); with a callable ``target`` the sink
    calls it with each resource ``dict`` instead (to post it to an audit
    record repository, a queue, a SIEM). The keyword arguments are those of
    :func:`to_fhir`, checked once here.

    Args:
        target: a file path, or a callable taking the resource ``dict``.
        validate: also check every resource with :func:`validate_r4` before
            emitting it (costly: for tests and staging); needs the ``fhir``
            extra, checked here.

    Raises:
        ConfigurationError: a wrong target or keyword argument, or
            ``validate=True`` without ``fhir.resources``.
    """

    __slots__ = ("_format", "_target", "_validate")

    #: It formats and writes: the guard runs it on its hook worker, off the request path.
    background = True

    def __init__(
        self,
        target: str | os.PathLike[str] | Callable[[dict[str, Any]], object],
        *,
        source: str,
        purpose: str,
        server: str | None = None,
        practitioner_system: str | None = None,
        subtypes: Sequence[Mapping[str, str]] = (),
        validate: bool = False,
    ) -> None:
        self._format = Formatter(
            source=source,
            purpose=purpose,
            server=server,
            practitioner_system=practitioner_system,
            subtypes=subtypes,
        )
        self._target: Callable[[dict[str, Any]], object]
        if isinstance(target, (str, os.PathLike)):
            self._target = _JsonLines(Path(target))
        elif callable(target):
            self._target = target
        else:
            raise ConfigurationError("target must be a file path or a callable")
        self._validate: Any = _r4_model() if validate else None

    def __call__(self, event: AuditEvent) -> None:
        resource = self._format(event)
        if self._validate is not None:
            self._validate.model_validate(resource)
        self._target(resource)

    def __repr__(self) -> str:
        target = self._target
        where = str(target.path) if isinstance(target, _JsonLines) else "<callable>"
        return f"FhirAuditSink({where!r})"
