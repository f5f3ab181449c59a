"""Django integration (``pip install nirguard[django]``).

* :func:`guarded_view` guards a view: it reads the practitioner and the NIR
  from the request, runs the guard (``with guard.lookup(...)`` for a sync view,
  ``async with`` for an ``async def`` view, so an async view never blocks the
  event loop) and passes the open lookup to the view as the ``lookup`` keyword
  argument. On any denial the view is not called and the client gets the
  problem response.
* :class:`NirguardMiddleware` renders every :class:`~nirguard.errors.NirguardError`
  a view lets escape (for instance from a ``guard.protect``-ed service
  function) as an RFC 9457 problem response (see :mod:`nirguard.http`).
  :func:`nirguard_problems` does the same for one view.

::

    @require_POST
    @guarded_view(guard, practitioner=lambda request: request.user.rpps, nir="nir")
    def infopatient(request, *, lookup):
        identity = lookup.record(service.find(lookup.nir))
        ...

Class-based views: ``method_decorator(guarded_view(...), name="post")``.
Keep the NIR out of the URL: URLs end up in access logs.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

from django.http import HttpRequest, HttpResponse

from nirguard.errors import NirguardError
from nirguard.guard import LookupGuard
from nirguard.http import PROBLEM_CONTENT_TYPE, problem_for, problem_json

__all__ = ["NirguardMiddleware", "guarded_view", "nirguard_problems", "problem_response"]

View = Callable[..., Any]


def problem_response(exc: NirguardError) -> HttpResponse:
    """Build the Django response for a nirguard exception.

    Args:
        exc: the exception raised by the guard or by nirguard validation.

    Returns:
        An ``application/problem+json`` :class:`~django.http.HttpResponse` with
        the status and headers of :func:`nirguard.http.problem_for`.

    Raises:
        TypeError: ``exc`` is not a :class:`~nirguard.errors.NirguardError`.
    """
    problem = problem_for(exc)
    headers = {k: v for k, v in problem.headers.items() if k != "Content-Type"}
    return HttpResponse(
        problem_json(problem),
        status=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def nirguard_problems(view: View) -> View:
    """Decorate a function view so that nirguard errors become problem responses.

    Works on sync and ``async def`` views; for a class-based view use
    ``method_decorator(nirguard_problems, name="dispatch")``.

    Args:
        view: the view function.

    Returns:
        The wrapped view.

    Raises:
        TypeError: ``view`` is not callable.
    """
    if not callable(view):
        raise TypeError("nirguard_problems() expects a view function")
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await view(*args, **kwargs)
            except NirguardError as exc:
                return problem_response(exc)

        return async_wrapper

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except NirguardError as exc:
            return problem_response(exc)

    return wrapper


def _request_field(name: str) -> Callable[[HttpRequest, dict[str, Any]], object]:
    def get(request: HttpRequest, view_kwargs: dict[str, Any]) -> object:
        if name in view_kwargs:
            return view_kwargs[name]
        if request.content_type == "application/json":
            try:
                payload = json.loads(request.body or b"null")
            except ValueError:  # not JSON: the guard rejects None as an invalid NIR
                return None
            return payload.get(name) if isinstance(payload, dict) else None
        return request.POST.get(name)

    return get


def _raw(value: object) -> str:
    # Whatever the client sent goes to the guard, which validates it (and counts
    # an invalid value against ``invalid_nirs``); the cast only satisfies typing.
    return cast(str, value)


def guarded_view(
    guard: LookupGuard,
    *,
    practitioner: Callable[[HttpRequest], str | Awaitable[str]],
    nir: str | Callable[[HttpRequest], object] = "nir",
    is_miss: Callable[[Any], bool] | None = None,
) -> Callable[[View], View]:
    """Guard a Django view; the view receives the open lookup as ``lookup=``.

    The view calls the service with ``lookup.nir`` (the canonical NIR) and
    passes the result through ``lookup.record(result)`` so that misses count.
    Denials and invalid NIRs are rendered as problem responses before the view
    runs.

    Args:
        guard: the :class:`~nirguard.LookupGuard`.
        practitioner: callable taking the request and returning the
            authenticated practitioner id (for an async view it may return an
            awaitable, e.g. over ``request.auser()``). Put authentication
            decorators such as ``login_required`` outside this one.
        nir: where the NIR is: the name of a URL keyword argument, of a field
            of a JSON body object or of a form field, or a callable over the
            request. A missing value is passed on as ``None`` and rejected by
            the guard as an invalid NIR.
        is_miss: tells from the recorded result that no such patient exists
            (default: the guard's, i.e. the result is ``None``).

    Returns:
        A decorator for sync or ``async def`` views.

    Raises:
        TypeError: ``practitioner`` is not callable.
    """
    if not callable(practitioner):
        raise TypeError("practitioner must be a callable taking the request")
    nir_of: Callable[[HttpRequest, dict[str, Any]], object]
    if isinstance(nir, str):
        nir_of = _request_field(nir)
    else:
        nir_getter = nir

        def nir_of(request: HttpRequest, view_kwargs: dict[str, Any]) -> object:
            return nir_getter(request)

    def decorate(view: View) -> View:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                try:
                    who: Any = practitioner(request)
                    if inspect.isawaitable(who):  # e.g. an ``await request.auser()`` lookup
                        who = await who
                    async with guard.lookup(
                        who, _raw(nir_of(request, kwargs)), is_miss=is_miss
                    ) as lk:
                        response: Awaitable[Any] = view(request, *args, lookup=lk, **kwargs)
                        return await response
                except NirguardError as exc:
                    return problem_response(exc)

            return async_wrapper

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                who = cast(str, practitioner(request))
                with guard.lookup(who, _raw(nir_of(request, kwargs)), is_miss=is_miss) as lk:
                    return view(request, *args, lookup=lk, **kwargs)
            except NirguardError as exc:
                return problem_response(exc)

        return wrapper

    return decorate


class NirguardMiddleware:
    """Render nirguard errors escaping any view as problem responses.

    Add ``"nirguard.integrations.django.NirguardMiddleware"`` to
    ``MIDDLEWARE``. Works under WSGI and ASGI.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._is_async = inspect.iscoroutinefunction(get_response)
        if self._is_async:
            from asgiref.sync import markcoroutinefunction

            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        """Pass the request on (an awaitable under ASGI)."""
        if self._is_async:
            return self.__acall__(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        """Pass the request on, asynchronously."""
        return await self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Turn a :class:`~nirguard.errors.NirguardError` into its problem response.

        Returns:
            The problem response, or ``None`` for any other exception so that
            Django's own handling applies.
        """
        if isinstance(exception, NirguardError):
            return problem_response(exception)
        return None
