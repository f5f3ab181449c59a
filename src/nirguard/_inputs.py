"""Reading one call: the practitioner id, the stated reason, the arguments, the miss tests.

What the lookup path (:mod:`nirguard._lookup`) reads before it asks the
store, and the tests it applies after the lookup ran. Nothing here touches a
store or a hook.
"""

from __future__ import annotations

import inspect
import logging
import unicodedata
from collections.abc import Callable
from typing import Any, Final

from nirguard._compiled import CompiledPolicy, compile_policy
from nirguard.errors import ConfigurationError, InvalidPractitioner, PolicyError
from nirguard.policy import QuotaPolicy

__all__ = [
    "MAX_PRACTITIONER_LENGTH",
    "Argument",
    "MissOn",
    "MissTest",
    "Policies",
    "argument_getter",
    "default_is_miss",
    "fold",
    "is_a_miss",
    "miss_test",
    "practitioner_id",
    "raised_a_miss",
]

_log = logging.getLogger("nirguard.guard")

#: Longest practitioner id accepted (characters).
MAX_PRACTITIONER_LENGTH: Final = 256
#: What tells that a raised exception means "no such patient".
MissTest = Callable[[BaseException], bool]
#: What ``miss_on`` accepts: exception types, or a test of the exception.
MissOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
#: What ``practitioner``, ``nir``, ``reason`` and ``session`` accept: a parameter name, or a
#: callable.
Argument = str | Callable[..., Any]
#: Compiled policies a guard keeps (a policy callable may make new objects on each call).
_MAX_POLICIES: Final = 1024
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def fold(value: str) -> str:
    """Unicode NFKC case folding: ``Dr.Martin``, ``dr.martin`` and ``ｄｒ.ｍａｒｔｉｎ`` are one id.

    ``NFKC(casefold(NFKC(value)))``, the *NFKC_Casefold* of Unicode's identifier
    comparison (UAX #31): compatibility forms (fullwidth letters, ligatures
    such as ``ﬁ``, superscripts) become their plain letters, and case is
    folded (``ß`` and ``SS`` too).

    >>> fold("Dr.Martin@Example.fr") == fold("ｄｒ.ｍａｒｔｉｎ@example.FR")
    True
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def practitioner_id(value: object, *, folded: bool = True) -> str:
    """The practitioner id as the guard keys it.

    A non-empty string, at most :data:`MAX_PRACTITIONER_LENGTH` characters,
    no control, format or surrogate characters, no surrounding whitespace; in
    Unicode NFC, or, with ``folded`` (the guard's default), NFKC case-folded
    (:func:`fold`), so that two spellings of one login share one budget.

    Raises:
        InvalidPractitioner: anything else (the value is never echoed).
    """
    if not isinstance(value, str) or not value or len(value) > MAX_PRACTITIONER_LENGTH:
        raise InvalidPractitioner()
    if value.isascii():
        if not value.isprintable():
            raise InvalidPractitioner()
        if folded and not value.islower():
            value = value.lower()  # ASCII: casefold and NFKC are lower() here
    else:
        for ch in value:
            if unicodedata.category(ch) in _REFUSED_CATEGORIES:
                raise InvalidPractitioner()
        value = fold(value) if folded else unicodedata.normalize("NFC", value)
    if not value or value != value.strip() or len(value) > MAX_PRACTITIONER_LENGTH:
        raise InvalidPractitioner()
    return value


def miss_test(miss_on: object) -> MissTest | None:
    """``miss_on`` (exception types, or a test of the exception) as one test.

    Raises:
        ConfigurationError: neither types nor a callable.
    """
    if miss_on is None:
        return None
    if isinstance(miss_on, type) and issubclass(miss_on, BaseException):
        kinds: tuple[type[BaseException], ...] = (miss_on,)
    elif (
        isinstance(miss_on, tuple)
        and miss_on
        and all(isinstance(k, type) and issubclass(k, BaseException) for k in miss_on)
    ):
        kinds = miss_on
    elif callable(miss_on):
        return miss_on
    else:
        raise ConfigurationError("miss_on must be exception types or a callable")
    return lambda error: isinstance(error, kinds)


def default_is_miss(result: object) -> bool:
    """The guard's default ``is_miss``: the lookup returned ``None``."""
    return result is None


def is_a_miss(result: object, is_miss: Callable[[Any], bool]) -> bool:
    """Whether ``result`` says "no such patient" (a failing test counts as no miss)."""
    try:
        return bool(is_miss(result))
    except Exception as exc:
        _log.warning("nirguard is_miss raised %s; result not counted as a miss", type(exc).__name__)
        return False


def raised_a_miss(error: BaseException, miss_on: MissTest | None) -> bool:
    """Whether the lookup's exception says "no such patient" (``miss_on``)."""
    if miss_on is None or not isinstance(error, Exception):
        return False
    try:
        return bool(miss_on(error))
    except Exception as exc:
        _log.warning("nirguard miss_on raised %s; not counted as a miss", type(exc).__name__)
        return False


def argument_getter(
    func: Callable[..., Any], spec: str | Callable[..., Any], what: str
) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """Read the argument ``spec`` names (or computes) from a call of ``func``.

    Raises:
        ConfigurationError: ``func`` has no such parameter.
    """
    if callable(spec):
        return lambda args, kwargs: spec(*args, **kwargs)
    if not isinstance(spec, str):
        raise ConfigurationError(f"{what} must be a parameter name or a callable")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        raise ConfigurationError(f"cannot read the parameters of the function for {what}") from None
    param = signature.parameters.get(spec)
    if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        raise ConfigurationError(f"the guarded function has no parameter named {spec!r} ({what})")
    names = list(signature.parameters)
    index = (
        names.index(spec)
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
        else None
    )
    default = param.default
    keyword_ok = param.kind is not param.POSITIONAL_ONLY

    def get(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if keyword_ok and spec in kwargs:
            return kwargs[spec]
        if index is not None and index < len(args):
            return args[index]
        if default is not param.empty:
            return default
        raise TypeError(f"missing argument {spec!r}")

    return get


class Policies:
    """The policy of each practitioner, compiled once (a fixed policy, or a callable's).

    Raises (from :meth:`of` and :meth:`compiled`):
        PolicyError: the policy callable returned something else.
    """

    __slots__ = ("_cache", "_fixed", "_policy")

    def __init__(self, policy: QuotaPolicy | Callable[[str], QuotaPolicy]) -> None:
        self._policy = policy
        self._cache: dict[int, tuple[QuotaPolicy, CompiledPolicy]] = {}
        #: the compiled policy when it is one for everybody (every lookup asks for it)
        self._fixed: CompiledPolicy | None = None
        if isinstance(policy, QuotaPolicy):
            self._fixed = self._compile(policy)  # a bad policy fails here, at construction

    @property
    def fixed(self) -> QuotaPolicy | None:
        """The policy, when it is one for everybody."""
        policy = self._policy
        return policy if isinstance(policy, QuotaPolicy) else None

    def of(self, practitioner: str) -> QuotaPolicy:
        """The policy of ``practitioner``."""
        policy = self._policy
        if isinstance(policy, QuotaPolicy):
            return policy
        chosen = policy(practitioner)
        if not isinstance(chosen, QuotaPolicy):
            raise PolicyError("the policy callable must return a QuotaPolicy")
        return chosen

    def compiled(self, practitioner: str) -> CompiledPolicy:
        """The compiled policy of ``practitioner``."""
        fixed = self._fixed
        if fixed is not None:
            return fixed
        return self._compile(self.of(practitioner))

    def _compile(self, policy: QuotaPolicy) -> CompiledPolicy:
        cached = self._cache.get(id(policy))
        if cached is not None and cached[0] is policy:
            return cached[1]
        method = getattr(policy, "compiled", None)
        compiled = method() if callable(method) else compile_policy(policy)
        if len(self._cache) >= _MAX_POLICIES:
            self._cache.clear()
        self._cache[id(policy)] = (policy, compiled)  # holds the policy: its id stays its own
        return compiled
