"""An officers file: who may open a standalone console, with hashed tokens.

One line per person, ``name:role:sha256-of-token`` (``#`` starts a comment). The token is
random (256 bits), printed once when the person is added, and never stored: only its SHA-256
is (a slow hash adds nothing to a random 256-bit secret). The browser sends the name and the
token with HTTP Basic authentication, which ``nirguard console`` asks for; serve it on
localhost or behind TLS, since Basic sends the token with every request.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "officers")
>>> token = OfficersFile(path).add("m.dupont", "officer")
>>> OfficersFile(path).check("m.dupont", token)
Officer(name='m.dupont', role='officer')
>>> OfficersFile(path).check("m.dupont", "guess") is None
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Any

from nirguard.console._security import Officer
from nirguard.errors import ConfigurationError

__all__ = ["OfficersFile"]

_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class OfficersFile:
    """The officers of a standalone console, read from ``path`` at each request.

    Raises:
        ConfigurationError: a line that is not ``name:role:hex`` (its line number only).
    """

    __slots__ = ("_path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)

    def _entries(self) -> dict[str, tuple[str, str]]:
        entries: dict[str, tuple[str, str]] = {}
        try:
            text = self._path.read_text("utf-8")
        except FileNotFoundError:
            return entries
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(":")
            if len(parts) != 3 or parts[1] not in ("viewer", "officer") or len(parts[2]) != 64:
                raise ConfigurationError(f"officers file: line {number} is not name:role:sha256")
            entries[parts[0]] = (parts[1], parts[2])
        return entries

    def add(self, name: str, role: str) -> str:
        """Add (or replace) ``name`` with a new token; returns the token, shown once.

        Raises:
            ConfigurationError: a name outside ``A-Z a-z 0-9 . _ @ -`` or an unknown role.
        """
        if not _NAME.fullmatch(name) or role not in ("viewer", "officer"):
            raise ConfigurationError("name: 1-64 of A-Z a-z 0-9 . _ @ -; role: viewer or officer")
        token = secrets.token_urlsafe(32)
        lines = [
            line
            for line in (self._path.read_text("utf-8").splitlines() if self._path.exists() else [])
            if line.split(":", 1)[0] != name
        ]
        lines.append(f"{name}:{role}:{_digest(token)}")
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        return token

    def check(self, name: str, token: str) -> Officer | None:
        """The officer whose name and token these are, or ``None``."""
        entry = self._entries().get(name)
        expected = entry[1] if entry else _digest(secrets.token_hex(16))
        if hmac.compare_digest(_digest(token), expected) and entry is not None:
            return Officer(name, entry[0])  # type: ignore[arg-type]
        return None

    def authorize(self, request: Any) -> Officer | None:
        """``authorize`` for :class:`~nirguard.console.Console`: HTTP Basic, name and token."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, token = decoded.partition(":")
        return self.check(name, token) if sep else None

    def __repr__(self) -> str:
        return f"OfficersFile({str(self._path)!r})"
