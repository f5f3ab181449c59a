"""Flask integration (``pip install nirguard[flask]``).

:func:`init_app` registers one error handler that renders every
:class:`~nirguard.errors.NirguardError` as an RFC 9457 problem response (see
:mod:`nirguard.http`). Guard the lookup itself with ``guard.protect``, on the
service function the view calls or on the view::

    app = Flask(__name__)
    init_app(app)

    @guard.protect(practitioner="practitioner_id", nir="nir", is_miss=lambda r: r is None)
    def infopatient(practitioner_id: str, nir: str) -> Identity | None: ...

    @app.post("/infopatient")
    def lookup_view():
        identity = infopatient(current_rpps(), request.get_json(silent=True).get("nir"))
        ...

A denial raised inside the view reaches the handler and becomes a 4xx/5xx
problem response; the service function is not called.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response

from nirguard.errors import NirguardError
from nirguard.http import PROBLEM_CONTENT_TYPE, problem_for, problem_json

__all__ = ["init_app", "problem_response"]


def problem_response(exc: NirguardError) -> Response:
    """Build the Flask response for a nirguard exception.

    Args:
        exc: the exception raised by the guard or by nirguard validation.

    Returns:
        An ``application/problem+json`` response with the status and headers
        of :func:`nirguard.http.problem_for`.

    Raises:
        TypeError: ``exc`` is not a :class:`~nirguard.errors.NirguardError`.
    """
    problem = problem_for(exc)
    response = Response(problem_json(problem), status=problem.status, mimetype=PROBLEM_CONTENT_TYPE)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def _handle(exc: Exception) -> Response:
    if not isinstance(exc, NirguardError):  # pragma: no cover - registered for NirguardError
        raise exc
    return problem_response(exc)


def init_app(app: Flask | Any) -> None:
    """Register the nirguard error handler on a Flask app or blueprint.

    Args:
        app: a :class:`flask.Flask` (or a ``Blueprint``, for its own views).

    Raises:
        TypeError: ``app`` cannot register error handlers.
    """
    register = getattr(app, "register_error_handler", None)
    if register is None:
        raise TypeError("init_app() expects a Flask app or blueprint")
    register(NirguardError, _handle)
