"""Griffe extension for the docs build: render bare doctests as code blocks.

nirguard's docstrings carry doctests the python-stdnum way, as bare ``>>>`` runs in
the text. Markdown would read ``>>>`` as three nested block quotes and ``x[0]["y"]``
as a reference link (an unresolved cross-reference, which fails ``mkdocs build
--strict``). This extension wraps every bare doctest run in a ``pycon`` fence
before the docstring is parsed. Loaded by mkdocs.yml; not part of the package.
"""

from __future__ import annotations

from typing import Any

import griffe

_FENCES = ("```", "~~~")


def fence_doctests(text: str) -> str:
    """Wrap each run of doctest lines (``>>>`` up to a blank line) in a pycon fence."""
    lines = text.split("\n")
    out: list[str] = []
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            out.append(line)
            i += 1
            continue
        if stripped.startswith(_FENCES):
            fence = stripped[:3]
            out.append(line)
            i += 1
            continue
        if not stripped.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
            out.append(lines[i])
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fence bare doctests in every docstring once the object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
