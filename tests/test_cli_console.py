"""``nirguard console``: never serves without a way to tell who is asking; keeps the store."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from nirguard.cli import main
from nirguard.console._officers import OfficersFile
from nirguard.errors import ConfigurationError


def test_it_refuses_to_start_without_officers_or_authorize(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    assert main(["console", "--audit", url]) == 2
    assert "--officers FILE or --authorize" in capsys.readouterr().err
    both = ["console", "--audit", url, "--officers", str(tmp_path / "o"), "--authorize", "x:y"]
    assert main(both) == 2
    assert main(["console", "--audit", url, "--authorize", "no_colon_here"]) == 2


def _add_officer(path: Path, name: str, *options: str) -> int:
    """``nirguard console --add-officer name`` on the officers file ``path``: its exit code."""
    where = ["--audit", "sqlite://", "--officers", str(path)]
    return main(["console", *where, "--add-officer", name, *options])


def test_add_officer_prints_the_token_once_and_keeps_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "officers"
    assert _add_officer(path, "m.dupont", "--role", "officer") == 0
    token = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    text = path.read_text()
    assert token not in text and text.startswith("m.dupont:officer:")
    assert path.stat().st_mode & 0o777 == 0o600
    officers = OfficersFile(path)
    assert officers.check("m.dupont", token) is not None
    assert officers.check("m.dupont", token[:-1]) is None and officers.check("x", token) is None

    class Request:
        def __init__(self, header: str) -> None:
            self.headers = {"authorization": header}

    good = base64.b64encode(f"m.dupont:{token}".encode()).decode()
    assert officers.authorize(Request(f"Basic {good}")).role == "officer"  # type: ignore[union-attr]
    for header in (
        "",
        f"Bearer {good}",
        "Basic !!!",
        "Basic " + base64.b64encode(b"m.dupont").decode(),
    ):
        assert officers.authorize(Request(header)) is None
    # a second token for the same person replaces the first
    assert _add_officer(path, "m.dupont") == 0
    assert officers.check("m.dupont", token) is None
    assert len(path.read_text().splitlines()) == 1
    path.write_text("m.dupont:root:abc\n")
    with pytest.raises(ConfigurationError, match="line 1"):
        officers.check("m.dupont", token)


def test_import_and_purge_keep_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trail = tmp_path / "trail.jsonl"
    lines = [
        {
            "time": "2026-01-01T10:00:00Z",
            "practitioner": "p1",
            "patient": "k1:aa",
            "outcome": "allowed",
        },
        {
            "time": "2026-03-01T10:00:00Z",
            "practitioner": "p1",
            "patient": "k1:bb",
            "outcome": "miss",
        },
    ]
    trail.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot an event\n")
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    assert main(["console", "--audit", url, "--import-jsonl", str(trail)]) == 0
    assert "2 events imported, 1 lines skipped" in capsys.readouterr().out
    assert main(["console", "--audit", url, "--purge-days", "36500"]) == 0
    assert "0 events" in capsys.readouterr().out
    assert main(["console", "--audit", url, "--purge-days", "1"]) == 0
    assert "2 events" in capsys.readouterr().out
    assert main(["console", "--audit", "mysql://u:s3cret@h/db", "--purge-days", "1"]) == 2
    assert "s3cret" not in capsys.readouterr().err


def test_import_nirguard_loads_no_web_or_sql_package() -> None:
    code = (
        "import sys, nirguard, nirguard.cli; nirguard.cli.build_parser(); "
        "print(sorted(m for m in ('starlette', 'jinja2', 'sqlalchemy', 'uvicorn', 'psycopg') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
