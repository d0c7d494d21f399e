"""What the image holds, worked out from the Dockerfile and pyproject.toml: the
packages it copies, the extras its ``pip install`` line names, every distribution that
brings, and the third-party modules its packages import that it leaves out."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
import sys
import tomllib
from collections.abc import Iterable

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.composefile import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def dockerfile_lines() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def copy_sources() -> list[str]:
    """The build-context paths the Dockerfile copies (``COPY src... dest``)."""
    sources = []
    for line in dockerfile_lines():
        words = shlex.split(line)
        if words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def image_packages() -> list[str]:
    return [s for s in copy_sources() if (ROOT / s / "__init__.py").is_file()]


def installed_extras(lines: Iterable[str]) -> set[str]:
    """The extras of the project's own ``pip install`` ('.' or '.[a,b]') in ``lines``."""
    installs = []
    for line in lines:
        for command in re.split(r"&&|;", line):
            words = shlex.split(command.replace("RUN ", " ", 1))
            if "pip" in " ".join(words[:1]) and "install" in words:
                installs += [w for w in words if w == "." or w.startswith(".[")]
    assert len(installs) == 1, f"one pip install of the project expected, found {installs}"
    return set(filter(None, installs[0][2:-1].split(","))) if installs[0] != "." else set()


def requirement_closure(extras: Iterable[str]) -> set[str]:
    """Every distribution ``pip install '.[extras]'`` installs: the project's requirements
    and theirs, as the installed distributions here declare them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    pending = [Requirement(r) for r in project["dependencies"]]
    pending += [Requirement(r) for e in extras for r in optional[e]]
    closure: set[str] = set()
    while pending:
        req = pending.pop()
        name = canonicalize_name(req.name)
        if name == canonicalize_name(project["name"]):  # hybridfleet[models] in an extra
            pending += [Requirement(r) for e in req.extras for r in optional[e]]
            continue
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = importlib.metadata.distribution(req.name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for sub in map(Requirement, requires):
            wanted = ("", *req.extras)
            try:
                if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                    pending.append(sub)
            except UndefinedEnvironmentName:
                continue
    return closure


def third_party_imports(packages: Iterable[str]) -> dict[str, str]:
    """Top-level modules imported anywhere in ``packages`` (also inside functions) that
    are neither the standard library nor the image's own packages -> a file importing it."""
    own = set(packages)
    found: dict[str, str] = {}
    for package in sorted(own):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in own or top in sys.stdlib_module_names or top == "__future__":
                        continue
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def not_installed(extras: Iterable[str]) -> dict[str, str]:
    """Modules the image's packages import that ``pip install '.[extras]'`` leaves out."""
    closure = requirement_closure(extras)
    owners = importlib.metadata.packages_distributions()
    return {
        module: where
        for module, where in third_party_imports(image_packages()).items()
        if not {canonicalize_name(d) for d in owners.get(module, [])} & closure
    }
