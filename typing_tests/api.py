"""Checked by ``mypy --strict`` in CI (never run): the public API keeps its types.

In particular ``LookupGuard.protect`` keeps the wrapped function's signature
(ParamSpec), for sync and async functions alike.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import pydantic
from typing_extensions import assert_type

import nirguard
from nirguard import NIR, LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey, nir
from nirguard.audit import AuditEvent
from nirguard.audit_fhir import FhirAuditSink, to_fhir

guard = LookupGuard(QuotaPolicy(lookups="30/minute"), storage="memory://")


@guard.protect(practitioner="practitioner_id", nir="nir", is_miss=lambda r: r is None)
def infopatient(practitioner_id: str, nir: str, *, full: bool = False) -> dict[str, str] | None:
    return None


@guard.protect(practitioner=lambda request, nir: request, nir="nir")
async def infopatient_async(request: str, nir: str) -> int:
    return 1


assert_type(infopatient("10003456789", "185057800608491", full=True), dict[str, str] | None)
async_checked: Callable[[str, str], Coroutine[Any, Any, int]] = infopatient_async
assert_type(nir.validate("185057800608491"), str)
assert_type(nir.is_valid(None), bool)
assert_type(nir.parse("185057800608491"), NIR)
assert_type(nir.parse("185057800608491").birth_month, int | None)
assert_type(nir.compute_key("1850578006084"), int)
key = SecretKey.generate("k1")
assert_type(Pseudonymiser(key, purpose="export").pseudonymise("185057800608491"), str)
assert_type(nirguard.__version__, str)

with guard.lookup("10003456789", "185057800608491") as lookup:
    assert_type(lookup.record({"name": "x"}), dict[str, str])

fhir_record = to_fhir(
    AuditEvent(time=datetime.now(timezone.utc), practitioner="p", outcome="allowed"),
    source="portal",
    purpose="guard",
)
assert_type(fhir_record, dict[str, Any])
fhir_guard = LookupGuard(audit=FhirAuditSink("audit.fhir.jsonl", source="portal", purpose="guard"))
fhir_posting = FhirAuditSink(lambda resource: None, source="portal", purpose="guard")
# Hooks, cases and notices, admin calls with who and why.
cases: list[nirguard.Alert] = []
notices: list[nirguard.Notice] = []
hooked = LookupGuard(
    alert=cases.append,
    notice=notices.append,
    hooks="inline",
    hook_queue=1024,
    kinds=("gp", "desk"),
    fold_practitioner_ids=True,
)
assert_type(hooked.flush(1.0), bool)
hooked.unlock("10003456789", by="secops", reason="ticket 4521")
assert_type(hooked.status("10003456789").baseline, dict[str, float] | None)
quiet = LookupGuard(alert=False, notice=False)
# Metrics (the otel extra): a recorder, or None without opentelemetry-api.
from nirguard.metrics import GuardMetrics, default_metrics  # noqa: E402

assert_type(default_metrics(), GuardMetrics | None)
assert_type(default_metrics(store="redis"), GuardMetrics | None)
recorder = GuardMetrics(store="redis", kinds=("gp", "desk"))
assert_type(recorder.with_store("memory"), GuardMetrics)
recorder.decision("allowed", None, 2.5e-5, kind="gp", enforced=True)
recorder.alert("cohort", kind=None, enforced=False)
recorder.lockout("distinct_patients", 1, kind="gp")
recorder.break_glass(nirguard.ReasonCode.ETREAT, kind="gp")


class _Visit(pydantic.BaseModel):
    patient: nirguard.NIRStr
    contact: Annotated[nirguard.NIRStr | Literal["unknown"], nirguard.RedactErrors()] = "unknown"


assert_type(_Visit(patient="185057800608491").patient, str)  # NIRStr is a str to type checkers
