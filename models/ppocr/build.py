"""Fetch the PP-OCR models from pinned RapidOCR wheels and write their manifest.

Run as ``python -m models.ppocr.build [--wheels DIR] [--out DIR]``. Nothing is
installed and nothing is downloaded at run time: the build asks pip, through the
package registry the machine is configured for, for two wheels without their
dependencies (``pip download --no-deps``), checks each wheel's SHA-256 against the
pinned one, and copies the ``.onnx`` files out of them (wheels are zip files) into
``files/`` next to the manifest, each checked against its pinned SHA-256. With
``--wheels DIR`` the wheels are taken from DIR instead (for a machine without the
registry: ``pip download --no-deps --ignore-requires-python --only-binary=:all:
rapidocr==3.10.0 rapidocr_onnxruntime==1.4.4 -d DIR`` elsewhere).

* ``rapidocr`` 3.10.0 (Apache-2.0; its ``MODEL_LICENSES.md`` states the PaddleOCR
  weights it carries are Apache-2.0): PP-OCRv6 small recogniser -> ``text-rec-cloud``.
* ``rapidocr_onnxruntime`` 1.4.4 (Apache-2.0 in its metadata; PaddleOCR's PP-OCRv4
  models are Apache-2.0): PP-OCRv4 mobile detector and recogniser -> ``text-det``,
  ``text-rec-edge``. That package requires the GUI ``opencv-python``, which clashes
  with ``opencv-python-headless``: only its model files are taken, it is never
  installed.

The declarations follow RapidOCR's own pre- and post-processing (``ch_ppocr_det``,
``ch_ppocr_rec`` in those wheels) where this repository's ``InputSpec`` and decoders
can express it; docs/models.md ("PP-OCR models (real weights)") lists the differences.
The manifest depends only on the pinned files, so a rebuild writes the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["FILES", "HERE", "MANIFEST", "MODEL_FILES", "BuildError", "build", "main", "ready"]

HERE: Final = Path(__file__).resolve().parent
FILES: Final = HERE / "files"  # git-ignored: the model files are fetched, not committed
MANIFEST: Final = HERE / "manifest.json"


class BuildError(RuntimeError):
    """A wheel could not be fetched, or a wheel or model file is not the pinned one."""


@dataclass(frozen=True, slots=True)
class Wheel:
    """A pinned wheel on the package registry and what its licence evidence says."""

    project: str
    version: str
    filename: str
    sha256: str
    licence: str
    licence_evidence: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One ``.onnx`` file inside a pinned wheel, with its own pinned SHA-256 and size."""

    wheel: Wheel
    member: str
    sha256: str
    size_bytes: int
    upstream: str

    @property
    def name(self) -> str:
        return Path(self.member).name


RAPIDOCR: Final = Wheel(
    project="rapidocr",
    version="3.10.0",
    filename="rapidocr-3.10.0-py3-none-any.whl",
    sha256="2fc34e26cd0f48514804a94f8832283039c7334076bff60768b1fed9ad068050",
    licence="Apache-2.0",
    licence_evidence=(
        "wheel metadata License-Expression: Apache-2.0; its licenses/MODEL_LICENSES.md "
        "lists PP-OCRv6_rec_small.onnx (this SHA-256) as converted from PaddleOCR's "
        "PP-OCRv6_small_rec, Apache-2.0, copyright Baidu / PaddleOCR rights holders"
    ),
)
RAPIDOCR_ONNXRUNTIME: Final = Wheel(
    project="rapidocr_onnxruntime",
    version="1.4.4",
    filename="rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
    sha256="971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
    licence="Apache-2.0",
    licence_evidence=(
        "wheel metadata License: Apache-2.0 (the wheel carries no licence file); the "
        "PP-OCRv4 models are PaddleOCR's, released under Apache-2.0"
    ),
)

DET_V4: Final = ModelFile(
    wheel=RAPIDOCR_ONNXRUNTIME,
    member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
    sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    size_bytes=4745517,
    upstream="PaddleOCR ch_PP-OCRv4_det (mobile), converted to ONNX by RapidOCR",
)
REC_V4: Final = ModelFile(
    wheel=RAPIDOCR_ONNXRUNTIME,
    member="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
    sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    size_bytes=10857958,
    upstream="PaddleOCR ch_PP-OCRv4_rec (mobile), converted to ONNX by RapidOCR",
)
REC_V6: Final = ModelFile(
    wheel=RAPIDOCR,
    member="rapidocr/models/PP-OCRv6_rec_small.onnx",
    sha256="6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
    size_bytes=21234383,
    upstream="PaddleOCR PP-OCRv6_small_rec, converted to ONNX by RapidOCR",
)
MODEL_FILES: Final = (DET_V4, REC_V4, REC_V6)
# Licence texts copied next to the models (Apache-2.0 asks that a copy goes with them).
_LICENCE_FILES: Final = (
    (RAPIDOCR, "rapidocr-3.10.0.dist-info/licenses/LICENSE", "LICENSE"),
    (RAPIDOCR, "rapidocr-3.10.0.dist-info/licenses/MODEL_LICENSES.md", "MODEL_LICENSES.md"),
)

