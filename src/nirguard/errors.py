"""The one exception tree of nirguard.

Every exception descends from :class:`NirguardError` and carries a stable,
machine-readable :attr:`~NirguardError.code`. Messages are fixed per code:
they never contain the value that was checked, a key, or a storage URI.

>>> from nirguard import nir
>>> try:
...     nir.validate("1 85 05 78 006 084 90")
... except NirguardError as exc:
...     (exc.code, str(exc))
('key', 'invalid NIR: the control key does not match')
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final

__all__ = [
    "ConfigurationError",
    "EnumerationSuspected",
    "GuardUnavailable",
    "InsecureKeyFileWarning",
    "InvalidKey",
    "InvalidNIR",
    "InvalidPractitioner",
    "InvalidReason",
    "InvalidToken",
    "LookupDenied",
    "NIR_MESSAGES",
    "NirguardError",
    "PolicyError",
    "PractitionerLocked",
    "QuotaExceeded",
    "ReasonRequired",
]


class NirguardError(Exception):
    """Root of every exception nirguard raises.

    Attributes:
        code: a stable machine-readable identifier (snake_case).
    """

    code: str = "error"
    default_message: ClassVar[str] = "nirguard error"

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(message if message is not None else self.default_message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={str(self)!r})"


NIR_MESSAGES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "type": "invalid NIR: not a string",
        "empty": "invalid NIR: empty",
        "characters": "invalid NIR: characters outside digits, 2A/2B and separators",
        "length": "invalid NIR: must have 15 characters (13 plus a 2-digit key)",
        "key": "invalid NIR: the control key does not match",
        "sex": "invalid NIR: the first digit is not a valid sex code",
        "month": "invalid NIR: the month of birth code is not valid",
        "department": "invalid NIR: the department of birth is not valid",
        "commune": "invalid NIR: the commune or country code is not valid",
        "order": "invalid NIR: the order number is not valid",
    }
)
"""The fixed message of each :class:`InvalidNIR` code (read-only). None holds
the input; :mod:`nirguard.http` puts them in its problem bodies."""


class InvalidNIR(NirguardError, ValueError):
    """A value is not a valid NIR.

    ``code`` is one of ``type``, ``empty``, ``characters``, ``length``,
    ``key``, ``sex``, ``month``, ``department``, ``commune``, ``order``.
    The message is fixed per code and never contains the input.
    """

    codes: ClassVar[frozenset[str]] = frozenset(NIR_MESSAGES)

    def __init__(self, code: str) -> None:
        if code not in NIR_MESSAGES:  # programming error, not user input
            raise ValueError(f"unknown InvalidNIR code {code!r}")
        super().__init__(NIR_MESSAGES[code], code=code)

    def __reduce__(self) -> tuple[type[InvalidNIR], tuple[str]]:
        return (type(self), (self.code,))


class InvalidKey(NirguardError, ValueError):
    """Key material or a key id was refused (too short, wrong type, bad id or text form)."""

    code = "key_invalid"
    default_message = "invalid key"


class InsecureKeyFileWarning(UserWarning):
    """A key file can be read or written by its group or by others.

    :meth:`SecretKey.from_file <nirguard.SecretKey.from_file>` still loads the
    key (a refusal would take a portal down at its next restart), but says so,
    as ssh does for a private key: any user of the machine who can read the
    file can re-identify every pseudonym made with the key, and one who can
    write it can swap the key. Fix the file (``chmod 600``, or ``0400``; a
    Kubernetes secret volume with ``defaultMode: 0400``), or make the warning
    an error with ``warnings.simplefilter("error", InsecureKeyFileWarning)``.
    The message names the file and its mode, never the key.
    """


class InvalidToken(NirguardError):
    """A token could not be detokenised.

    One opaque error for every cause (tampered, unknown key, wrong purpose,
    malformed), as cryptography's Fernet does.
    """

    code = "token_invalid"
    default_message = "invalid token"


class ConfigurationError(NirguardError, ValueError):
    """The guard or a tool was set up wrongly: an unknown storage scheme, a
    missing extra, a clock that is not callable, a wrong argument type."""

    code = "configuration_invalid"
    default_message = "invalid configuration"


class PolicyError(ConfigurationError):
    """A quota policy is not valid."""

    code = "policy_invalid"
    default_message = "invalid quota policy"


class LookupDenied(NirguardError):
    """A guarded lookup was refused; the wrapped function was not called.

    Attributes:
        retry_after: seconds after which the same lookup may be allowed,
            or ``None`` when unknown.
    """

    code = "denied"
    default_message = "lookup denied"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class QuotaExceeded(LookupDenied):
    """A quota was exhausted. ``code`` (and ``quota``) names it: ``lookups``,
    ``distinct_patients``, ``invalid_nirs``, ``misses``, ``portal``, ..."""

    default_message = "lookup denied: quota exceeded"

    def __init__(self, quota: str, *, retry_after: float | None = None) -> None:
        super().__init__(
            f"lookup denied: {quota} quota exceeded", code=quota, retry_after=retry_after
        )

    @property
    def quota(self) -> str:
        """The name of the exhausted quota (same as ``code``)."""
        return self.code

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_quota, (self.code, self.retry_after))


def _rebuild_quota(quota: str, retry_after: float | None) -> QuotaExceeded:
    return QuotaExceeded(quota, retry_after=retry_after)


class PractitionerLocked(LookupDenied):
    """The practitioner is locked out after a lockout-class breach."""

    code = "locked"
    default_message = "lookup denied: practitioner locked out"

    def __init__(self, *, retry_after: float | None = None) -> None:
        super().__init__(retry_after=retry_after)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_locked, (self.retry_after,))


def _rebuild_locked(retry_after: float | None) -> PractitionerLocked:
    return PractitionerLocked(retry_after=retry_after)


class InvalidPractitioner(LookupDenied, ValueError):
    """The practitioner id is not usable: not a string, empty, too long, or
    holding control characters. The id itself is never put in the message."""

    code = "practitioner_invalid"
    default_message = "lookup denied: invalid practitioner id"

    def __init__(self) -> None:
        super().__init__()

    def __reduce__(self) -> tuple[object, ...]:
        return (InvalidPractitioner, ())


class InvalidReason(LookupDenied, ValueError):
    """A stated break-glass reason is not a known code (see :mod:`nirguard.reasons`).
    The value is never put in the message."""

    code = "reason_invalid"
    default_message = "lookup denied: unknown reason code"

    def __init__(self) -> None:
        super().__init__()

    def __reduce__(self) -> tuple[object, ...]:
        return (InvalidReason, ())


class ReasonRequired(LookupDenied):
    """A new patient past a new-patient quota or signal: the lookup may be
    retried with a stated reason (break-glass), which the guard grants within
    the practitioner's break-glass budget.

    Attributes:
        quota: the quota or signal that asked for a reason (for the audit
            trail and the portal's own screens; the HTTP answer never names it).
    """

    code = "reason_required"
    default_message = "lookup denied: a reason is required for this patient"

    def __init__(self, quota: str, *, retry_after: float | None = None) -> None:
        super().__init__(retry_after=retry_after)
        self.quota = quota

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_reason_required, (self.quota, self.retry_after))


def _rebuild_reason_required(quota: str, retry_after: float | None) -> ReasonRequired:
    return ReasonRequired(quota, retry_after=retry_after)


class EnumerationSuspected(LookupDenied):
    """The lookups look like enumeration; the practitioner is now locked out.

    Attributes:
        signal: the detection signal that fired (``cohort``, ``portal_cohort``,
            ``miss_ratio``, ...).
    """

    code = "suspected"
    default_message = "lookup denied: enumeration suspected"

    def __init__(self, signal: str, *, retry_after: float | None = None) -> None:
        super().__init__(retry_after=retry_after)
        self.signal = signal

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_suspected, (self.signal, self.retry_after))


def _rebuild_suspected(signal: str, retry_after: float | None) -> EnumerationSuspected:
    return EnumerationSuspected(signal, retry_after=retry_after)


class GuardUnavailable(LookupDenied):
    """The quota store could not be reached; the guard fails closed."""

    code = "unavailable"
    default_message = "lookup denied: quota store unavailable"
