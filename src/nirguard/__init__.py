"""nirguard: keep patient identities out of reach of chained lookups.

Three things, each a few lines of portal code:

* :mod:`nirguard.nir` parses and validates French social security numbers
  (NIR) without ever echoing them;
* :class:`Pseudonymiser` and :class:`Tokeniser` replace NIRs with keyed
  pseudonyms or reversible tokens in logs, audit trails and exports;
* :class:`LookupGuard` wraps an identity-lookup endpoint and refuses the
  lookup *before* it runs when a practitioner exceeds a quota or walks a
  sequence of numbers.

>>> import nirguard
>>> nirguard.nir.validate("1 85 05 78 006 084 91")
'185057800608491'
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from nirguard import nir
from nirguard._pydantic import NIRStr, RedactErrors
from nirguard.alerts import Alert, Notice
from nirguard.audit import AuditEvent
from nirguard.errors import (
    ConfigurationError,
    EnumerationSuspected,
    GuardUnavailable,
    InsecureKeyFileWarning,
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
from nirguard.guard import GuardedLookup, GuardStatus, LookupGuard
from nirguard.keys import KeyRing, SecretKey
from nirguard.nir import NIR
from nirguard.policy import QuotaPolicy
from nirguard.pseudonym import Pseudonymiser
from nirguard.reasons import Reason, ReasonCode
from nirguard.tokens import Tokeniser

try:
    __version__ = version("nirguard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Alert",
    "AuditEvent",
    "ConfigurationError",
    "EnumerationSuspected",
    "GuardStatus",
    "GuardUnavailable",
    "GuardedLookup",
    "InsecureKeyFileWarning",
    "InvalidKey",
    "InvalidNIR",
    "InvalidPractitioner",
    "InvalidReason",
    "InvalidToken",
    "KeyRing",
    "LookupDenied",
    "LookupGuard",
    "NIR",
    "NIRStr",
    "NirguardError",
    "Notice",
    "PolicyError",
    "PractitionerLocked",
    "Pseudonymiser",
    "QuotaExceeded",
    "QuotaPolicy",
    "Reason",
    "ReasonCode",
    "ReasonRequired",
    "RedactErrors",
    "SecretKey",
    "Tokeniser",
    "__version__",
    "nir",
]
