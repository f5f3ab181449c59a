"""Flask integration (the ``flask`` extra).

* :func:`init_app` registers one error handler that renders every
  :class:`~nirguard.errors.NirguardError` as an RFC 9457 problem response (see
  :mod:`nirguard.http`), and sets the app's :class:`~nirguard.http.HttpOptions`
  (what refusals reveal, where a break-glass reason is stated).
* :func:`guarded_view` guards a view: it reads the practitioner, the NIR and
  a stated reason from the request, runs ``with guard.lookup(...)`` and passes
  the open lookup to the view as ``lookup=``; ``abort(404)`` in the view
  counts as a miss::

      @app.post("/infopatient")
      @guarded_view(guard, practitioner=current_rpps, nir="nir")
      def infopatient(*, lookup):
          identity = service.find(lookup.nir)
          if identity is None:
              abort(404)                      # counted as a miss
          return identity

* Or guard the lookup function itself with ``guard.protect``, reading the
  NIR and the reason with :func:`request_field` and :func:`request_reason`::

      @guard.protect(practitioner="practitioner_id", nir="nir", reason="reason")
      def infopatient(practitioner_id, nir, reason=None): ...

      infopatient(current_rpps(), request_field("nir"), request_reason())

A denial becomes a 4xx/5xx problem response; the view (or the service
function) is not called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

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
    "guarded_view",
    "init_app",
    "not_found",
    "problem_response",
    "request_field",
    "request_reason",
]

_EXTENSION = "nirguard.http"

View = Callable[..., Any]


def not_found(exc: BaseException) -> bool:
    """Whether ``exc`` is Flask's "not found": ``abort(404)`` / ``werkzeug.exceptions.NotFound``.

    The default ``miss_on`` of :func:`guarded_view`; pass it to
    ``guard.protect(miss_on=not_found)`` for a decorated function.
    """
    if not isinstance(exc, HTTPException):
        return False
    if exc.code == 404:
        return True
    return getattr(exc.response, "status_code", None) == 404  # abort(a 404 response)


def problem_response(exc: NirguardError, options: HttpOptions | None = None) -> Response:
    """Build the Flask response for a nirguard exception.

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
    response = Response(problem_json(problem), status=problem.status, mimetype=PROBLEM_CONTENT_TYPE)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def _options() -> HttpOptions:
    options = current_app.extensions.get(_EXTENSION)
    return options if isinstance(options, HttpOptions) else HttpOptions.of(None)


def _handle(exc: Exception) -> Response:
    if not isinstance(exc, NirguardError):  # pragma: no cover - registered for NirguardError
        raise exc
    return problem_response(exc, _options())


def init_app(app: Flask | Any, *, options: HttpOptions | None = None) -> None:
    """Register the nirguard error handler on a Flask app or blueprint.

    Args:
        app: a :class:`flask.Flask` (or a ``Blueprint``, for its own views).
        options: what refusals reveal and where a break-glass reason is
            stated (:class:`~nirguard.http.HttpOptions`, default: nothing
            revealed, reason in ``X-Nirguard-Reason``). Kept in
            ``app.extensions``; for a blueprint, set on the app it is
            registered on unless the app has its own.

    Raises:
        TypeError: ``app`` cannot register error handlers.
        ConfigurationError: ``options`` is not an :class:`~nirguard.http.HttpOptions`.
    """
    register = getattr(app, "register_error_handler", None)
    if register is None:
        raise TypeError("init_app() expects a Flask app or blueprint")
    chosen = HttpOptions.of(options)
    if isinstance(app, Flask):
        app.extensions[_EXTENSION] = chosen
    elif hasattr(app, "record_once"):
        app.record_once(lambda state: state.app.extensions.setdefault(_EXTENSION, chosen))
    register(NirguardError, _handle)


_PAYLOAD = "nirguard.payload"


