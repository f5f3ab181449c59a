"""Griffe extension for the docs build: make reST-flavoured docstrings read well in Markdown.

nirguard's docstrings follow python-stdnum and Sphinx habits that Markdown does not know:

* bare doctests (``>>>`` runs in the text): Markdown reads ``>>>`` as three nested block
  quotes, and ``x[0]["y"]`` as a reference link, i.e. an unresolved cross-reference that
  fails ``mkdocs build --strict``. Each run is wrapped in a ``pycon`` fence;
* Sphinx roles (``:class:`~nirguard.errors.LookupDenied```): each becomes an *optional*
  autorefs link, which points to the API reference when the object is rendered there and
  is plain code otherwise (never a warning).

Literal blocks (fences, and the indented block after a line ending in ``::``) are left
alone; the ``::`` itself reads ``:``. Loaded by mkdocs.yml; not part of the package.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_FENCES = ("```", "~~~")
_ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|mod|attr|exc|data|obj|const):"
    r"`(?P<tilde>~?)(?P<text>[^`<]*?)(?:\s*<(?P<target>[^`>]+)>)?`"
)


def _role_link(match: re.Match[str], module: str) -> str:
    target = (match["target"] or match["text"]).strip().lstrip("~")
    if match["target"]:
        title = match["text"].strip()
    elif match["tilde"]:
        title = target.rsplit(".", 1)[-1]
    else:
        title = target
    if match["role"] in ("func", "meth") and not title.endswith(")"):
        title += "()"
    # Names without a package are relative to the docstring's module, as in Sphinx.
    if target == "nirguard" or target.startswith("nirguard.") or not module:
        identifier = target
    else:
        identifier = f"{module}.{target}"
    return (
        f'<autoref identifier="{html.escape(identifier)}" optional>'
        f"<code>{html.escape(title)}</code></autoref>"
    )


def convert(text: str, module: str = "") -> str:
    """Fence bare doctest runs and turn Sphinx roles into optional cross-references."""
    lines = text.split("\n")
    out: list[str] = []
    fence: str | None = None
    literal_indent: int | None = None  # inside an indented block after "::"
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            out.append(line)
            i += 1
            continue
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                out.append(line)
                i += 1
                continue
            literal_indent = None
        if stripped.startswith(_FENCES):
            fence = stripped[:3]
            out.append(line)
            i += 1
            continue
        if stripped.startswith(">>>"):
            prefix = line[:indent]
            out.append(f"{prefix}```pycon")
            while i < len(lines) and lines[i].strip() and lines[i].startswith(prefix):
                out.append(lines[i])
                i += 1
            out.append(f"{prefix}```")
            continue
        line = _ROLE.sub(lambda m: _role_link(m, module), line)
        if stripped.endswith("::"):
            literal_indent = indent
            line = line[:-1]  # reST "Text::" reads "Text:" before its literal block
        out.append(line)
        i += 1
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Rewrite every docstring once the object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        value = docstring.value
        if ">>>" in value or ":`" in value:
            docstring.value = convert(value, obj.module.path)
