"""A reading of the house: rooms are files, arrows are imports.

Checks what docs/STYLE asks of the source tree (``src/nirguard``):

* no import circle (every import counts: top level, inside functions, and
  under ``TYPE_CHECKING``);
* no module over :data:`MAX_LINES` lines, no function over :data:`MAX_FUNCTION`
  lines (Python and Lua);
* no private name used across modules (``from nirguard.x import _y``, or
  ``thing._y`` on something other than ``self``/``cls``).

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


def _imports(tree: ast.AST, here: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, modules)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                target = _resolve(f"{prefix}.{alias.name}", modules) or _resolve(prefix, modules)
                if target:
                    found.add(target)
    found.discard(here)
    return found


def _defined_privates(tree: ast.AST) -> set[str]:
    """Private names this module defines itself: functions, classes, attributes set on
    ``self``/``cls`` or in a class body, ``__slots__`` entries, module-level names."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("_")
            and node.value.isidentifier()
        ):
            names.add(node.value)  # __slots__ entries, getattr names
    return {n for n in names if n.startswith("_")}


def _private_uses(tree: ast.AST, here: str, modules: dict[str, Path]) -> Iterator[tuple[int, str]]:
    own = _defined_privates(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    continue  # a private module: the package's own rooms
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield node.lineno, f"imports private name {alias.name} from {node.module}"
        elif isinstance(node, ast.Attribute):
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name in own:
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls", "mcs"):
                continue
            if (
                isinstance(owner, ast.Call)
                and isinstance(owner.func, ast.Name)
                and owner.func.id == "super"
            ):
                continue
            yield node.lineno, f"uses private attribute .{name}"


def _long_functions(tree: ast.AST) -> Iterator[tuple[int, str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > MAX_FUNCTION:
                yield node.lineno, node.name, length


_LUA_START = re.compile(r"^(\s*)(?:local\s+)?function\s+([\w.:]+)")


def _long_lua_functions(text: str) -> Iterator[tuple[int, str, int]]:
    """Lua functions by indentation: a function ends at the first ``end`` at its indent."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = _LUA_START.match(line)
        if not match:
            continue
        indent, name = match.group(1), match.group(2)
        for j in range(i + 1, len(lines)):
            if lines[j].startswith(indent + "end") and not lines[j].startswith(indent + " "):
                length = j - i + 1
                if length > MAX_FUNCTION:
                    yield i + 1, name, length
                break


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
        for lineno, what in _private_uses(tree, name, house.modules):
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
