"""The Django app of nirguard's admin commands: add ``"nirguard.ops"`` to ``INSTALLED_APPS``.

It brings two management commands, the Django side of ``nirguard status`` and
``nirguard unlock`` (as django-axes brings ``axes_reset``)::

    python manage.py nirguard_status PRACTITIONER [--json]
    python manage.py nirguard_unlock PRACTITIONER --reason TEXT [--by NAME]

Both act on the guard the project's settings describe: the object that
``NIRGUARD_GUARD`` names (a dotted path, ``"portal.security.guard"``), else a
guard built from the ``NIRGUARD_*`` settings (:mod:`nirguard.config`). Every
unlock is audited with who did it and why; it is refused when the settings
give no audit trail. The app has no models, no migrations and no views.
"""

from __future__ import annotations

__all__: list[str] = []
