"""The one rule that says what a store's failure is, on every path.

* An **outage** (the store cannot decide now, and may later): a connection that
  cannot be opened or was lost, a deadline passed, a reply stream that cannot be
  trusted (garbage, a reply nobody asked for), and the error replies of a server
  that is not ready: ``LOADING``, ``READONLY``, ``CLUSTERDOWN``, ``MASTERDOWN``,
  ``TRYAGAIN``, ``BUSY``, ``MISCONF``, ``NOREPLICAS``, ``OOM``. Raised as
  :class:`StoreUnavailable`, the one type the guard turns into
  :class:`~nirguard.GuardUnavailable` (or lets through under ``fail_open``).
* A **misconfiguration** (it will not fix itself): a refused login (``WRONGPASS``,
  ``NOAUTH``), a missing permission (``NOPERM``), an unknown command, a database
  index out of range, a Cluster node given as a plain server or the reverse, a
  host name that does not resolve, a TLS certificate that fails verification.
  Raised as :class:`~nirguard.ConfigurationError`: ``fail_open`` never applies.
* Anything else (a Lua error on a corrupt record, a bug) is raised as itself.

Messages never hold the storage URI, a password or a key: they name the class of
failure only.
"""

from __future__ import annotations

import socket
import ssl
from typing import Final

from nirguard.errors import ConfigurationError

__all__ = ["StoreUnavailable", "classify", "connect_error"]


class StoreUnavailable(Exception):
    """The store cannot decide now (an outage): refused within the deadline."""


#: Error-reply prefixes of a server that is not ready (an outage).
OUTAGE_REPLIES: Final = (
    "LOADING",
    "READONLY",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "TRYAGAIN",
    "BUSY",
    "MISCONF",
    "NOREPLICAS",
    "OOM",
)
#: Error replies that say the deployment is wrong (a misconfiguration).
_CONFIG_PREFIXES: Final = ("WRONGPASS", "NOAUTH", "NOPERM")
_CONFIG_PHRASES: Final = (
    "unknown command",
    "invalid password",
    "db index is out of range",
    "invalid db index",
    "cluster support disabled",
    "authentication required",
    "unauthenticated",
    "without any password configured",
)
#: redis-py's names for some of these (its parser strips the prefix from the message).
_OUTAGE_CLASSES: Final = frozenset(
    {"ReadOnlyError", "BusyLoadingError", "ClusterDownError", "TryAgainError", "MasterDownError"}
)
_CONFIG_CLASSES: Final = frozenset({"AuthenticationError", "AuthenticationWrongNumberOfArgsError"})


def classify(error: Exception) -> Exception:
    """What an error reply from the store is: :class:`StoreUnavailable`,
    :class:`~nirguard.ConfigurationError`, or the reply's own exception (a bug)."""
    message = str(error)
    head = message.split(" ", 1)[0].upper()
    name = type(error).__name__
    if head in OUTAGE_REPLIES or name in _OUTAGE_CLASSES:
        return StoreUnavailable(f"nirguard: the store is not ready ({head or name})")
    lowered = message.lower()
    if (
        head in _CONFIG_PREFIXES
        or name in _CONFIG_CLASSES
        or any(phrase in lowered for phrase in _CONFIG_PHRASES)
    ):
        what = head if head in _CONFIG_PREFIXES else _first_phrase(lowered) or name
        return ConfigurationError(f"nirguard: the store refused the guard's commands ({what})")
    if head in ("MOVED", "ASK", "CROSSSLOT"):
        return ConfigurationError(
            "nirguard: the store is a Redis Cluster node: use a redis+cluster:// URI"
        )
    return error


def _first_phrase(lowered: str) -> str:
    for phrase in _CONFIG_PHRASES:
        if phrase in lowered:
            return phrase
    return ""


def connect_error(error: BaseException) -> Exception:
    """What a failure to open a connection is: a name that does not resolve, or a TLS
    certificate that fails verification, is a misconfiguration; the rest an outage."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return ConfigurationError("nirguard: the store's TLS certificate failed verification")
    if isinstance(error, ssl.SSLError):
        return ConfigurationError(
            f"nirguard: the TLS handshake with the store failed ({error.reason or 'ssl'})"
        )
    if isinstance(error, socket.gaierror) and error.errno in (
        socket.EAI_NONAME,
        getattr(socket, "EAI_NODATA", socket.EAI_NONAME),
    ):
        return ConfigurationError("nirguard: the store's host name does not resolve")
    return StoreUnavailable(f"nirguard: cannot connect to the store ({type(error).__name__})")