def _payload() -> dict[str, object] | None:
    environ = request.environ  # parsed once per request, for the NIR and the reason alike
    if _PAYLOAD not in environ:
        environ[_PAYLOAD] = json_object(request.get_data(cache=True))
    payload: dict[str, object] | None = environ[_PAYLOAD]
    return payload


def request_field(name: str) -> object:
    """A value of the current request: URL variable, JSON body member or form field.

    Returns:
        The value, or ``None`` when absent or when the body cannot be read as
        a JSON object (bad syntax, nested too deep): the guard then refuses
        it as an invalid NIR (422), never with an unhandled error.
    """
    view_args = request.view_args or {}
    if name in view_args:
        return view_args[name]
    if request.is_json:
        payload = _payload()
        return None if payload is None else payload.get(name)
    return request.form.get(name)


def request_reason() -> object:
    """The break-glass reason the current request states, where the app's options say.

    Returns:
        See :func:`nirguard.http.stated_reason`: ``None``, a
        :class:`~nirguard.reasons.Reason`, or a value the guard refuses.
    """
    return stated_reason(_options(), request.headers.get, request_field)


def guarded_view(
    guard: LookupGuard,
    *,
    practitioner: Callable[[], str],
    nir: str | Callable[[], object] = "nir",
    is_miss: Callable[[Any], bool] | None = None,
    miss_on: MissOn | None = not_found,
    reason: Callable[[], object] | None = None,
    session: Callable[[], str | None] | None = None,
) -> Callable[[View], View]:
    """Guard a Flask view; the view receives the open lookup as ``lookup=``.

    The view calls the service with ``lookup.nir`` (the canonical NIR) and
    either passes the result through ``lookup.record(result)`` or calls
    ``abort(404)``, so that misses count. Denials and invalid NIRs are
    rendered as problem responses before the view runs.

    Args:
        guard: the :class:`~nirguard.LookupGuard`.
        practitioner: callable returning the authenticated practitioner id
            (from your login session; call ``abort(401)`` in it when there is none).
        nir: where the NIR is: a name for :func:`request_field` (URL
            variable, JSON member, form field) or a callable. A missing or
            unreadable value is refused by the guard as an invalid NIR.
        is_miss: tells from the recorded result that no such patient exists
            (default: the guard's, i.e. the result is ``None``).
        miss_on: exceptions of the view that mean "no such patient"
            (default :func:`not_found`); ``None`` for the guard's own default.
        reason: callable returning the stated break-glass reason (default
            :func:`request_reason`).
        session: callable returning the id of the login session that
            authenticated the practitioner, or ``None`` (e.g. an id the login
            stored in ``flask.session``); default: none (``guard.md#sessions``).

    Returns:
        A view decorator.

    Raises:
        TypeError: ``practitioner`` or ``session`` is not callable.
    """
    get_session = readers(practitioner, session)
    get_nir: Callable[[], object] = (
        functools.partial(request_field, nir) if isinstance(nir, str) else nir
    )
    get_reason = request_reason if reason is None else reason

    def decorate(view: View) -> View:
        return _guarded(
            guard, view, practitioner, get_nir, get_reason, is_miss, miss_on, get_session
        )

    return decorate


def _guarded(
    guard: LookupGuard,
    view: View,
    practitioner: Callable[[], str],
    get_nir: Callable[[], object],
    get_reason: Callable[[], object],
    is_miss: Callable[[Any], bool] | None,
    miss_on: MissOn | None,
    get_session: Callable[[], str | None] | None,
) -> View:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            who = practitioner()  # first: it authenticates, the session is then the login's
            with guard.lookup(
                who,
                get_nir(),  # type: ignore[arg-type]  # the guard validates it
                is_miss=is_miss,
                miss_on=miss_on,
                reason=get_reason(),
                session=None if get_session is None else get_session(),
            ) as lookup:
                return view(*args, lookup=lookup, **kwargs)
        except NirguardError as exc:
            return problem_response(exc, _options())

    return wrapper
