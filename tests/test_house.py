"""The house stays tidy: no import circle, small modules and functions, no private name
used across modules (``tools/house.py`` reads the tree; run it for the full report)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "house.py"


def _house() -> object:
    spec = importlib.util.spec_from_file_location("nirguard_house", _TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nirguard_house"] = module
    spec.loader.exec_module(module)
    return module


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


def test_the_reader_sees_private_names_through_getattr_and_relative_imports(
    tmp_path: Path,
) -> None:
    tool = _house()
    package = tmp_path / "nirguard"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "class A:\n"
        "    __slots__ = ('_mine',)\n"
        "    def f(self, other):\n"
        "        return getattr(self, '_mine'), getattr(other, '_mine'), other.__dict__\n"
    )
    (package / "b.py").write_text(
        "from .a import _hidden\n"
        "from . import a\n"
        "def g(engine):\n"
        "    return getattr(engine, '_snapshot', None), hasattr(engine, '_restore'), a.__x\n"
    )
    findings = tool.read_house(tmp_path).findings  # type: ignore[attr-defined]
    assert sorted(f.removeprefix(f"{tmp_path.name}/") for f in findings) == [
        "nirguard/b.py:1: imports private name _hidden from nirguard.a",
        "nirguard/b.py:4: uses private attribute .__x",
        "nirguard/b.py:4: uses private attribute ._restore (through hasattr)",
        "nirguard/b.py:4: uses private attribute ._snapshot (through getattr)",
    ]


def test_the_reader_matches_each_lua_function_to_its_end(tmp_path: Path) -> None:
    tool = _house()
    body = "  local x = 1\n" * 60
    text = (
        "local function short(a) if a then return 1 end end\n"  # one line, nested block
        "local function long(a)\n"
        + body
        + "  for i = 1, 2 do x = x + i end\n"
        + "  -- end (a comment)\n"
        + "  local s = 'end' .. [[\nend\n]]\n"
        + "end\n"
        + "local handler = function(keys)\n"
        + body
        + "end\n"
        + "redis.register_function('f', function(keys)\n"
        + body
        + "end)\n"
    )
    found = {name: (line, length) for line, name, length in tool._lua_functions(text)}  # type: ignore[attr-defined]
    assert found["short"] == (1, 1)
    assert found["long"] == (2, 67)
    assert found["handler"] == (69, 62)
    assert found["(anonymous)"] == (131, 62)
    package = tmp_path / "nirguard"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "s.lua").write_text(text)
    findings = "\n".join(tool.read_house(tmp_path).findings)  # type: ignore[attr-defined]
    assert "s.lua:2: Lua function long is 67 lines" in findings
    assert "s.lua:69: Lua function handler is 62 lines" in findings
    assert "short" not in findings


def test_a_helper_of_the_same_name_does_not_hide_a_private_attribute(tmp_path: Path) -> None:
    tool = _house()
    package = tmp_path / "nirguard"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "d.py").write_text(
        "def _compiled(policy):\n"
        "    _local = policy._local\n"
        "    return policy._compiled, _local\n"
        "class Box:\n"
        "    _size = 1\n"
        "    def _grow(self):\n"
        "        return self\n"
        "def use(box):\n"
        "    return box._size, box._grow()\n"
    )
    findings = sorted(
        f.removeprefix(f"{tmp_path.name}/")
        for f in tool.read_house(tmp_path).findings  # type: ignore[attr-defined]
    )
    assert findings == [
        "nirguard/d.py:2: uses private attribute ._local",
        "nirguard/d.py:3: uses private attribute ._compiled",
    ]
