"""Django integration (the ``django`` extra).

* :func:`guarded_view` guards a view: it reads the practitioner, the NIR and
  a stated break-glass reason from the request, runs the guard (``with
  guard.lookup(...)`` for a sync view, ``async with`` for an ``async def``
  view, so an async view never blocks the event loop) and passes the open
  lookup to the view as the ``lookup`` keyword argument. On any denial the
  view is not called and the client gets the problem response. ``Http404``
  (``get_object_or_404``) or ``ObjectDoesNotExist`` escaping the view counts
  as a miss.
* :class:`NirguardMiddleware` renders every :class:`~nirguard.errors.NirguardError`
  a view lets escape (for instance from a ``guard.protect``-ed service
  function) as an RFC 9457 problem response (see :mod:`nirguard.http`).
  :func:`nirguard_problems` does the same for one view.

What refusals reveal and where a reason is stated come from the
``NIRGUARD_HTTP`` setting: a :class:`~nirguard.http.HttpOptions` or a dict
of its fields (default: nothing revealed, reason in ``X-Nirguard-Reason``).

::

    @require_POST
    @guarded_view(guard, practitioner=lambda request: request.user.rpps, nir="nir")
    def infopatient(request, *, lookup):
        identity = get_object_or_404(Identity, nir=lookup.nir)   # 404 counted as a miss
        ...

Class-based views: ``method_decorator(guarded_view(...), name="post")``.
Keep the NIR out of the URL: URLs end up in access logs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse

from nirguard.errors import NirguardError
from nirguard.guard import LookupGuard, MissOn
from nirguard.http import (
    PROBLEM_CONTENT_TYPE,
    HttpOptions,
    problem_for,
    problem_json,
    stated_reason,
)
from nirguard.integrations._request import json_object, readers

__all__ = [
    "NirguardMiddleware",
    "guarded_view",
    "http_options",
    "nirguard_problems",
    "not_found",
    "problem_response",
    "request_reason",
]

View = Callable[..., Any]


def not_found(exc: BaseException) -> bool:
    """Whether ``exc`` is Django's "not found": ``Http404`` or ``ObjectDoesNotExist``.

    ``Http404`` is what ``get_object_or_404`` raises; ``ObjectDoesNotExist`` is
    the base of every ``Model.DoesNotExist``, a ``.get()`` that found nothing.
    The default ``miss_on`` of :func:`guarded_view`; pass it to
    ``guard.protect(miss_on=not_found)`` for a decorated function.
    """
    return isinstance(exc, (Http404, ObjectDoesNotExist))


def http_options() -> HttpOptions:
    """The site's :class:`~nirguard.http.HttpOptions`, from the ``NIRGUARD_HTTP`` setting.

    Raises:
        ConfigurationError: the setting is neither options nor a dict of their fields.
    """
    from django.conf import settings  # not at import: a LazySettings global upsets doctest

    return HttpOptions.of(getattr(settings, "NIRGUARD_HTTP", None))


def problem_response(exc: NirguardError, options: HttpOptions | None = None) -> HttpResponse:
    """Build the Django response for a nirguard exception.

    Args:
        exc: the exception raised by the guard or by nirguard validation.
        options: what to reveal (default: :func:`http_options`).

    Returns:
        An ``application/problem+json`` :class:`~django.http.HttpResponse` with
        the status and headers of :func:`nirguard.http.problem_for`.

    Raises:
        TypeError: ``exc`` is not a :class:`~nirguard.errors.NirguardError`.
    """
    problem = problem_for(exc, options if options is not None else http_options())
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


class _Fields:
    """The values of one request: URL keyword arguments, then the JSON body
    object (parsed once) or the form fields."""

    __slots__ = ("_kwargs", "_payload", "_request")

    def __init__(self, request: HttpRequest, view_kwargs: dict[str, Any]) -> None:
        self._request = request
        self._kwargs = view_kwargs
        self._payload: dict[str, object] | bool | None = False  # False: not parsed yet

    def get(self, name: str) -> object:
        if name in self._kwargs:
            return self._kwargs[name]
        request = self._request
        if request.content_type == "application/json":
            if self._payload is False:
                self._payload = json_object(request.body)
            payload = self._payload
            return payload.get(name) if isinstance(payload, dict) else None
        return request.POST.get(name)


def request_reason(request: HttpRequest, view_kwargs: dict[str, Any] | None = None) -> object:
    """The break-glass reason ``request`` states, where :func:`http_options` says.

    Returns:
        See :func:`nirguard.http.stated_reason`: ``None``, a
        :class:`~nirguard.reasons.Reason`, or a value the guard refuses.
    """
    fields = _Fields(request, view_kwargs or {})
    return stated_reason(http_options(), request.headers.get, fields.get)


def guarded_view(
    guard: LookupGuard,
    *,
    practitioner: Callable[[HttpRequest], str | Awaitable[str]],
    nir: str | Callable[[HttpRequest], object] = "nir",
    is_miss: Callable[[Any], bool] | None = None,
    miss_on: MissOn | None = not_found,
    reason: Callable[[HttpRequest], object] | None = None,
    session: Callable[[HttpRequest], str | Awaitable[str | None] | None] | None = None,
) -> Callable[[View], View]:
    """Guard a Django view; the view receives the open lookup as ``lookup=``.

    The view calls the service with ``lookup.nir`` (the canonical NIR) and
    either passes the result through ``lookup.record(result)`` or raises
    ``Http404`` / ``DoesNotExist``, so that misses count. Denials and invalid
    NIRs are rendered as problem responses before the view runs.

    Args:
        guard: the :class:`~nirguard.LookupGuard`.
        practitioner: callable taking the request and returning the
            authenticated practitioner id (for an async view it may return an
            awaitable, e.g. over ``request.auser()``). Put authentication
            decorators such as ``login_required`` outside this one.
        nir: where the NIR is: the name of a URL keyword argument, of a field
            of a JSON body object or of a form field, or a callable over the
            request. A missing value, or a body that cannot be read as a JSON
            object (nested too deep included), is passed on as ``None`` and
            refused by the guard as an invalid NIR (422).
        is_miss: tells from the recorded result that no such patient exists
            (default: the guard's, i.e. the result is ``None``).
        miss_on: exceptions of the view that mean "no such patient"
            (default :func:`not_found`); ``None`` for the guard's own default.
        reason: callable over the request returning the stated break-glass
            reason (default: :func:`request_reason`, per ``NIRGUARD_HTTP``).
        session: callable over the request returning the id of the login
            session that authenticated the practitioner, or ``None`` (an
            awaitable for an async view); default: none (``guard.md#sessions``).

    Returns:
        A decorator for sync or ``async def`` views.

    Raises:
        TypeError: ``practitioner`` or ``session`` is not callable.
    """
    checked = readers(practitioner, session)
    nir_getter = nir if callable(nir) else None
    nir_name = nir if isinstance(nir, str) else "nir"

    def read(request: HttpRequest, view_kwargs: dict[str, Any]) -> tuple[Any, object]:
        fields = _Fields(request, view_kwargs)
        value = nir_getter(request) if nir_getter is not None else fields.get(nir_name)
        if reason is not None:
            return value, reason(request)
        return value, stated_reason(http_options(), request.headers.get, fields.get)

    def decorate(view: View) -> View:
        return _guarded(guard, view, practitioner, read, is_miss, miss_on, checked)

    return decorate


def _guarded(
    guard: LookupGuard,
    view: View,
    practitioner: Callable[[HttpRequest], Any],
    read: Callable[[HttpRequest, dict[str, Any]], tuple[Any, object]],
    is_miss: Callable[[Any], bool] | None,
    miss_on: MissOn | None,
    session: Callable[[HttpRequest], Any] | None,
) -> View:
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                who: Any = practitioner(request)
                if inspect.isawaitable(who):  # e.g. an ``await request.auser()`` lookup
                    who = await who
                value, stated = read(request, kwargs)
                sid: Any = None if session is None else session(request)
                if inspect.isawaitable(sid):
                    sid = await sid
                async with guard.lookup(
                    who, value, is_miss=is_miss, miss_on=miss_on, reason=stated, session=sid
                ) as lk:
                    response: Awaitable[Any] = view(request, *args, lookup=lk, **kwargs)
                    return await response
            except NirguardError as exc:
                return problem_response(exc)

        return async_wrapper

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            who: Any = practitioner(request)
            value, stated = read(request, kwargs)
            sid = None if session is None else session(request)
            with guard.lookup(
                who, value, is_miss=is_miss, miss_on=miss_on, reason=stated, session=sid
            ) as lk:
                return view(request, *args, lookup=lk, **kwargs)
        except NirguardError as exc:
            return problem_response(exc)

    return wrapper


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
