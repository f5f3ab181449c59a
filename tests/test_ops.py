"""``nirguard status`` / ``nirguard unlock`` and the Django commands, on a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nirguard import LookupGuard, NirguardError, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.cli import main

pytestmark = pytest.mark.redis
POLICY = {"NIRGUARD_POLICY_INVALID_NIRS": "2/hour", "NIRGUARD_POLICY_LOCKOUT": "1 hour"}
WRONG = "1 85 05 78 006 084 90"  # a wrong control key: counts against invalid_nirs


@pytest.fixture
def portal(
    redis_url: str, redis_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The portal's settings in the environment, and one practitioner locked out on its store."""
    env = {
        "NIRGUARD_STORAGE": redis_url,
        "NIRGUARD_KEY_PREFIX": redis_prefix,
        "NIRGUARD_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        **POLICY,
    }
    for name in [n for n in os.environ if n.startswith("NIRGUARD_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    guard = LookupGuard(
        QuotaPolicy.from_env(environ=POLICY),
        storage=redis_url,
        key_prefix=redis_prefix,
        pseudonymiser=Pseudonymiser(SecretKey.generate("portal"), purpose="guard"),
    )
    for _ in range(3):
        try:
            with guard.lookup("dr-locked", WRONG):
                pass
        except NirguardError:
            pass
    assert guard.status("dr-locked").locked
    guard.close()
    return env


def test_status_shows_the_lockout(
    portal: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "dr-locked"]) == 0
    text = capsys.readouterr().out
    assert "practitioner   dr-locked" in text
    assert "locked         yes, 20" in text and "Z\n" in text
    assert "invalid_nirs 0" in text and "portal off" in text
    assert main(["status", "dr-other", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["locked"] is False and record["locked_until"] is None
    assert record["remaining"]["invalid_nirs"] == 2
    assert record["store"] == portal["NIRGUARD_STORAGE"]


def test_status_consumes_nothing(
    portal: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        assert main(["status", "dr-other", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["remaining"]["lookups"] == (
        int(QuotaPolicy().lookups.split("/")[0])  # type: ignore[union-attr]
    )


def test_unlock_is_audited_with_who_and_why(
    portal: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["unlock", "dr-locked", "--reason", "called back 1 85 05 78 006 084 91", "--by", "secops"]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "locked         no" in captured.out
    assert "dr-locked unlocked by secops (audited)" in captured.err
    [event] = [
        json.loads(line)
        for line in Path(portal["NIRGUARD_AUDIT_LOG"]).read_text(encoding="utf-8").splitlines()
    ]
    assert (event["outcome"], event["practitioner"], event["actor"]) == (
        "unlocked",
        "dr-locked",
        "secops",
    )
    assert event["note"].startswith("called back") and "084 91" not in event["note"]


def test_unlock_needs_an_audit_trail(
    portal: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NIRGUARD_AUDIT_LOG")
    assert main(["unlock", "dr-locked", "--reason", "why not"]) == 2
    assert "no audit trail to record the unlock in" in capsys.readouterr().err
    assert main(["status", "dr-locked", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["locked"] is True  # nothing was done


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["unlock", "dr-locked", "--reason", "  "], "an unlock needs a reason"),
        (["unlock", "dr-locked", "--reason", "x", "--by", ""], "--by must be 1 to 128"),
        (["status", "dr-locked", "--storage", "memory://"], "would see a store of its own"),
        (["status", "dr-locked", "--policy", "nope.yaml"], "NIRGUARD_POLICY must name"),
        (["status", ""], "practitioner"),
    ],
)
def test_wrong_arguments_exit_2(
    portal: dict[str, str], argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_unlock_without_a_reason_is_a_usage_error(portal: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["unlock", "dr-locked"])
    assert caught.value.code == 2


def test_an_unreachable_store_exits_3_without_its_password(
    portal: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store = "redis://:hunter2-secret@127.0.0.1:1/0"
    assert main(["status", "dr-locked", "--storage", store]) == 3
    err = capsys.readouterr().err
    assert "unavailable" in err and "hunter2" not in err


def _django(tmp_path: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "portal_settings.py").write_text(
        textwrap.dedent(
            """
            import os
            SECRET_KEY = "tests"
            INSTALLED_APPS = ["nirguard.ops"]
            DATABASES = {}
            globals().update({k: v for k, v in os.environ.items() if k.startswith("NIRGUARD_")})
            """
        ),
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, "-m", "django", *argv, "--settings=portal_settings", f"--pythonpath={tmp_path}"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_django_status_command(portal: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("django")
    done = _django(tmp_path, portal, "nirguard_status", "dr-locked")
    assert done.returncode == 0, done.stderr
    assert "locked         yes" in done.stdout
    done = _django(tmp_path, {**portal, "NIRGUARD_STORAGE": "memory://"}, "nirguard_status", "x")
    assert done.returncode == 1 and "would see a store of its own" in done.stderr


def test_django_unlock_command_is_audited(portal: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("django")
    done = _django(
        tmp_path, portal, "nirguard_unlock", "dr-locked", "--reason", "checked", "--by", "dpo"
    )
    assert done.returncode == 0, done.stderr
    assert "locked         no" in done.stdout
    [event] = [
        json.loads(line) for line in Path(portal["NIRGUARD_AUDIT_LOG"]).read_text().splitlines()
    ]
    assert (event["outcome"], event["actor"], event["note"]) == ("unlocked", "dpo", "checked")


def test_django_unlock_needs_an_audit_trail(
    portal: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("django")
    env = {k: v for k, v in portal.items() if k != "NIRGUARD_AUDIT_LOG"}
    monkeypatch.delenv("NIRGUARD_AUDIT_LOG")
    done = _django(tmp_path, env, "nirguard_unlock", "dr-locked", "--reason", "checked")
    assert done.returncode == 1
    assert "no audit trail" in done.stderr
