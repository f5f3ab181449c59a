"""nirguard.testing generator, `nirguard check`, import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from nirguard import nir
from nirguard.cli import main
from nirguard.testing import NIRGenerator, valid_nir
from tests.conftest import assert_no_nir


def test_generator_is_seedable_and_valid() -> None:
    a = NIRGenerator(seed=42).many(2000)
    assert a == NIRGenerator(seed=42).many(2000)
    assert a != NIRGenerator(seed=43).many(2000)
    assert all(nir.is_valid(v) for v in a)
    places = Counter(nir.parse(v).department for v in a)
    assert places["99"] > 50  # born abroad
    assert any(len(d) == 3 for d in places)  # overseas
    assert any(nir.parse(v).is_provisional for v in a)


@pytest.mark.parametrize("place", ["metropolitan", "corsica", "overseas", "abroad"])
def test_generator_places(place: str) -> None:
    gen = NIRGenerator(seed=1)
    for _ in range(200):
        parsed = nir.parse(gen.generate(place=place))  # type: ignore[arg-type]
        if place == "corsica":
            assert parsed.department in ("2A", "2B")
        elif place == "overseas":
            assert len(parsed.department) == 3 and parsed.commune is not None
        elif place == "abroad":
            assert parsed.department == "99" and parsed.country is not None
        else:
            assert len(parsed.department) == 2 and parsed.department not in ("99", "2A", "2B")


def test_generator_options() -> None:
    gen = NIRGenerator(seed=5)
    n = nir.parse(gen.generate(sex=2, birth_year=7, birth_month=11, provisional=True))
    assert n.sex in (4, 8) and n.birth_year == 7 and n.birth_month == 11 and n.is_provisional
    special = nir.parse(gen.generate(special_month=True))
    assert special.birth_month is None or int(special.canonical[3:5]) > 12
    with pytest.raises(ValueError):
        gen.generate(sex=3)
    with pytest.raises(ValueError):
        gen.generate(birth_month=13)
    assert nir.is_valid(valid_nir(seed=9, place="abroad"))


def test_check_cli_args(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "1 85 05 78 006 084 91", "282049741112380"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "invalid" not in out
    assert_no_nir(out, "185057800608491", "282049741112380")
    assert main(["check", "185057800608491", "185057800608490", "abc"]) == 1
    out = capsys.readouterr().out
    assert "invalid key" in out and "invalid characters" in out
    assert_no_nir(out, "185057800608491")
    assert "18505780060849" not in out


def test_check_cli_stdin_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nirguard", "check", "--json"],
        input="185057800608491\n1850578006084\n282042a12345617\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["valid"] for r in rows] == [True, False, True]
    assert rows[1]["code"] == "length"
    assert rows[2]["masked"] == "2 82 ** ** *** *** **"
    assert_no_nir(proc.stdout + proc.stderr, "185057800608491", "282042A12345617")


def test_import_nirguard_needs_only_the_core_packages() -> None:
    code = (
        "import sys, nirguard, nirguard.nir, nirguard.testing, nirguard.audit_fhir, nirguard.metrics\n"
        "bad = [m for m in ('redis', 'coredis', 'fastapi', 'starlette', 'flask', 'django', "
        "'matplotlib', 'httpx', 'uvicorn', 'stdnum', 'faker', 'hypothesis', 'numpy', "
        "'fhir', 'fhir.resources', 'fhir_core', 'opentelemetry') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_public_api() -> None:
    import nirguard

    assert nirguard.__all__ == sorted(nirguard.__all__)
    for name in nirguard.__all__:
        assert hasattr(nirguard, name)
    assert nirguard.nir.validate is nir.validate
