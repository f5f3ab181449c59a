"""nirguard.config: one set of NIRGUARD_* settings, from the environment, Flask or Django."""

from __future__ import annotations

import json
import os
import stat
import threading
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nirguard import ConfigurationError, PolicyError, QuotaPolicy, Reason, SecretKey
from nirguard.alerts import Alert, BreakGlass
from nirguard.config import GuardSettings, JsonLinesHook, guard_from_settings, redact_uri
from nirguard.errors import NirguardError, PractitionerLocked, QuotaExceeded

SECRET = "s3cret-Pa55"
KEY = SecretKey.generate("cfg")


def test_defaults_are_the_library_defaults() -> None:
    settings = GuardSettings.load({})
    assert settings == GuardSettings()
    assert (settings.storage, settings.key, settings.key_prefix) == ("memory://", None, "nirguard")
    assert settings.policy == QuotaPolicy()
    assert (settings.enforce, settings.fail_open, settings.deadline) == (True, False, 0.5)
    assert settings.audit_log is settings.alert_log is settings.break_glass_log is None
    assert not settings.shared


def test_every_setting_is_read_from_the_environment(tmp_path: Path) -> None:
    env = {
        "NIRGUARD_STORAGE": "redis://cache:6379/2",
        "NIRGUARD_STORAGE_OPTIONS": '{"socket_timeout": 1}',
        "NIRGUARD_KEY_PREFIX": "portal-a",
        "NIRGUARD_KEY": f"  {KEY.to_text()}\n",
        "NIRGUARD_POLICY_LOOKUPS": "5/minute",
        "NIRGUARD_POLICY_MISS_RATIO": "off",
        "NIRGUARD_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "NIRGUARD_ALERT_LOG": str(tmp_path / "alerts.jsonl"),
        "NIRGUARD_BREAK_GLASS_LOG": str(tmp_path / "bg.jsonl"),
        "NIRGUARD_ENFORCE": "false",
        "NIRGUARD_FAIL_OPEN": "yes",
        "NIRGUARD_DEADLINE": "0.25",
    }
    settings = GuardSettings.load(env)
    assert settings.storage == "redis://cache:6379/2" and settings.shared
    assert settings.storage_options == {"socket_timeout": 1}
    assert settings.key_prefix == "portal-a"
    assert settings.key == KEY
    assert isinstance(settings.policy, QuotaPolicy)
    assert (settings.policy.lookups, settings.policy.miss_ratio) == ("5/minute", None)
    assert settings.policy.distinct_patients == QuotaPolicy().distinct_patients
    assert settings.audit_log == tmp_path / "audit.jsonl"
    assert settings.alert_log == tmp_path / "alerts.jsonl"
    assert settings.break_glass_log == tmp_path / "bg.jsonl"
    assert (settings.enforce, settings.fail_open, settings.deadline) == (False, True, 0.25)


def test_the_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIRGUARD_POLICY_LOOKUPS", "7/minute")
    assert GuardSettings.load().policy.lookups == "7/minute"  # type: ignore[union-attr]
    assert GuardSettings.load(os.environ).policy.lookups == "7/minute"  # type: ignore[union-attr]


def test_flask_config_and_django_settings_hold_python_values(tmp_path: Path) -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    policy = QuotaPolicy(lookups="9/minute", name="desk")
    app.config.update(
        NIRGUARD_STORAGE="memory://",
        NIRGUARD_STORAGE_OPTIONS={"socket_timeout": 2},
        NIRGUARD_KEY=KEY,
        NIRGUARD_POLICY=policy,
        NIRGUARD_POLICY_DISTINCT_PATIENTS="9/day",
        NIRGUARD_ENFORCE=False,
        NIRGUARD_AUDIT_LOG=tmp_path / "audit.jsonl",
    )
    from_flask = GuardSettings.load(app.config)
    assert from_flask.key is KEY
    assert from_flask.storage_options == {"socket_timeout": 2}
    assert from_flask.policy == QuotaPolicy(
        lookups="9/minute", name="desk", distinct_patients="9/day"
    )
    assert from_flask.enforce is False
    assert from_flask.audit_log == tmp_path / "audit.jsonl"

    def per_kind(practitioner: str) -> QuotaPolicy:
        return policy

    django_like = SimpleNamespace(NIRGUARD_POLICY=per_kind, NIRGUARD_FAIL_OPEN=True, DEBUG=False)
    from_django = GuardSettings.load(django_like)
    assert from_django.policy is per_kind
    assert from_django.fail_open is True
    assert GuardSettings.load(SimpleNamespace(NIRGUARD_POLICY={"lookups": "3/minute"})).policy == (
        QuotaPolicy(lookups="3/minute")
    )


