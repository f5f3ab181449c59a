"""``python -m venv`` and ``pip install`` as the documentation test runs them (see docs_harness).

``docs_shim.py venv [options] DIR`` makes ``DIR/bin`` hold the harness's command wrappers
(the test environment's python, pip, nirguard, uvicorn...) instead of a new environment.

``docs_shim.py pip install [options] SPEC...`` installs nothing. It checks what a reader's
install would need: a path (``.``, ``'.[redis,fastapi]'``) is the checkout, whose extras must
exist in its pyproject.toml; a name with extras (``nirguard[redis]``) is this project; every
requirement they bring (recursively through ``nirguard[...]`` self-references) must be
installed in the test environment in a version the requirement accepts. Anything it does
not understand fails loudly rather than pass unchecked. It then appends the distributions
that install would bring (with their dependencies) to the file ``NIRGUARD_DOCS_INSTALLED``
names: the page's Python blocks may import only from those, as in a fresh environment.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(os.environ.get("NIRGUARD_DOCS_ROOT") or Path(__file__).resolve().parents[1])
PROJECT = "nirguard"
_PATH_SPEC = re.compile(r"^(?P<path>[./~][^\[]*)(?:\[(?P<extras>[^\]]*)\])?$")
_WHEEL_SPEC = re.compile(r"^(?P<path>[^\[]*\.whl)(?:\[(?P<extras>[^\]]*)\])?$")


def fail(message: str) -> int:
    print(f"pip (docs test): {message}", file=sys.stderr)
    return 1


def venv(args: list[str]) -> int:
    targets = [a for a in args if not a.startswith("-")]
    if len(targets) != 1:
        return fail(f"python -m venv: expected one directory, got {args!r}")
    shims = Path(os.environ["NIRGUARD_DOCS_SHIMS"])
    bindir = Path(targets[0]) / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for wrapper in shims.iterdir():
        shutil.copy2(wrapper, bindir / wrapper.name)
    (bindir / "activate").write_text(
        f'export VIRTUAL_ENV="{bindir.parent.resolve()}"\nexport PATH="{bindir.resolve()}:$PATH"\n',
        encoding="utf-8",
    )
    (bindir.parent / "pyvenv.cfg").write_text("# made by the docs test's venv shim\n")
    return 0


def _pyproject() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]  # type: ignore[no-any-return]


def closure(name: str, extras: set[str], found: set[str]) -> None:
    """Add the installed distribution ``name`` and everything it depends on to ``found``."""
    key = canonicalize_name(name)
    if key in found and not extras:
        return
    found.add(key)
    try:
        texts = requires(name) or []
    except PackageNotFoundError:
        return
    for text in texts:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate({"extra": e}) for e in {"", *extras}):
            continue
        dependency = canonicalize_name(requirement.name)
        if dependency != key and (dependency not in found or requirement.extras):
            closure(requirement.name, set(requirement.extras), found)


def _check_project(
    extras: set[str], seen: set[str], errors: list[str], found: set[str] | None = None
) -> None:
    project = _pyproject()
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})  # type: ignore[assignment]
    requirements = list(project.get("dependencies", []))  # type: ignore[call-overload]
    for extra in sorted(extras - seen):
        seen.add(extra)
        if extra not in optional:
            errors.append(f"the extra [{extra}] does not exist in pyproject.toml")
            continue
        requirements += optional[extra]
    if found is not None:
        found.add(PROJECT)
    for text in requirements:
        _check_requirement(Requirement(text), seen, errors, found)


def _check_requirement(
    requirement: Requirement, seen: set[str], errors: list[str], found: set[str] | None = None
) -> None:
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        return
    if canonicalize_name(requirement.name) == PROJECT:
        _check_project(set(requirement.extras), seen, errors, found)
        return
    try:
        installed = version(requirement.name)
    except PackageNotFoundError:
        errors.append(f"{requirement} is not installed in the test environment")
        return
    if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
        errors.append(f"{requirement} is wanted but {installed} is installed")
    elif found is not None:
        closure(requirement.name, set(requirement.extras), found)


def _extras(text: str | None) -> set[str]:
    return {e.strip() for e in (text or "").split(",") if e.strip()}


def _wheel_name() -> str:
    version = str(_pyproject()["version"])
    return f"{PROJECT}-{version}-py3-none-any.whl"


def _check_wheel(match: re.Match[str], errors: list[str], found: set[str]) -> None:
    """A wheel of the project, made by an earlier ``pip wheel`` of the page."""
    path = Path(match["path"])
    if path.name != _wheel_name():
        errors.append(f"{path.name!r} is not the wheel 'pip wheel' builds ({_wheel_name()})")
    elif not path.is_file():
        errors.append(f"{path}: no such wheel (build it first: pip wheel --no-deps -w dist .)")
    else:
        _check_project(_extras(match["extras"]), set(), errors, found)


def build_wheel(args: list[str]) -> int:
    """``pip wheel --no-deps -w DIR .``: an empty stand-in for the project's wheel in DIR.

    The fresh-clone check of CI (``.ci/fresh_clone``) builds and installs the real one.
    """
    rest = iter(args)
    target, sources = Path.cwd(), []
    for arg in rest:
        if arg in ("-w", "--wheel-dir"):
            target = Path(next(rest, "."))
        elif arg in ("--no-deps", "-q", "--quiet"):
            continue
        elif arg.startswith("-"):
            return fail(f"option {arg!r} of pip wheel is not understood by the docs test")
        else:
            sources.append(arg)
    if sources != ["."]:
        return fail(f"pip wheel: only the checkout ('.') is known to the docs test, not {sources}")
    if "--no-deps" not in args:
        return fail("pip wheel: pass --no-deps, or it builds a wheel of every dependency too")
    target.mkdir(parents=True, exist_ok=True)
    (target / _wheel_name()).write_bytes(b"")
    print(f"pip (docs test): stand-in for {target / _wheel_name()}, nothing built")
    return 0


def project_closure(extras: set[str]) -> set[str]:
    """The distributions a fresh install of the project with ``extras`` would bring."""
    found: set[str] = set()
    _check_project(extras, set(), [], found)
    return found


def pip(args: list[str]) -> int:
    if args and args[0] == "wheel":
        return build_wheel(args[1:])
    if not args or args[0] != "install":
        return fail(
            f"only 'pip install' and 'pip wheel' are understood here, not {' '.join(args)!r}"
        )
    specs: list[str] = []
    rest = iter(args[1:])
    for arg in rest:
        if arg in ("-q", "--quiet", "-qq", "-U", "--upgrade", "--pre", "--no-cache-dir"):
            continue
        if arg in ("-e", "--editable"):
            specs.append(next(rest, ""))
        elif arg.startswith("-"):
            return fail(f"option {arg!r} is not understood by the docs test")
        else:
            specs.append(arg)
    if not specs:
        return fail("nothing to install")
    errors: list[str] = []
    found: set[str] = set()
    for spec in specs:
        match = None if _WHEEL_SPEC.match(spec) else _PATH_SPEC.match(spec)
        if match:
            if Path(match["path"]).resolve() != Path.cwd().resolve() and match["path"] != ".":
                errors.append(f"{spec!r}: only the checkout ('.') is known to the docs test")
                continue
            _check_project(_extras(match["extras"]), set(), errors, found)
            continue
        wheel_spec = _WHEEL_SPEC.match(spec)
        if wheel_spec:
            _check_wheel(wheel_spec, errors, found)
            continue
        try:
            requirement = Requirement(spec)
        except ValueError:
            errors.append(f"{spec!r} is not a requirement pip would understand")
            continue
        if canonicalize_name(requirement.name) == PROJECT:
            errors.append(
                f"{spec!r}: {PROJECT} is not on the package index; install it from the "
                "checkout ('.[extras]') or from a wheel built there (docs/quickstart.md)"
            )
            continue
        _check_requirement(requirement, set(), errors, found)
    for error in errors:
        fail(error)
    if not errors:
        print(f"pip (docs test): {' '.join(specs)}: requirements present, nothing installed")
        state = os.environ.get("NIRGUARD_DOCS_INSTALLED")
        if state:  # what the page's Python blocks may import from now on (docs_driver.py)
            with open(state, "a", encoding="utf-8") as file:
                file.writelines(f"{name}\n" for name in sorted(found))
    return 1 if errors else 0


def main() -> int:
    command, *args = sys.argv[1:]
    if command == "venv":
        return venv(args)
    if command == "pip":
        return pip(args)
    return fail(f"unknown shim {command!r}")


if __name__ == "__main__":
    sys.exit(main())
