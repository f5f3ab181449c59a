"""The console's locks: who may see what, CSRF tokens, response headers.

* :class:`Officer` is what the portal's ``authorize(request)`` returns: a name and a
  role (``viewer`` reads; ``officer`` also sees free text, searches a NIR and acts).
* :class:`Csrf` makes and checks the token every form carries: an HMAC of the officer's
  name and the time, under a key of the console's, valid for :data:`CSRF_LIFETIME` seconds.
  A token made for one officer is refused for another. A cross-site request
  (``Sec-Fetch-Site: cross-site`` or an ``Origin`` of another host) is refused as well.
* :data:`HEADERS` go on every response: a Content-Security-Policy with no script and no
  inline style, no framing, no caching, no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from nirguard.errors import ConfigurationError
from nirguard.keys import SecretKey

__all__ = ["CSRF_LIFETIME", "HEADERS", "Authorize", "Csrf", "Officer", "call_authorize"]

Role = Literal["viewer", "officer"]
CSRF_LIFETIME = 8 * 3600

HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


@dataclass(frozen=True, slots=True)
class Officer:
    """Who is using the console, as the portal's ``authorize`` says.

    Attributes:
        name: the person's identifier in the portal (recorded with every action).
        role: ``"viewer"`` (reads cases, locks, grants without their free text, the portal
            view) or ``"officer"`` (also free text, NIR search, unlock, verdicts, case changes).

    Raises:
        ConfigurationError: an empty name or an unknown role.

    >>> Officer("m.dupont", "officer").can_act
    True
    """

    name: str
    role: Role = "viewer"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 256:
            raise ConfigurationError("an officer needs a name (1 to 256 characters)")
        if self.role not in ("viewer", "officer"):
            raise ConfigurationError("an officer's role is 'viewer' or 'officer'")

    @property
    def can_act(self) -> bool:
        """Whether this person may see free text, search a NIR and change anything."""
        return self.role == "officer"


#: ``authorize(request) -> Officer | None`` (sync or async): ``None`` refuses the request.
Authorize = Callable[[Any], "Officer | Awaitable[Officer | None] | None"]


async def call_authorize(authorize: Authorize, request: Any) -> Officer | None:
    """The portal's verdict on ``request``; anything but an :class:`Officer` refuses it."""
    try:
        result = authorize(request)
        if inspect.isawaitable(result):
            result = await result
    except Exception:  # a failing authorize lets nobody in
        return None
    return result if isinstance(result, Officer) else None


class Csrf:
    """CSRF tokens bound to an officer (see the module's docstring)."""

    __slots__ = ("_key",)

    def __init__(self, key: SecretKey | None) -> None:
        if key is None:
            material = secrets.token_bytes(32)
        else:
            material = hashlib.sha256(
                b"nirguard/v1/console-csrf/" + key.to_text().encode()
            ).digest()
        self._key = material  # tokens follow the wall clock, whatever clock the console reads

    def _mac(self, officer: str, stamp: str) -> str:
        message = f"{officer}\x00{stamp}".encode("utf-8", "replace")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def token(self, officer: Officer, now: float | None = None) -> str:
        """A fresh token for ``officer``'s forms (``now``: POSIX seconds, default the clock)."""
        stamp = str(int(time.time() if now is None else now))
        return f"{stamp}.{self._mac(officer.name, stamp)}"

    def check(self, officer: Officer, token: object, now: float | None = None) -> bool:
        """Whether ``token`` was made for ``officer`` by this console, less than 8 hours ago."""
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 100:
            return False
        stamp, mac = token.split(".")
        age = (time.time() if now is None else now) - int(stamp) if stamp.isdigit() else -1
        if not 0 <= age <= CSRF_LIFETIME:
            return False
        return hmac.compare_digest(mac, self._mac(officer.name, stamp))

    def __repr__(self) -> str:
        return "Csrf()"


def same_origin(headers: Any, host: str | None) -> bool:
    """Whether a state-changing request comes from the console's own pages.

    A browser says where a request comes from in ``Sec-Fetch-Site``: only ``same-origin``
    passes. Without it (an older browser), an ``Origin`` must name this host; the console's
    ``no-referrer`` policy makes some browsers send ``Origin: null``, which is refused
    there. A request with neither (a script outside a browser) is judged by its CSRF token.
    """
    site = headers.get("sec-fetch-site")
    if site is not None:
        return bool(site == "same-origin")
    origin = headers.get("origin")
    if origin is None:
        return True
    return host is not None and origin != "null" and urlsplit(origin).netloc == host
