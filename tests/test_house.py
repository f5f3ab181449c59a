"""The house stays tidy: no import circle, small modules and functions, no private name
used across modules (``tools/house.py`` reads the tree; run it for the full report)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "house.py"


def _house() -> object:
    spec = importlib.util.spec_from_file_location("nirguard_house", _TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nirguard_house"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.xfail(reason="the engine-room issue brings the house to 0 findings", strict=False)
def test_the_house_has_no_finding() -> None:
    house = _house().read_house()  # type: ignore[attr-defined]
    assert house.findings == []


def test_the_reader_sees_a_circle_and_a_long_function(tmp_path: Path) -> None:
    tool = _house()
    package = tmp_path / "nirguard"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from nirguard import b\n")
    (package / "b.py").write_text(
        "def f():\n    from nirguard.a import x\n" + "    y = 1\n" * 70 + "    return y\n"
    )
    (package / "c.py").write_text("from nirguard.b import _hidden\nq = object()\nq._secret\n")
    findings = "\n".join(tool.read_house(tmp_path).findings)  # type: ignore[attr-defined]
    assert "import circle: nirguard.a -> nirguard.b" in findings
    assert "function f is 73 lines" in findings
    assert "imports private name _hidden" in findings
    assert "uses private attribute ._secret" in findings
