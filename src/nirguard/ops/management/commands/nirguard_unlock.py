"""``manage.py nirguard_unlock PRACTITIONER --reason TEXT``: lift a lockout, audited."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from nirguard._ops import status_text, unlock_arguments
from nirguard.errors import NirguardError
from nirguard.ops.management.commands._guard import project_guard

__all__ = ["Command"]


class Command(BaseCommand):  # type: ignore[misc]  # django is untyped here
    """Lift a practitioner's lockout; the audit trail records who did it and why."""

    help = (
        "Lift a practitioner's lockout and reset what would lock it again at once. "
        "Audited (outcome 'unlocked') with who (--by) and why (--reason)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("practitioner", help="the practitioner id")
        parser.add_argument("--reason", required=True, help="why (audited)")
        parser.add_argument("--by", help="who unlocks (audited; default: your login name)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            actor, note = unlock_arguments(options["by"], options["reason"])
        except NirguardError as exc:
            raise CommandError(str(exc)) from None
        guard, settings = project_guard(audited=True)
        try:
            guard.unlock(options["practitioner"], by=actor, reason=note)
            status = guard.status(options["practitioner"])
        except NirguardError as exc:
            raise CommandError(str(exc)) from None
        finally:
            guard.close()  # the unlock's audit event is written before the command ends
        self.stderr.write(f"{options['practitioner']} unlocked by {actor} (audited)")
        self.stdout.write(status_text(status, settings))
