"""A reading of the house: rooms are files, arrows are imports.

Checks what docs/STYLE asks of the source tree (``src/nirguard``):

* no import circle (every import counts: top level, inside functions, and
  under ``TYPE_CHECKING``);
* no module over :data:`MAX_LINES` lines, no function over :data:`MAX_FUNCTION`
  lines (Python and Lua);
* no private name used across modules (``from nirguard.x import _y`` or
  ``from .x import _y``, ``thing._y`` or ``getattr(thing, "_y")`` on something other
  than ``self``/``cls``, for a ``_y`` the module does not define itself).

Run ``python tools/house.py`` for a report; ``tests/test_house.py`` fails on any finding.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINES = 400
MAX_FUNCTION = 60
ROOT = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "nirguard"


@dataclass
class House:
    modules: dict[str, Path] = field(default_factory=dict)
    imports: dict[str, set[str]] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ``name`` (a module, or a name inside one)."""
    while name:
        if name in modules:
            return name
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return None


def _absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` names (``from .x import y`` in ``here``)."""
    if not node.level:
        return node.module or ""
    base = here.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(tree: ast.AST, here: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, modules)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            prefix = _absolute(node, here, is_package)
            for alias in node.names:
                target = _resolve(f"{prefix}.{alias.name}", modules) or _resolve(prefix, modules)
                if target:
                    found.add(target)
    found.discard(here)
    return found


def _is_private(name: str) -> bool:
    """``_x`` and ``__x`` (name-mangled) are private; ``__x__`` (a dunder) is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


_ATTR_FUNCTIONS = frozenset(("getattr", "hasattr", "setattr", "delattr"))


def _attr_call(node: ast.AST) -> tuple[ast.expr, ast.Constant, str, str] | None:
    """``(obj, constant, name, function)`` of ``getattr(obj, "_name", ...)`` and its
    siblings, else ``None``."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _ATTR_FUNCTIONS
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    ):
        return node.args[0], node.args[1], node.args[1].value, node.func.id
    return None


def _is_own_object(owner: ast.expr) -> bool:
    """``self``, ``cls``, ``mcs`` and ``super()``: a class reaching into itself."""
    if isinstance(owner, ast.Name):
        return owner.id in ("self", "cls", "mcs")
    return (
        isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "super"
    )


def _defined_privates(tree: ast.AST) -> set[str]:
    """Private attribute names this module defines itself: members of its class bodies
    (methods, class attributes, nested classes), attributes it assigns (``x._y = ...``),
    and names it spells as strings (``__slots__`` entries, ``object.__setattr__``).
    A module-level ``_helper`` or a local ``_y`` does not make ``thing._y`` its own,
    and the name a ``getattr`` reads is a use, not a definition."""
    names: set[str] = set()
    looked_up = {id(call[1]) for call in map(_attr_call, ast.walk(tree)) if call}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(member.name)
                elif isinstance(member, ast.Assign):
                    names.update(t.id for t in member.targets if isinstance(t, ast.Name))
                elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                    names.add(member.target.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("_")
            and node.value.isidentifier()
            and id(node) not in looked_up
        ):
            names.add(node.value)
    return {n for n in names if _is_private(n)}


def _private_uses(
    tree: ast.AST, here: str, is_package: bool, modules: dict[str, Path]
) -> Iterator[tuple[int, str]]:
    own = _defined_privates(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node, here, is_package)
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    continue  # a private module: the package's own rooms
                if _is_private(alias.name):
                    yield node.lineno, f"imports private name {alias.name} from {source}"
            continue
        call = _attr_call(node)
        if call is not None:
            owner, _, name, function = call
            through = f" (through {function})"
        elif isinstance(node, ast.Attribute):
            owner, name, through = node.value, node.attr, ""
        else:
            continue
        if _is_private(name) and name not in own and not _is_own_object(owner):
            yield getattr(node, "lineno", 0), f"uses private attribute .{name}{through}"


def _long_functions(tree: ast.AST) -> Iterator[tuple[int, str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > MAX_FUNCTION:
                yield node.lineno, node.name, length


# Lua, read as tokens: comments and strings skipped, blocks matched to their ``end``.
_LUA_TOKEN = re.compile(
    r"--\[(?P<lc>=*)\[.*?\](?P=lc)\]"  # long comment
    r"|--[^\n]*"  # comment
    r"|\[(?P<ls>=*)\[.*?\](?P=ls)\]"  # long string
    r"|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'"  # strings
    r"|(?P<word>[A-Za-z_]\w*)",
    re.S,
)
_LUA_NAME_AFTER = re.compile(r"\s*([\w.:]+)\s*\(")
_LUA_NAME_BEFORE = re.compile(r"([\w.:\[\]\"']+)\s*=\s*$")


def _lua_function_name(text: str, start: int, end: int) -> str:
    """``function name(``, ``local function name(``, ``name = function(``, or anonymous."""
    after = _LUA_NAME_AFTER.match(text, end)
    if after:
        return after.group(1)
    line_start = text.rfind("\n", 0, start) + 1
    before = _LUA_NAME_BEFORE.search(text[line_start:start])
    return before.group(1) if before else "(anonymous)"


def _lua_functions(text: str) -> Iterator[tuple[int, str, int]]:
    """Every Lua function as ``(first line, name, lines)``: ``function`` opens a block,
    and so do ``if``, ``do`` (of ``for``, ``while`` or alone) and ``repeat``; ``end``
    (``until`` for ``repeat``) closes the innermost. One-line, nested and anonymous
    functions count as well."""
    stack: list[tuple[str, int, str]] = []
    line, seen = 1, 0
    for match in _LUA_TOKEN.finditer(text):
        word = match.group("word")
        if word not in ("function", "if", "do", "repeat", "end", "until"):
            continue
        line += text.count("\n", seen, match.start())
        seen = match.start()
        if word in ("end", "until"):
            if stack:
                kind, first, name = stack.pop()
                if kind == "function":
                    yield first, name, line - first + 1
        elif word == "function":
            stack.append((word, line, _lua_function_name(text, match.start(), match.end())))
        else:
            stack.append((word, line, ""))


def _long_lua_functions(text: str) -> Iterator[tuple[int, str, int]]:
    for first, name, length in _lua_functions(text):
        if length > MAX_FUNCTION:
            yield first, name, length


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def read_house(root: Path = ROOT) -> House:
    house = House()
    for path in sorted((root / PACKAGE).rglob("*.py")):
        house.modules[_module_name(path, root)] = path
    for name, path in house.modules.items():
        text = path.read_text("utf-8")
        rel = path.relative_to(root.parent)
        tree = ast.parse(text)
        house.imports[name] = _imports(tree, name, path.name == "__init__.py", house.modules)
        lines = len(text.splitlines())
        if lines > MAX_LINES:
            house.findings.append(f"{rel}: {lines} lines (max {MAX_LINES})")
        for lineno, func, length in _long_functions(tree):
            house.findings.append(f"{rel}:{lineno}: function {func} is {length} lines")
        for lineno, what in _private_uses(tree, name, path.name == "__init__.py", house.modules):
            house.findings.append(f"{rel}:{lineno}: {what}")
    for path in sorted((root / PACKAGE).rglob("*.lua")):
        text = path.read_text("utf-8")
        rel = path.relative_to(root.parent)
        lines = len(text.splitlines())
        if lines > MAX_LINES:
            house.findings.append(f"{rel}: {lines} lines (max {MAX_LINES})")
        for lineno, func, length in _long_lua_functions(text):
            house.findings.append(f"{rel}:{lineno}: Lua function {func} is {length} lines")
    # The facade (nirguard/__init__) imports everything; a module importing the facade
    # back is a circle through it, and counts.
    for cycle in _cycles(house.imports):
        house.findings.append("import circle: " + " -> ".join(cycle))
    return house


def main() -> int:
    house = read_house()
    for finding in house.findings:
        print(finding)
    print(f"{len(house.modules)} modules, {len(house.findings)} findings")
    return 1 if house.findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
