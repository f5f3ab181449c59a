"""One guarded lookup as a context manager, and reading a call's arguments.

:class:`GuardedLookup` is what :meth:`LookupGuard.lookup` returns;
:func:`argument_getter` is how :meth:`LookupGuard.protect` finds the
practitioner and the NIR among the wrapped function's arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from nirguard.errors import PolicyError

if TYPE_CHECKING:
    from nirguard.guard import LookupGuard, _Admission

__all__ = ["GuardedLookup", "argument_getter"]

R = TypeVar("R")


class GuardedLookup:
    """One guarded lookup as a context manager; see :meth:`LookupGuard.lookup`.

    Entering checks everything and raises on refusal; :meth:`record` hands
    the result back and marks it for ``is_miss``; leaving counts a miss and
    writes the audit event. If the block raises, no miss is counted.
    """

    __slots__ = (
        "_admission",
        "_guard",
        "_is_miss",
        "_nir",
        "_practitioner",
        "_recorded",
        "_result",
    )

    def __init__(
        self, guard: LookupGuard, practitioner: str, nir: str, is_miss: Callable[[Any], bool]
    ) -> None:
        self._guard = guard
        self._practitioner = practitioner
        self._nir = nir
        self._is_miss = is_miss
        self._admission: _Admission | None = None
        self._recorded = False
        self._result: Any = None

    @property
    def nir(self) -> str:
        """The canonical NIR of this (admitted) lookup."""
        if self._admission is None:
            raise RuntimeError("the lookup has not been admitted")
        return self._admission.canonical

    @property
    def patient(self) -> str | None:
        """The patient's pseudonym (what audit events carry)."""
        return None if self._admission is None else self._admission.request.patient

    def record(self, result: R) -> R:
        """Note the lookup's result (for ``is_miss``) and return it unchanged."""
        if self._admission is None:
            raise RuntimeError("record() is only valid inside the with block")
        self._recorded = True
        self._result = result
        return result

    def _miss(self, failed: bool) -> bool:
        assert self._admission is not None
        if failed or not self._recorded:
            return False
        return self._guard._judge(self._admission, self._result, self._is_miss)

    def __enter__(self) -> GuardedLookup:
        self._admission = self._guard._admit(self._practitioner, self._nir)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._admission is not None:
            self._guard._finish(
                self._practitioner, self._admission, self._miss(exc_type is not None)
            )

    async def __aenter__(self) -> GuardedLookup:
        self._admission = await self._guard._aadmit(self._practitioner, self._nir)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._admission is not None:
            await self._guard._afinish(
                self._practitioner, self._admission, self._miss(exc_type is not None)
            )

    def __repr__(self) -> str:
        return f"GuardedLookup(practitioner={self._practitioner!r})"


def argument_getter(
    func: Callable[..., Any], spec: str | Callable[..., Any], what: str
) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    if callable(spec):
        return lambda args, kwargs: spec(*args, **kwargs)
    if not isinstance(spec, str):
        raise PolicyError(f"{what} must be a parameter name or a callable")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        raise PolicyError(f"cannot read the parameters of the function for {what}") from None
    param = signature.parameters.get(spec)
    if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        raise PolicyError(f"the guarded function has no parameter named {spec!r} ({what})")
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