def test_policy_files_and_key_files(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"lookups": "4/minute"}', encoding="utf-8")
    (tmp_path / "p.toml").write_text('lookups = "6/minute"\n', encoding="utf-8")
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY.to_text() + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    for name, lookups in (("p.json", "4/minute"), ("p.toml", "6/minute")):
        env = {"NIRGUARD_POLICY": str(tmp_path / name), "NIRGUARD_KEY_FILE": str(key_file)}
        settings = GuardSettings.load(env)
        assert settings.policy.lookups == lookups  # type: ignore[union-attr]
        assert settings.key == KEY


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("NIRGUARD_STORAGE", "ftp://host/", "NIRGUARD_STORAGE: the scheme must be"),
        ("NIRGUARD_STORAGE", "redis://cache:port/0", "NIRGUARD_STORAGE is not a valid URI"),
        ("NIRGUARD_STORAGE_OPTIONS", "[1, 2]", "NIRGUARD_STORAGE_OPTIONS must be a JSON object"),
        ("NIRGUARD_STORAGE_OPTIONS", "{oops", "NIRGUARD_STORAGE_OPTIONS must be a JSON object"),
        ("NIRGUARD_KEY", "not a key", "NIRGUARD_KEY: invalid key text"),
        ("NIRGUARD_KEY_FILE", "/no/such/key", "NIRGUARD_KEY_FILE: "),
        ("NIRGUARD_POLICY", "policy.yaml", "NIRGUARD_POLICY must name a .json or .toml"),
        ("NIRGUARD_POLICY", "/no/such.json", "NIRGUARD_POLICY: the policy file cannot be read"),
        ("NIRGUARD_ENFORCE", "maybe", "NIRGUARD_ENFORCE must be true or false"),
        ("NIRGUARD_FAIL_OPEN", "2", "NIRGUARD_FAIL_OPEN must be true or false"),
        ("NIRGUARD_DEADLINE", "soon", "NIRGUARD_DEADLINE must be a number of seconds"),
        ("NIRGUARD_DEADLINE", "0", "NIRGUARD_DEADLINE must be a positive number"),
        ("NIRGUARD_DEADLINE", "inf", "NIRGUARD_DEADLINE must be a positive number"),
        ("NIRGUARD_AUDIT_LOG", 42, "NIRGUARD_AUDIT_LOG must be a string"),
    ],
)
def test_a_wrong_setting_is_named(setting: str, value: Any, says: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        GuardSettings.load({setting: value})
    assert str(caught.value).startswith(says)


def test_key_and_key_file_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="NIRGUARD_KEY or NIRGUARD_KEY_FILE, not both"):
        GuardSettings.load({"NIRGUARD_KEY": KEY.to_text(), "NIRGUARD_KEY_FILE": "k.txt"})


def test_fields_cannot_amend_a_policy_callable() -> None:
    source = SimpleNamespace(
        NIRGUARD_POLICY=lambda p: QuotaPolicy(), NIRGUARD_POLICY_LOOKUPS="1/minute"
    )
    with pytest.raises(ConfigurationError, match="cannot amend a policy callable"):
        GuardSettings.load(source)


def test_a_bad_policy_field_is_a_policy_error() -> None:
    with pytest.raises(PolicyError):
        GuardSettings.load({"NIRGUARD_POLICY_LOOKUPS": "many"})


