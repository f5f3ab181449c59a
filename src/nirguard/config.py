"""One configuration entry point: a guard from the environment, Flask config or Django settings.

The same ``NIRGUARD_*`` names are read from whichever source the portal already
configures itself with, as flask-limiter reads ``RATELIMIT_STORAGE_URI`` from
the app config and django-axes reads ``AXES_*`` from settings:

* the environment: ``guard_from_settings()`` (or ``guard_from_settings(os.environ)``);
* Flask: ``guard_from_settings(app.config)``;
* Django: ``guard_from_settings(django.conf.settings)``.

=============================  ==================================================  =====================
setting                        meaning                                             default
=============================  ==================================================  =====================
``NIRGUARD_STORAGE``           quota store URI (``memory://``, ``redis://...``)    ``memory://``
``NIRGUARD_STORAGE_OPTIONS``   the store client's options: a dict, or JSON text     none
``NIRGUARD_KEY_PREFIX``        namespace of the guard's keys in the store          ``nirguard``
``NIRGUARD_KEY``               the guard's pseudonym key, text form                none (see below)
``NIRGUARD_KEY_FILE``          or a file holding it (``nirguard keygen -o``)       none
``NIRGUARD_POLICY``            a policy file (``.json``, ``.toml``); in Python     ``QuotaPolicy()``
                               config also a ``QuotaPolicy``, a dict or a callable
``NIRGUARD_POLICY_<FIELD>``    one policy field (``NIRGUARD_POLICY_LOOKUPS``)       the field's default
``NIRGUARD_AUDIT_LOG``         the audit trail, a JSON-lines file (mode 0600)      none
``NIRGUARD_AUDIT_KEY``         the audit key (``nirguard audit keygen``): seals    none (unsealed)
                               the trail (``_FILE``: a file holding it)
``NIRGUARD_ALERT_LOG``         alerts, a JSON-lines file (mode 0600)               the ``nirguard.alerts``
                                                                                   logger
``NIRGUARD_BREAK_GLASS_LOG``   break-glass grants with their free text (0600)      none
``NIRGUARD_ENFORCE``           ``false``: shadow mode                              ``true``
``NIRGUARD_FAIL_OPEN``         ``true``: **dangerous**, lookups pass unguarded     ``false``
                               while the store is unreachable
``NIRGUARD_DEADLINE``          seconds one decision may take on Redis              ``0.5``
=============================  ==================================================  =====================

A shared store (anything but ``memory://``) needs the key: every process must
key patients alike, so a missing key there is a :class:`~nirguard.errors.ConfigurationError`.
Errors name the setting, never its value: a storage URI may hold a password,
and a key is a key.

>>> settings = GuardSettings.load({"NIRGUARD_POLICY_LOOKUPS": "5/minute"})
>>> settings.policy.lookups
'5/minute'
>>> settings.build()
LookupGuard(storage='memory', enforce=True, fail_open=False)
>>> GuardSettings.load({"NIRGUARD_STORAGE": "redis://:s3cret@cache:6379/0"})
GuardSettings(storage='redis://:***@cache:6379/0', key=None, policy=QuotaPolicy(...), ...)
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nirguard._audit_seal import material_of
from nirguard._hook_files import JsonLinesHook
from nirguard.audit_chain import AuditKey, SealedAuditLog
from nirguard.errors import ConfigurationError, InvalidKey, PolicyError
from nirguard.guard import LookupGuard
from nirguard.keys import SecretKey
from nirguard.policy import QuotaPolicy
from nirguard.pseudonym import Pseudonymiser

__all__ = ["GuardSettings", "JsonLinesHook", "guard_from_settings", "redact_uri"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SCHEMES = frozenset(
    {"memory", "redis", "rediss", "unix", "redis+cluster", "redis+sentinel", "rediss+sentinel"}
)
Source = Mapping[str, Any] | object | None


def _reader(source: Source) -> Callable[[str], Any]:
    """``name -> value or None`` over a mapping (environment, Flask config) or an object."""
    if source is None:
        source = os.environ
    if isinstance(source, Mapping):
        mapping: Mapping[str, Any] = source
        return lambda name: mapping.get(name)
    return lambda name: getattr(source, name, None)


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string")
    return value.strip() or None


def _flag(name: str, value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false")


def _seconds(name: str, value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise ConfigurationError(f"{name} must be a positive number of seconds")
    return seconds


def _options(name: str, value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None  # the text may hold a password: never echo it, nor the parser's excerpt
    if not isinstance(value, Mapping):
        raise ConfigurationError(f'{name} must be a JSON object, e.g. {{"socket_timeout": 1}}')
    return dict(value)


def _storage(name: str, value: Any) -> str:
    uri = _text(name, value) or "memory://"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ConfigurationError(f"{name} is not a valid URI") from None
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"{name}: the scheme must be one of {', '.join(sorted(_SCHEMES))}"
        ) from None
    return uri


def redact_uri(uri: str) -> str:
    """``uri`` with the password of its user information replaced by ``***``.

    >>> redact_uri("redis://portal:s3cret@cache:6379/0")
    'redis://portal:***@cache:6379/0'
    >>> redact_uri("memory://")
    'memory://'
    """
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    user, host = parts.netloc.rsplit("@", 1)
    name = user.split(":", 1)[0]
    return urlunsplit((parts.scheme, f"{name}:***@{host}", parts.path, parts.query, parts.fragment))


def _key(read: Callable[[str], Any], setting: str = "NIRGUARD_KEY") -> SecretKey | None:
    """The key of ``setting`` (or ``<setting>_FILE``): a pseudonym key, or the audit key."""
    kind = AuditKey if setting == "NIRGUARD_AUDIT_KEY" else SecretKey
    value, path = read(setting), read(f"{setting}_FILE")
    if value not in (None, "") and path not in (None, ""):
        raise ConfigurationError(f"set {setting} or {setting}_FILE, not both")
    if isinstance(value, SecretKey) and isinstance(value, AuditKey) == (kind is AuditKey):
        return value
    try:
        if value not in (None, ""):
            if not isinstance(value, str):
                raise ConfigurationError(
                    f"{setting} must be a key's text form or a {kind.__name__} (the pseudonym "
                    "key and the audit key are separate)"
                )
            return kind.from_text(value.strip())
        file = _text(f"{setting}_FILE", path)
        return kind.from_file(file) if file else None
    except InvalidKey as exc:  # its message is fixed and never holds the key
        which = setting if value not in (None, "") else f"{setting}_FILE"
        raise ConfigurationError(f"{which}: {exc}") from None


def _audit_key(read: Callable[[str], Any], key: SecretKey | None) -> AuditKey | None:
    audit_key = _key(read, "NIRGUARD_AUDIT_KEY")
    if (
        audit_key is not None
        and key is not None
        and hmac.compare_digest(material_of(audit_key), material_of(key))
    ):
        raise ConfigurationError(
            "NIRGUARD_AUDIT_KEY holds the pseudonym key (NIRGUARD_KEY): the audit trail "
            "needs a key of its own (nirguard audit keygen)"
        )
    return audit_key  # type: ignore[return-value]


def _policy_fields(read: Callable[[str], Any]) -> dict[str, str]:
    found = {}
    for name in QuotaPolicy.model_fields:
        setting = f"NIRGUARD_POLICY_{name.upper()}"
        value = read(setting)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join("off" if v is None else str(v) for v in value)
        found[setting] = "off" if value is False else str(value)
    return found


def _base_policy(value: Any) -> QuotaPolicy | Callable[[str], QuotaPolicy]:
    if value is None or value == "":
        return QuotaPolicy()
    if isinstance(value, QuotaPolicy):
        return value
    if isinstance(value, Mapping):
        return QuotaPolicy.from_dict(value)
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if path.suffix == ".toml":
            return QuotaPolicy.from_toml(path)
        if path.suffix == ".json":
            try:
                return QuotaPolicy.from_json(path.read_bytes())
            except OSError:
                raise ConfigurationError(
                    "NIRGUARD_POLICY: the policy file cannot be read"
                ) from None
        raise ConfigurationError("NIRGUARD_POLICY must name a .json or .toml policy file")
    if callable(value):
        return value  # type: ignore[no-any-return]
    raise ConfigurationError("NIRGUARD_POLICY must be a policy file, a QuotaPolicy or a dict")


def _policy(read: Callable[[str], Any]) -> QuotaPolicy | Callable[[str], QuotaPolicy]:
    base = _base_policy(read("NIRGUARD_POLICY"))
    fields = _policy_fields(read)
    if not fields:
        return base
    if not isinstance(base, QuotaPolicy):
        raise ConfigurationError("NIRGUARD_POLICY_<FIELD> cannot amend a policy callable")
    changed = QuotaPolicy.from_env(environ=fields).model_dump(exclude_unset=True)
    try:
        return QuotaPolicy.from_dict({**base.model_dump(), **changed})
    except PolicyError:
        raise
    except (TypeError, ValueError):
        raise PolicyError(
            "the NIRGUARD_POLICY_<FIELD> settings do not make a valid policy"
        ) from None


def _path(name: str, value: Any) -> Path | None:
    text = _text(name, value)
    return Path(text) if text else None


@dataclass(frozen=True, repr=False)
class GuardSettings:
    """Everything a :class:`~nirguard.LookupGuard` is built from, read from one source.

    Build it with :meth:`load`, then a guard with :meth:`build`; the fields
    (read-only) say what was read. ``repr`` hides the storage password and
    shows the key by its id.
    """

    storage: str = "memory://"
    storage_options: dict[str, Any] | None = None
    key_prefix: str = "nirguard"
    key: SecretKey | None = None
    policy: QuotaPolicy | Callable[[str], QuotaPolicy] = field(default_factory=QuotaPolicy)
    audit_log: Path | None = None
    audit_key: AuditKey | None = None
    alert_log: Path | None = None
    break_glass_log: Path | None = None
    enforce: bool = True
    fail_open: bool = False
    deadline: float = 0.5

    @classmethod
    def load(cls, source: Source = None) -> GuardSettings:
        """Read the ``NIRGUARD_*`` settings of ``source``.

        Args:
            source: ``None`` or a mapping (``os.environ``, a Flask ``app.config``,
                a dict), or an object with the settings as attributes
                (``django.conf.settings``). Unset names keep their defaults.

        Raises:
            ConfigurationError: a setting has a wrong value; the message names
                the setting, never its value.
            PolicyError: the policy settings do not make a valid policy.
        """
        read = _reader(source)
        prefix = _text("NIRGUARD_KEY_PREFIX", read("NIRGUARD_KEY_PREFIX")) or "nirguard"
        key = _key(read)
        return cls(
            storage=_storage("NIRGUARD_STORAGE", read("NIRGUARD_STORAGE")),
            storage_options=_options("NIRGUARD_STORAGE_OPTIONS", read("NIRGUARD_STORAGE_OPTIONS")),
            key_prefix=prefix,
            key=key,
            policy=_policy(read),
            audit_log=_path("NIRGUARD_AUDIT_LOG", read("NIRGUARD_AUDIT_LOG")),
            audit_key=_audit_key(read, key),
            alert_log=_path("NIRGUARD_ALERT_LOG", read("NIRGUARD_ALERT_LOG")),
            break_glass_log=_path("NIRGUARD_BREAK_GLASS_LOG", read("NIRGUARD_BREAK_GLASS_LOG")),
            enforce=_flag("NIRGUARD_ENFORCE", read("NIRGUARD_ENFORCE"), True),
            fail_open=_flag("NIRGUARD_FAIL_OPEN", read("NIRGUARD_FAIL_OPEN"), False),
            deadline=_seconds("NIRGUARD_DEADLINE", read("NIRGUARD_DEADLINE"), 0.5),
        )

    @property
    def shared(self) -> bool:
        """Whether the store is shared between processes (anything but ``memory://``)."""
        return not self.storage.startswith("memory://")

    def build(self, **overrides: Any) -> LookupGuard:
        """A :class:`~nirguard.LookupGuard` from these settings.

        Args:
            **overrides: arguments of :class:`~nirguard.LookupGuard` that win over
                the settings: hooks (``alert=``, ``on_break_glass=``, ``audit=``),
                a ``clock``, a ``pseudonymiser``, ``metrics``...

        Raises:
            ConfigurationError: a shared store without ``NIRGUARD_KEY``, or a
                setting the guard refuses (its message never holds a secret).
        """
        options: dict[str, Any] = {
            "policy": self.policy,
            "storage": self.storage,
            "storage_options": self.storage_options,
            "key_prefix": self.key_prefix,
            "enforce": self.enforce,
            "fail_open": self.fail_open,
            "deadline": self.deadline,
        }
        if self.key is not None:
            options["pseudonymiser"] = Pseudonymiser(self.key, purpose="guard")
        elif self.shared and "pseudonymiser" not in overrides:
            raise ConfigurationError(
                "NIRGUARD_KEY is not set: a shared store (NIRGUARD_STORAGE) needs the same key "
                'in every process; make one with: export NIRGUARD_KEY="$(nirguard keygen)"'
            )
        for name, path in (
            ("audit", self.audit_log),
            ("alert", self.alert_log),
            ("on_break_glass", self.break_glass_log),
        ):
            if path is not None:
                options[name] = path if name == "audit" else JsonLinesHook(path)
        if self.audit_log is not None and self.audit_key is not None:
            options["audit"] = SealedAuditLog(self.audit_log, self.audit_key)
        options.update(overrides)
        try:
            return LookupGuard(**options)
        except ConfigurationError:
            raise
        except (TypeError, ValueError) as exc:  # never the value: it may hold a password
            raise ConfigurationError(
                f"the guard's settings are not valid ({type(exc).__name__})"
            ) from None

    def __repr__(self) -> str:
        return (
            f"GuardSettings(storage={redact_uri(self.storage)!r}, key={self.key!r}, "
            f"policy={type(self.policy).__name__}(...), ...)"
        )


def guard_from_settings(source: Source = None, **overrides: Any) -> LookupGuard:
    """Build a :class:`~nirguard.LookupGuard` from the ``NIRGUARD_*`` settings of ``source``.

    ``GuardSettings.load(source).build(**overrides)``: see :class:`GuardSettings`.

    Raises:
        ConfigurationError: a setting has a wrong value, or a shared store has no key.
        PolicyError: the policy settings do not make a valid policy.
    """
    return GuardSettings.load(source).build(**overrides)
