"""The thin wrappers over the lookup path: a context manager and a decorator.

:class:`GuardedLookup` is what ``guard.lookup()`` returns and what the web
integrations hand to an endpoint; :func:`protect` is ``guard.protect``. Both
only call :class:`~nirguard._lookup.LookupPath`: admit, let the portal's
lookup run, finish.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from nirguard._inputs import MissTest, argument_getter, is_a_miss, raised_a_miss
from nirguard._lookup import LookupPath, Ticket

__all__ = ["GuardedLookup", "protect"]

P = ParamSpec("P")
R = TypeVar("R")


class GuardedLookup:
    """One guarded lookup; see :meth:`LookupGuard.lookup`.

    As a context manager (``with`` or ``async with``): entering checks
    everything and raises on refusal; :meth:`record` hands the result back
    and marks it for ``is_miss``; leaving counts a miss and writes the audit
    event. If the block raises, a miss is counted only when ``miss_on`` says
    the exception means "no such patient".

    Opened by a web integration (:meth:`opened`), the lookup is finished by
    :meth:`record` itself, by :meth:`failed` (the integration's exception
    handler), or, when the endpoint did neither, when the request is done
    with it (audited ``allowed``).
    """

    __slots__ = (
        "__weakref__",
        "_detached",
        "_is_miss",
        "_miss_on",
        "_nir",
        "_path",
        "_practitioner",
        "_reason",
        "_recorded",
        "_result",
        "_session",
        "_ticket",
    )

    def __init__(
        self,
        path: LookupPath,
        practitioner: str,
        nir: str,
        is_miss: Callable[[Any], bool],
        miss_on: MissTest | None,
        reason: object = None,
        session: object = None,
    ) -> None:
        self._path = path
        self._practitioner = practitioner
        self._nir = nir
        self._is_miss = is_miss
        self._miss_on = miss_on
        self._reason = reason
        self._session = session
        self._ticket: Ticket | None = None
        self._recorded = False
        self._result: Any = None
        self._detached = False

    @classmethod
    async def opened(
        cls,
        path: LookupPath,
        practitioner: object,
        nir: object,
        is_miss: Callable[[Any], bool],
        miss_on: MissTest | None,
        reason: object = None,
        session: object = None,
    ) -> GuardedLookup:
        """Admit a lookup for a web integration (async): it finishes without a ``with`` block.

        Raises:
            LookupDenied: refused (every subclass), InvalidNIR included.
        """
        lookup = cls(path, practitioner, nir, is_miss, miss_on, reason, session)  # type: ignore[arg-type]
        lookup._ticket = await path.aadmit(practitioner, nir, reason, session)
        lookup._detached = True
        return lookup

    @property
    def nir(self) -> str:
        """The canonical NIR of this (admitted) lookup."""
        if self._ticket is None or not self._ticket.canonical:
            raise RuntimeError("the lookup has not been admitted with a valid NIR")
        return self._ticket.canonical

    @property
    def patient(self) -> str | None:
        """The patient's pseudonym (what audit events carry)."""
        ticket = self._ticket
        return None if ticket is None or ticket.request is None else ticket.request.patient

    @property
    def outcome(self) -> str | None:
        """What the guard decided: ``allowed``, ``break_glass``, ... (``None`` before entering,
        or when the store was down and the lookup went through unguarded)."""
        ticket = self._ticket
        return None if ticket is None or ticket.decision is None else ticket.decision.outcome

    def record(self, result: R) -> R:
        """Note the lookup's result (for ``is_miss``) and return it unchanged."""
        ticket = self._ticket
        if ticket is None:
            raise RuntimeError("record() is only valid inside the with block")
        self._recorded = True
        self._result = result
        if self._detached:
            self._path.finish_soon(ticket, ticket.guarded and is_a_miss(result, self._is_miss))
        return result

    async def failed(self, error: BaseException) -> None:
        """Finish an opened lookup whose endpoint raised ``error`` (a miss if ``miss_on`` says so)."""
        ticket = self._ticket
        if ticket is not None and not ticket.finished:
            await self._path.afinish(ticket, self._miss(error))

    def _miss(self, error: BaseException | None) -> bool:
        ticket = self._ticket
        if ticket is None or not ticket.guarded:
            return False
        if error is not None:
            return raised_a_miss(error, self._miss_on)
        return self._recorded and is_a_miss(self._result, self._is_miss)

    def __enter__(self) -> GuardedLookup:
        self._ticket = self._path.admit(self._practitioner, self._nir, self._reason, self._session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticket is not None:
            self._path.finish(self._ticket, self._miss(exc))

    async def __aenter__(self) -> GuardedLookup:
        self._ticket = await self._path.aadmit(
            self._practitioner, self._nir, self._reason, self._session
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticket is not None:
            await self._path.afinish(self._ticket, self._miss(exc))

    def __del__(self) -> None:
        # An opened lookup whose endpoint neither recorded a result nor raised: it ran,
        # and nobody said it missed.
        ticket = getattr(self, "_ticket", None)
        if ticket is not None and getattr(self, "_detached", False) and not ticket.finished:
            with contextlib.suppress(Exception):  # never raise from a finaliser
                self._path.finish(ticket, False)

    def __repr__(self) -> str:
        return f"GuardedLookup(outcome={self.outcome!r})"


def protect(
    path: LookupPath,
    func: Callable[P, R],
    *,
    practitioner: str | Callable[..., Any],
    nir: str | Callable[..., Any],
    reason: str | Callable[..., Any] | None,
    is_miss: Callable[[Any], bool],
    miss_on: MissTest | None,
) -> Callable[P, R]:
    """``func`` guarded: admitted, run, finished (sync or async; signature kept).

    Raises:
        ConfigurationError: a parameter name ``func`` does not have.
    """
    get_practitioner = argument_getter(func, practitioner, "practitioner")
    get_nir = argument_getter(func, nir, "nir")
    get_reason = argument_getter(func, reason, "reason") if reason is not None else None

    def judge(ticket: Ticket, result: object) -> bool:
        return ticket.guarded and is_a_miss(result, is_miss)

    def judge_error(ticket: Ticket, error: BaseException) -> bool:
        return ticket.guarded and raised_a_miss(error, miss_on)

    if inspect.iscoroutinefunction(func):
        async_func = cast(Callable[..., Awaitable[Any]], func)

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            stated = get_reason(args, kwargs) if get_reason is not None else None
            ticket = await path.aadmit(
                get_practitioner(args, kwargs), get_nir(args, kwargs), stated
            )
            try:
                result = await async_func(*args, **kwargs)
            except BaseException as exc:
                await path.afinish(ticket, judge_error(ticket, exc))
                raise
            await path.afinish(ticket, judge(ticket, result))
            return result

        return cast(Callable[P, R], async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        stated = get_reason(args, kwargs) if get_reason is not None else None
        ticket = path.admit(get_practitioner(args, kwargs), get_nir(args, kwargs), stated)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            path.finish(ticket, judge_error(ticket, exc))
            raise
        path.finish(ticket, judge(ticket, result))
        return result

    return wrapper
