"""Web-framework integrations, one module per framework, each behind an extra.

* :mod:`nirguard.integrations.fastapi` (FastAPI and Starlette, the ``fastapi`` extra)
* :mod:`nirguard.integrations.flask` (the ``flask`` extra)
* :mod:`nirguard.integrations.django` (the ``django`` extra)

Each module imports its framework when it is imported; this package and
``import nirguard`` import none of them. All of them render errors through
:func:`nirguard.http.problem_for`, so the status codes and bodies are the same
whatever the framework.
"""

from __future__ import annotations

__all__: list[str] = []