def _rendered(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


@pytest.mark.parametrize(
    "settings",
    [
        {"NIRGUARD_STORAGE": f"redis://:{SECRET}@cache:port/0"},
        {"NIRGUARD_STORAGE": f"ftp://user:{SECRET}@cache/"},
        {"NIRGUARD_STORAGE": f"redis://user:{SECRET}@cache:6379/0"},  # no key: refused at build
        {"NIRGUARD_STORAGE_OPTIONS": f'{{"password": "{SECRET}"'},
        {"NIRGUARD_STORAGE_OPTIONS": f'["{SECRET}"]'},
        {"NIRGUARD_KEY": f"nirguard-key:v1:k1:{SECRET}"},
        {"NIRGUARD_KEY": f"nirguard-key:v1:{SECRET}:" + "A" * 43},
    ],
)
def test_errors_never_echo_a_secret(settings: dict[str, Any]) -> None:
    with pytest.raises(NirguardError) as caught:
        GuardSettings.load(settings).build()
    assert SECRET not in _rendered(caught.value)


def test_repr_hides_the_storage_password_and_the_key() -> None:
    settings = GuardSettings.load(
        {"NIRGUARD_STORAGE": f"redis://portal:{SECRET}@cache:6379/0", "NIRGUARD_KEY": KEY.to_text()}
    )
    text = repr(settings)
    assert SECRET not in text and KEY.to_text().rsplit(":", 1)[1] not in text
    assert "redis://portal:***@cache:6379/0" in text and "cfg" in text
    assert redact_uri(f"rediss://:{SECRET}@cache/0") == "rediss://:***@cache/0"
    assert redact_uri("redis://cache/0") == "redis://cache/0"


def test_a_shared_store_needs_the_key() -> None:
    with pytest.raises(ConfigurationError, match="NIRGUARD_KEY is not set: a shared store"):
        guard_from_settings({"NIRGUARD_STORAGE": "redis://127.0.0.1:1/0"})
    guard = guard_from_settings(
        {"NIRGUARD_STORAGE": "redis://127.0.0.1:1/0", "NIRGUARD_KEY": KEY.to_text()}
    )
    assert repr(guard) == "LookupGuard(storage='redis', enforce=True, fail_open=False)"
    assert (
        repr(guard_from_settings({}))
        == "LookupGuard(storage='memory', enforce=True, fail_open=False)"
    )


def test_build_wires_the_files_and_overrides_win(tmp_path: Path) -> None:
    env = {
        "NIRGUARD_POLICY_INVALID_NIRS": "2/hour",
        "NIRGUARD_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "NIRGUARD_ALERT_LOG": str(tmp_path / "alerts.jsonl"),
        "NIRGUARD_ENFORCE": "true",
    }
    clock = iter(range(1_800_000_000, 1_900_000_000)).__next__
    guard = guard_from_settings(env, clock=lambda: float(clock()))
    refused = []
    for _ in range(3):
        try:
            with guard.lookup("dr-cfg", "1 85 05 78 006 084 90"):
                pass
        except (QuotaExceeded, PractitionerLocked) as exc:
            refused.append(exc)
        except NirguardError:
            pass
    assert refused, "the third invalid number is refused"
    assert guard.flush(timeout=10)  # hooks and file sinks run off the request path
    [alert] = [a for a in JsonLinesHook(tmp_path / "alerts.jsonl").read() if a["lockout"]]
    assert (alert["practitioner"], alert["signal"]) == ("dr-cfg", "invalid_nirs")
    audit = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(audit) == 3
    assert stat.S_IMODE((tmp_path / "audit.jsonl").stat().st_mode) == 0o600

    mine: list[Alert] = []
    quiet = guard_from_settings(env, alert=mine.append, enforce=False)
    assert "enforce=False" in repr(quiet)


def test_hook_file_lines(tmp_path: Path) -> None:
    hook = JsonLinesHook(tmp_path / "bg.jsonl")
    assert hook.read() == []
    grant = BreakGlass(
        practitioner="dr-x",
        patient="k1:ab",
        reason=Reason.of(
            Reason(Reason.of("ETREAT").code, "Mme X, NIR 1 85 05 78 006 084 91, urgence")
        ),
        time=0.5,
        expires=86400.5,
        budget_left=2,
        quota="distinct_patients",
    )
    hook(grant)
    hook(Alert("dr-x", "cohort", {"walk": 5.0}, time=1e9, retry_after=float("inf")))
    first, second = hook.read()
    assert first["reason"] == {"code": "ETREAT", "text": "Mme X, NIR [number masked], urgence"}
    assert (first["time"], first["expires"]) == (
        "1970-01-01T00:00:00.500000Z",
        "1970-01-02T00:00:00.500000Z",
    )
    assert second["retry_after"] is None  # until unlocked
    assert second["time"] == "2001-09-09T01:46:40Z"
    assert stat.S_IMODE((tmp_path / "bg.jsonl").stat().st_mode) == 0o600
    assert repr(hook) == f"JsonLinesHook({str(tmp_path / 'bg.jsonl')!r})"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("185057800608491", "[number masked]"),
        ("body 1850578006084 only", "body [number masked] only"),
        ("2A 05 78 006 084 91 ok", "[number masked] ok"),  # a NIR of Corsica, spaced
        ("call 06 12 34 56 78", "call 06 12 34 56 78"),  # a phone number: 10 digits
        ("room 12, bed 4", "room 12, bed 4"),
    ],
)
def test_hook_file_masks_number_runs_in_text(text: str, masked: str, tmp_path: Path) -> None:
    hook = JsonLinesHook(tmp_path / "x.jsonl")
    hook(Alert("dr-x", text, {}, time=0.0, retry_after=None))
    assert hook.read()[0]["signal"] == masked


def test_hook_file_lines_stay_whole_under_threads(tmp_path: Path) -> None:
    hook = JsonLinesHook(tmp_path / "alerts.jsonl")

    def write(n: int) -> None:
        for i in range(200):
            hook(
                Alert(
                    f"dr-{n}",
                    "cohort",
                    {"i": float(i), "pad": float(n) * 1e6},
                    time=float(i),
                    retry_after=1.5,
                )
            )

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 800
    assert all(json.loads(line)["retry_after"] == 2 for line in lines)
