"""``manage.py nirguard_status PRACTITIONER``: remaining quotas and lockout (as ``nirguard status``)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from nirguard._ops import status_record, status_text
from nirguard.errors import NirguardError
from nirguard.ops.management.commands._guard import project_guard

__all__ = ["Command"]


class Command(BaseCommand):  # type: ignore[misc]  # django is untyped here
    """Show a practitioner's remaining quotas and lockout; consumes nothing."""

    help = "Show a practitioner's remaining quotas and lockout (consumes nothing)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("practitioner", help="the practitioner id")
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")

    def handle(self, *args: Any, **options: Any) -> None:
        guard, settings = project_guard(audited=False)
        try:
            status = guard.status(options["practitioner"])
        except NirguardError as exc:
            raise CommandError(str(exc)) from None
        finally:
            guard.close()
        if options["json"]:
            self.stdout.write(json.dumps(status_record(status, settings), sort_keys=True))
        else:
            self.stdout.write(status_text(status, settings))
