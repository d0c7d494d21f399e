"""The image: it installs every third-party module its packages import, it runs as a
user with a writable home, and its build context (.dockerignore) holds what the
Dockerfile copies and nothing else."""

from __future__ import annotations

import re

from tests.unit.composefile import (
    ROOT,
)
from tests.unit.dockerimage import (
    copy_sources,
    dockerfile_lines,
    image_packages,
    installed_extras,
    not_installed,
)


def test_the_image_installs_every_module_its_packages_import() -> None:
    # The camera simulator imports scikit-learn (pipeline/inference/digits.py); an image of the
    # core dependencies alone crash-looped its cameras with ModuleNotFoundError.
    packages = {"schemas", "pipeline", "edge_worker", "cloud_worker", "models"}
    assert set(image_packages()) == packages
    missing = not_installed(installed_extras(dockerfile_lines()))
    assert missing == {}, f"the image's code imports them; its pip line leaves them out: {missing}"


def test_the_import_check_catches_an_image_without_the_extra() -> None:
    # The Dockerfile's old line: core dependencies only.
    extras = installed_extras(["RUN pip install --no-cache-dir -e . && useradd x"])
    assert extras == set()
    assert "sklearn" in not_installed(extras)
    assert installed_extras(["RUN /opt/v/bin/pip install -e '.[models,dev]'"]) == {"models", "dev"}


def test_the_image_has_a_writable_home_and_runs_as_a_user() -> None:
    # onnxruntime keeps a telemetry id under $HOME: without one, every start logged
    # "Failed to persist telemetry device ID".
    lines = dockerfile_lines()
    env = " ".join(line for line in lines if line.startswith("ENV "))
    home = re.search(r"\bHOME=(\S+)", env)
    assert home, "the image sets no HOME"
    useradd = next(line for line in lines if "useradd" in line)
    assert f"--home-dir {home[1]}" in useradd and "--create-home" in useradd
    assert [line.split()[1] for line in lines if line.startswith("USER ")] == ["hybridfleet"]


# ---------------------------------------------------------------------------- .dockerignore


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus ``**``) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _dockerignore() -> list[tuple[bool, re.Pattern[str], int]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((keep, _glob_regex(pattern), pattern.count("/") + 1))
    return rules


def _ignored(path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last rule that
    matches the path, or the leading folders of it with as many parts, decides."""
    parts = path.split("/")
    ignored = False
    for keep, regex, depth in _dockerignore():
        if regex.match(path) or (len(parts) > depth and regex.match("/".join(parts[:depth]))):
            ignored = not keep
    return ignored


# Model files a build step fetches into the checkout (models/ppocr/build.py): not in
# git, and kept out of the image.
FETCHED = ("models/ppocr/files/",)


def test_the_build_context_has_what_the_dockerfile_copies() -> None:
    sources = copy_sources()
    assert sources, "the Dockerfile copies nothing?"
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kept = [
            p
            for p in files
            if "__pycache__" not in p.parts
            and p.suffix != ".pyc"
            and not p.relative_to(ROOT).as_posix().startswith(FETCHED)
        ]
        assert kept, source
        for file in kept:
            relative = file.relative_to(ROOT).as_posix()
            assert not _ignored(relative), f"COPY {source}: .dockerignore drops {relative}"


def test_the_build_context_has_nothing_else() -> None:
    # A context from a working checkout was 915 MB: the virtual environment.
    for path in (
        ".venv/bin/python",
        ".venv/lib/x.so",
        ".git/HEAD",
        ".env",
        "bench/results/a.json",
        ".hybridfleet/hub-1/jetstream/x",
        ".mypy_cache/x",
        "pipeline/__pycache__/a.pyc",
        "hybridfleet.egg-info/PKG-INFO",
        "tests/unit/test_compose.py",
        "docs/x.md",
        "models/ppocr/files/ch_PP-OCRv4_det_infer.onnx",
    ):
        assert _ignored(path), f"{path} would be sent to the Docker engine"
    sources = {s.split("/")[0] for s in copy_sources()}
    for entry in ROOT.iterdir():
        if entry.name not in sources and entry.name not in ("Dockerfile", ".dockerignore"):
            probe = entry.name if entry.is_file() else f"{entry.name}/some-file"
            assert _ignored(probe), f"{entry.name} is in the build context, and no COPY needs it"
