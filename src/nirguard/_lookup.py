"""One guarded lookup as a context manager, and reading a call's arguments.

:class:`GuardedLookup` is what :meth:`LookupGuard.lookup` returns;
:func:`argument_getter` is how :meth:`LookupGuard.protect` finds the
practitioner, the NIR and the stated reason among the wrapped function's
arguments; :func:`miss_test` reads ``miss_on``. All three go through the
guard's admission steps (:mod:`nirguard._admission`), never the guard itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from nirguard._admission import Admissions, MissTest, Ticket
from nirguard.errors import ConfigurationError

__all__ = ["GuardedLookup", "argument_getter", "miss_test"]

R = TypeVar("R")


class GuardedLookup:
    """One guarded lookup as a context manager; see :meth:`LookupGuard.lookup`.

    Entering checks everything and raises on refusal; :meth:`record` hands
    the result back and marks it for ``is_miss``; leaving counts a miss and
    writes the audit event. If the block raises, a miss is counted only when
    ``miss_on`` says the exception means "no such patient".
    """

    __slots__ = (
        "_admissions",
        "_is_miss",
        "_miss_on",
        "_nir",
        "_practitioner",
        "_reason",
        "_recorded",
        "_result",
        "_ticket",
    )

    def __init__(
        self,
        admissions: Admissions,
        practitioner: str,
        nir: str,
        is_miss: Callable[[Any], bool],
        miss_on: MissTest | None,
        reason: object = None,
    ) -> None:
        self._admissions = admissions
        self._practitioner = practitioner
        self._nir = nir
        self._is_miss = is_miss
        self._miss_on = miss_on
        self._reason = reason
        self._ticket: Ticket | None = None
        self._recorded = False
        self._result: Any = None

    @property
    def nir(self) -> str:
        """The canonical NIR of this (admitted) lookup."""
        if self._ticket is None or not self._ticket.canonical:
            raise RuntimeError("the lookup has not been admitted with a valid NIR")
        return self._ticket.canonical

    @property
    def patient(self) -> str | None:
        """The patient's pseudonym (what audit events carry)."""
        return None if self._ticket is None else self._ticket.request.patient

    @property
    def outcome(self) -> str | None:
        """What the guard decided: ``allowed``, ``break_glass``, ... (``None`` before entering,
        or when the store was down and the lookup went through unguarded)."""
        ticket = self._ticket
        return None if ticket is None or ticket.decision is None else ticket.decision.outcome

    def record(self, result: R) -> R:
        """Note the lookup's result (for ``is_miss``) and return it unchanged."""
        if self._ticket is None:
            raise RuntimeError("record() is only valid inside the with block")
        self._recorded = True
        self._result = result
        return result

    def _miss(self, error: BaseException | None) -> bool:
        ticket = self._ticket
        assert ticket is not None
        if error is not None:
            return Admissions.judge_error(ticket, error, self._miss_on)
        if not self._recorded:
            return False
        return Admissions.judge(ticket, self._result, self._is_miss)

    def __enter__(self) -> GuardedLookup:
        self._ticket = self._admissions.admit(self._practitioner, self._nir, self._reason)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticket is not None:
            self._admissions.finish(self._ticket, self._miss(exc))

    async def __aenter__(self) -> GuardedLookup:
        self._ticket = await self._admissions.aadmit(self._practitioner, self._nir, self._reason)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticket is not None:
            await self._admissions.afinish(self._ticket, self._miss(exc))

    def __repr__(self) -> str:
        return f"GuardedLookup(outcome={self.outcome!r})"


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