# RapidOCR's det settings (config.yaml ``Det`` and ``DBPostProcess``, both wheels):
# thresh 0.3, box_thresh 0.5, unclip_ratio 1.6, max_candidates 1000, min_size 3.
_DB = {
    "type": "db",
    "bitmap_threshold": 0.3,
    "box_threshold": 0.5,
    "unclip_ratio": 1.6,
    "max_candidates": 1000,
    "min_size": 3,
}
# PaddleOCR's own det normalisation (tools/infer/predict_det.py: ImageNet's), applied in
# the BGR order PaddleOCR reads images in (cv2.imread). RapidOCR uses mean 0.5, std 0.5
# instead; on the measured labels both found every line (docs/models.md).
_DET_MEAN: Final = [0.485, 0.456, 0.406]
_DET_STD: Final = [0.229, 0.224, 0.225]
# A recognised line's confidence: its lowest character probability. A line with
# 0.25 <= min_char < 0.9 is one the tier is unsure of: on rendered price labels, JPEG
# and downscaled, that band held 48 of the v4 recogniser's 54 lines with a wrong
# character and 23% of its right ones (docs/models.md, "PP-OCR models").
_REC_CONFIDENCE: Final = {"signal": "min_char", "uncertain_band": [0.25, 0.9]}
# The edge's reader on shelf labels: a reading that looks like a price (a "$" or a
# decimal point between digits, no "/" of a unit price) but is not $<digits>.<two
# digits> is unsure however sure its characters (PP-OCRv4 reads "$3.99" as "53.99" at
# 0.98); with that, the band's top at 0.5 sent 15.8% of lines to the cloud and read
# prices within 0.3 points of the cloud alone (python -m bench.ocr_accuracy --sizes
# 1280x720; docs/shelf-labels.md).
_EDGE_REC_CONFIDENCE: Final = {
    "signal": "min_char",
    "uncertain_band": [0.25, 0.5],
    "expect": [{"looks_like": r"^[^/]*(\$|\d[.,]\d)[^/]*$", "must_match": r"\$\d+\.\d\d"}],
}


def _rec_input() -> dict[str, Any]:
    """RapidOCR's rec input (``resize_norm_img``): BGR, height 48, width kept up to
    the widest line of the batch, (x / 255 - 0.5) / 0.5, padded with 0 on the right."""
    return {
        "name": "x",
        "height": 48,
        "resize": "fit_height",
        "max_side": 1600,
        "colour": "bgr",
        "mean": [0.5],
        "std": [0.5],
        "max_batch": 6,
    }


def _provenance(model: ModelFile) -> dict[str, Any]:
    wheel = model.wheel
    return {
        "script": "models/ppocr/build.py",
        "upstream": model.upstream,
        "wheel": {
            "project": wheel.project,
            "version": wheel.version,
            "file": wheel.filename,
            "sha256": wheel.sha256,
            "member": model.member,
        },
        "licence": wheel.licence,
        "licence_evidence": wheel.licence_evidence,
        "size_bytes": model.size_bytes,
    }


