"""FastAPI and Starlette integration (the ``fastapi`` extra).

Two pieces, both async all the way (the guard runs through its async path,
so nothing blocks the event loop):

* :func:`install_exception_handlers` maps every
  :class:`~nirguard.errors.NirguardError` to an RFC 9457 problem response
  (see :mod:`nirguard.http`) in one call, on a FastAPI or a plain Starlette
  app, and sets the app's :class:`~nirguard.http.HttpOptions` (what refusals
  reveal, where a break-glass reason is stated).
* :func:`lookup_dependency` makes a FastAPI dependency that runs the guard before
  the endpoint and hands it the open lookup; on any denial the endpoint is not
  called. It reads the practitioner, the NIR and a stated reason from the
  request, and counts a ``HTTPException(404)`` raised by the endpoint as a
  miss (through the handler :func:`install_exception_handlers` installs: the
  dependency is a plain ``async def``, not a ``yield`` dependency, which costs
  FastAPI a context manager and a cancel scope per request)::

      guarded = lookup_dependency(guard, practitioner=current_rpps, nir="nir")

      @app.post("/infopatient")
      async def infopatient(lookup: Annotated[GuardedLookup, Depends(guarded)]) -> Identity:
          identity = await service.find(lookup.nir)
          if identity is None:
              raise HTTPException(status_code=404)   # counted as a miss
          return identity

  Decorating an ``async def`` endpoint with ``guard.protect(...)`` works as
  well: the guard keeps the endpoint's signature, so FastAPI still sees its
  parameters (pass ``miss_on=not_found`` to count 404s).

Keep the NIR out of the URL (path or query string): URLs end up in access
logs, proxies and browser history. Read it from the request body, as
``nir="nir"`` does.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from types import CoroutineType
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from nirguard.errors import NirguardError
from nirguard.guard import GuardedLookup, LookupGuard, MissOn
from nirguard.http import (
    PROBLEM_CONTENT_TYPE,
    HttpOptions,
    problem_for,
    problem_json,
    stated_reason,
)
from nirguard.integrations._request import json_object, readers

__all__ = [
    "install_exception_handlers",
    "lookup_dependency",
    "not_found",
    "problem_response",
    "request_reason",
]

_STATE = "nirguard_http"
#: Where the dependency keeps the open lookup, for the HTTPException handler.
_LOOKUP = "nirguard.lookup"


def not_found(exc: BaseException) -> bool:
    """Whether ``exc`` is FastAPI's / Starlette's "not found": an ``HTTPException`` with 404.

    The default ``miss_on`` of :func:`lookup_dependency`; pass it to
    ``guard.protect(miss_on=not_found)`` for a decorated endpoint.
    """
    return isinstance(exc, HTTPException) and exc.status_code == 404


def problem_response(exc: NirguardError, options: HttpOptions | None = None) -> Response:
    """Build the Starlette response for a nirguard exception.

    Args:
        exc: the exception raised by the guard or by nirguard validation.
        options: the app's :class:`~nirguard.http.HttpOptions` (default: the defaults).

    Returns:
        An ``application/problem+json`` response with the status and headers
        of :func:`nirguard.http.problem_for`.

    Raises:
        TypeError: ``exc`` is not a :class:`~nirguard.errors.NirguardError`.
    """
    problem = problem_for(exc, options)
    return Response(
        content=problem_json(problem),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_CONTENT_TYPE,
    )


def _options(request: Request) -> HttpOptions:
    app = request.scope.get("app")
    options = getattr(getattr(app, "state", None), _STATE, None)
    return options if isinstance(options, HttpOptions) else HttpOptions.of(None)


async def _nirguard_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, NirguardError):  # pragma: no cover - registered for NirguardError
        raise exc
    return problem_response(exc, _options(request))


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    # The endpoint raised an HTTPException: finish its open lookup (a 404 is a miss), then
    # answer as FastAPI does.
    lookup = request.scope.get(_LOOKUP)
    if isinstance(lookup, GuardedLookup):
        await lookup.failed(exc)
    from fastapi.exception_handlers import http_exception_handler

    return await http_exception_handler(request, exc)  # type: ignore[arg-type]


async def _redacted_validation_handler(request: Request, exc: Exception) -> Response:
    # FastAPI's default 422 echoes every rejected value ("input", "ctx"): a NIR
    # sent where a number or a model was expected would come straight back.
    from fastapi.responses import JSONResponse

    errors: list[Any] = list(getattr(exc, "errors", list)())
    redacted = [
        {key: error[key] for key in ("type", "loc", "msg") if key in error}
        for error in errors
        if isinstance(error, dict)
    ]
    return JSONResponse(status_code=422, content={"detail": redacted})


def install_exception_handlers(
    app: Any,
    *,
    options: HttpOptions | None = None,
    redact_validation_errors: bool = True,
) -> None:
    """Render every nirguard exception as a problem response on ``app``.

    Args:
        app: a ``fastapi.FastAPI`` or ``starlette.applications.Starlette``.
        options: what refusals reveal and where a break-glass reason is
            stated (:class:`~nirguard.http.HttpOptions`, default: nothing
            revealed, reason in ``X-Nirguard-Reason``). Kept on
            ``app.state``; :func:`lookup_dependency` reads reasons where it says.
        redact_validation_errors: on FastAPI, also replace the default
            request-validation handler by one that drops the rejected values
            (``input``, ``ctx``) from its 422 body, so a NIR sent in a field
            of the wrong type is never echoed. Keeps ``type``, ``loc`` and
            ``msg``.

    Raises:
        TypeError: ``app`` has no ``add_exception_handler`` method.
        ConfigurationError: ``options`` is not an :class:`~nirguard.http.HttpOptions`.
    """
    add = getattr(app, "add_exception_handler", None)
    if add is None:
        raise TypeError("install_exception_handlers() expects a Starlette or FastAPI app")
    setattr(app.state, _STATE, HttpOptions.of(options))
    handler: ExceptionHandler = _nirguard_handler
    add(NirguardError, handler)
    try:
        from fastapi.exceptions import RequestValidationError
    except ImportError:  # plain Starlette: no lookup_dependency, nothing to redact
        return
    add(HTTPException, _http_exception_handler)
    if redact_validation_errors:
        add(RequestValidationError, _redacted_validation_handler)


async def _resolve(getter: Callable[[Request], Any], request: Request) -> Any:
    value = getter(request)
    kind = type(value)
    if kind is CoroutineType or (
        kind is not str and value is not None and inspect.isawaitable(value)
    ):
        value = await value
    return value


_PAYLOAD = "nirguard.payload"


async def _payload(request: Request) -> dict[str, object] | None:
    scope = request.scope  # parsed once per request, for the NIR and the reason alike
    if _PAYLOAD not in scope:
        scope[_PAYLOAD] = json_object(await request.body())
    payload: dict[str, object] | None = scope[_PAYLOAD]
    return payload


def _body_field(name: str) -> Callable[[Request], Awaitable[object]]:
    async def get(request: Request) -> object:
        if name in request.path_params:
            return request.path_params[name]
        payload = await _payload(request)
        return None if payload is None else payload.get(name)

    return get


async def request_reason(request: Request) -> object:
    """The break-glass reason ``request`` states, where the app's options say.

    Returns:
        See :func:`nirguard.http.stated_reason`: ``None``, a
        :class:`~nirguard.reasons.Reason`, or a value the guard refuses.
    """
    options = _options(request)
    if _states_none(options, request):
        return None
    payload = None
    if options.reason_field or options.reason_text_field:
        payload = await _payload(request)
    headers = request.headers

    def header(name: str) -> str | None:
        # Not headers.get: Mapping.get raises and catches a KeyError for an absent header,
        # and the reason's header is absent from nearly every request (~1 us each).
        found = headers.getlist(name)
        return found[0] if found else None

    return stated_reason(
        options, header, lambda name: None if payload is None else payload.get(name)
    )


def _states_none(options: HttpOptions, request: Request) -> bool:
    """Whether ``request`` surely states no reason: the code is read from a header alone and
    that header is absent or blank (then :func:`~nirguard.http.stated_reason` reads nothing
    else: the text only counts after a code). Nearly every request, answered without
    parsing the body nor awaiting anything."""
    name = options.reason_header
    if not name or options.reason_field:
        return False
    found = request.headers.getlist(name)
    return not found or not found[0].strip()


def lookup_dependency(
    guard: LookupGuard,
    *,
    practitioner: Callable[[Request], Any],
    nir: str | Callable[[Request], Any] = "nir",
    is_miss: Callable[[Any], bool] | None = None,
    miss_on: MissOn | None = not_found,
    reason: Callable[[Request], Any] | None = None,
    session: Callable[[Request], Any] | None = None,
) -> Callable[[Request], Awaitable[GuardedLookup] | AsyncIterator[GuardedLookup]]:
    """Make a FastAPI dependency that runs the guard before the endpoint.

    It reads the call from the request, admits the lookup and returns the open
    :class:`~nirguard.guard.GuardedLookup`: the endpoint calls the service with
    ``lookup.nir`` (the canonical NIR), and either passes the result through
    ``lookup.record(result)`` (which finishes the lookup: a miss counted, the
    audit event written) or raises ``HTTPException(404)`` (finished by the
    handler :func:`install_exception_handlers` installs). A lookup the endpoint
    does neither with is finished when the request is done with it, audited
    ``allowed``. Every denial is raised before the endpoint runs, as a problem
    response. With a ``miss_on`` other than :func:`not_found`, it is a ``yield``
    dependency, which sees whatever the endpoint raises.

    Args:
        guard: the :class:`~nirguard.LookupGuard`.
        practitioner: callable taking the request and returning (or awaiting
            to) the authenticated practitioner id. Raise an HTTP 401 from it
            when there is none.
        nir: where the NIR is: the name of a path parameter or of a field of
            the JSON body object, or a callable over the request (sync or
            async). A missing value, or a body that cannot be read as a JSON
            object (nested too deep included), is passed on as ``None`` and
            refused by the guard as an invalid NIR (422, counted against
            ``invalid_nirs``).
        is_miss: tells from the recorded result that no such patient exists
            (default: the guard's, i.e. the result is ``None``).
        miss_on: exceptions of the endpoint that mean "no such patient"
            (default :func:`not_found`: an ``HTTPException`` with 404);
            ``None`` for the guard's own default.
        reason: callable over the request (sync or async) returning the
            stated break-glass reason; default :func:`request_reason`, which
            reads the header or field of the app's
            :class:`~nirguard.http.HttpOptions`.
        session: callable over the request (sync or async) returning the id of the
            login session that authenticated the practitioner, or ``None``; default:
            none (``guard.md#sessions``).

    Returns:
        The dependency, for ``Depends(...)``.

    Raises:
        TypeError: ``practitioner`` or ``session`` is not callable.
    """
    session = readers(practitioner, session)
    get_nir: Callable[[Request], Any] = _body_field(nir) if isinstance(nir, str) else nir
    get_reason: Callable[[Request], Any] = request_reason if reason is None else reason
    if miss_on is not not_found:
        # A test of the endpoint's own exceptions: only a yield dependency sees them all.
        return _yielding(guard, practitioner, get_nir, get_reason, is_miss, miss_on, session)
    return _returning(guard, practitioner, nir, get_reason, is_miss, miss_on, session)


def _returning(
    guard: LookupGuard,
    practitioner: Callable[[Request], Any],
    nir: str | Callable[[Request], Any],
    get_reason: Callable[[Request], Any],
    is_miss: Callable[[Any], bool] | None,
    miss_on: MissOn | None,
    session: Callable[[Request], Any] | None,
) -> Callable[[Request], Awaitable[GuardedLookup]]:
    # What _resolve(practitioner), _resolve(get_nir) and _resolve(get_reason) give, read
    # inline where they are the usual kinds (a sync reader, a body field, the default
    # reason): the same values, without three coroutines per request.
    field = nir if isinstance(nir, str) else None
    get_nir = nir if not isinstance(nir, str) else _body_field(nir)
    default_reason = get_reason is request_reason
    open_lookup = guard.open_lookup

    async def guarded_lookup(request: Request) -> GuardedLookup:
        who = practitioner(request)
        if type(who) is not str and who is not None and inspect.isawaitable(who):
            who = await who
        if field is None:
            value = await _resolve(get_nir, request)
        else:
            params = request.scope.get("path_params")
            if params and field in params:
                value = params[field]
            else:
                payload = await _payload(request)
                value = None if payload is None else payload.get(field)
        if not default_reason:
            stated = await _resolve(get_reason, request)
        elif _states_none(_options(request), request):
            stated = None
        else:
            stated = await request_reason(request)
        sid = None if session is None else session(request)
        if type(sid) is not str and sid is not None and inspect.isawaitable(sid):
            sid = await sid
        lookup = await open_lookup(
            who, value, is_miss=is_miss, miss_on=miss_on, reason=stated, session=sid
        )
        request.scope[_LOOKUP] = lookup  # the HTTPException handler finishes it
        return lookup

    return guarded_lookup


def _yielding(
    guard: LookupGuard,
    practitioner: Callable[[Request], Any],
    get_nir: Callable[[Request], Any],
    get_reason: Callable[[Request], Any],
    is_miss: Callable[[Any], bool] | None,
    miss_on: MissOn | None,
    session: Callable[[Request], Any] | None,
) -> Callable[[Request], AsyncIterator[GuardedLookup]]:
    async def guarded_lookup(request: Request) -> AsyncIterator[GuardedLookup]:
        who = await _resolve(practitioner, request)
        value = await _resolve(get_nir, request)
        stated = await _resolve(get_reason, request)
        sid = None if session is None else await _resolve(session, request)
        async with guard.lookup(
            who, value, is_miss=is_miss, miss_on=miss_on, reason=stated, session=sid
        ) as lookup:
            yield lookup

    return guarded_lookup