def declarations() -> dict[str, dict[str, Any]]:
    """The manifest's ``models`` table: role -> declaration."""
    return {
        "text-det": {
            "name": "ppocrv4-mobile-det",
            "version": "4.0.0",
            "file": f"files/{DET_V4.name}",
            "sha256": DET_V4.sha256,
            "task": "text_detect",
            "input": {
                "name": "x",
                "resize": "letterbox",  # no width/height: dynamic, as PaddleOCR's det
                "max_side": 960,
                "multiple": 32,
                "colour": "bgr",
                "mean": _DET_MEAN,
                "std": _DET_STD,
            },
            "decoder": {"output": "sigmoid_0.tmp_0", **_DB},
            "provenance": _provenance(DET_V4),
        },
        "text-rec-edge": {
            "name": "ppocrv4-mobile-rec",
            "version": "4.0.0",
            "file": f"files/{REC_V4.name}",
            "sha256": REC_V4.sha256,
            "task": "text_recognize",
            "input": _rec_input(),
            "decoder": {"type": "ctc", "output": "softmax_11.tmp_0", "blank": 0},
            "labels": {"metadata": "character"},
            "confidence": _EDGE_REC_CONFIDENCE,
            "provenance": _provenance(REC_V4),
        },
        "text-rec-cloud": {
            "name": "ppocrv6-small-rec",
            "version": "6.0.0",
            "file": f"files/{REC_V6.name}",
            "sha256": REC_V6.sha256,
            "task": "text_recognize",
            "input": _rec_input(),
            "decoder": {"type": "ctc", "output": "fetch_name_0", "blank": 0},
            "labels": {"metadata": "character"},
            "confidence": _REC_CONFIDENCE,
            "provenance": _provenance(REC_V6),
        },
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and _sha256(path) == sha256


def ready(folder: Path = FILES) -> bool:
    """Whether every model file is in ``folder`` with its pinned SHA-256."""
    return all(_verified(folder / m.name, m.sha256) for m in MODEL_FILES)


def _download(wheel: Wheel, dest: Path) -> None:
    """``pip download`` one wheel, without its dependencies, into ``dest``."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--ignore-requires-python",  # rapidocr_onnxruntime 1.4.4 says <3.13; not installed
        "--disable-pip-version-check",
        "--quiet",
        "--timeout",
        "30",
        "--retries",
        "2",
        "--dest",
        str(dest),
        wheel.requirement,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        errors = [line for line in said if line.startswith("ERROR")] or said[-3:]
        raise BuildError(f"pip download {wheel.requirement} failed: {' | '.join(errors)}")


def _wheel(wheel: Wheel, wheels: Path | None, scratch: Path) -> Path:
    """The pinned wheel from ``wheels``, or downloaded into ``scratch``; checked."""
    if wheels is not None:
        path = wheels / wheel.filename
        if not path.is_file():
            raise BuildError(f"{path} is missing (pip download {wheel.requirement} --no-deps)")
    else:
        _download(wheel, scratch)
        path = scratch / wheel.filename
        if not path.is_file():
            raise BuildError(f"pip download {wheel.requirement} gave no {wheel.filename}")
    got = _sha256(path)
    if got != wheel.sha256:
        raise BuildError(f"{path.name}: SHA-256 {got}, expected the pinned {wheel.sha256}")
    return path


def _extract(archive: zipfile.ZipFile, member: str, dest: Path, sha256: str | None) -> None:
    """Copy ``member`` to ``dest`` through a temporary name, checking its SHA-256."""
    part = dest.with_name(dest.name + ".part")
    try:
        with archive.open(member) as source, part.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        if sha256 is not None and (got := _sha256(part)) != sha256:
            raise BuildError(f"{member}: SHA-256 {got}, expected the pinned {sha256}")
        part.replace(dest)
    finally:
        part.unlink(missing_ok=True)


def fetch(folder: Path = FILES, wheels: Path | None = None) -> list[Path]:
    """Put every model file (and the licence texts) into ``folder``; returns the files
    copied (none when all were there already, verified)."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted: dict[Wheel, list[tuple[str, Path, str | None]]] = {}
    for model in MODEL_FILES:
        if not _verified(folder / model.name, model.sha256):
            wanted.setdefault(model.wheel, []).append(
                (model.member, folder / model.name, model.sha256)
            )
    for wheel, member, name in _LICENCE_FILES:
        if not (folder / name).is_file():
            wanted.setdefault(wheel, []).append((member, folder / name, None))
    copied: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="ppocr-wheels-") as scratch:
        for wheel, members in wanted.items():
            with zipfile.ZipFile(_wheel(wheel, wheels, Path(scratch))) as archive:
                for member, dest, sha256 in members:
                    _extract(archive, member, dest, sha256)
                    copied.append(dest)
    return copied


def build(out: Path = HERE, wheels: Path | None = None) -> dict[str, Any]:
    """Fetch the files into ``out/files`` and write ``out/manifest.json``; returns it."""
    fetch(out / "files", wheels)
    manifest = {"schema": 2, "models": declarations()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="manifest folder")
    parser.add_argument("--wheels", type=Path, help="take the wheels from here, no download")
    args = parser.parse_args(argv)
    try:
        manifest = build(args.out, args.wheels)
    except BuildError as e:
        print(f"models.ppocr.build: {e}", file=sys.stderr)
        return 1
    for role, entry in manifest["models"].items():
        print(f"{role}: {entry['file']} {entry['sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
