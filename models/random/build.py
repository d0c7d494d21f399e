"""Write the random-weight models (models/random/graphs.py) and their manifest.

Run as ``python -m models.random.build [--out DIR]`` (needs the ``models`` extra for
``onnx``). The manifest declares each model the way a user declares one exported by
a trainer (docs/models.md): nothing in the workers knows these models.

* ``detect``: the YOLOv8-layout detector, 320x320 letterboxed RGB, class names read
  from its ONNX metadata (``names``, as Ultralytics writes them);
* ``classify``: the 224x224 RGB classifier with logits out, ImageNet normalisation,
  labels inline.

Seeded: a rebuild writes the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx

from models.random.graphs import classifier_random, yolo_random

__all__ = ["build", "main"]

HERE = Path(__file__).resolve().parent
_CLASSES = ("apple", "bottle", "box", "can", "jar")
_IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _write(model: onnx.ModelProto, path: Path) -> str:
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def build(out: Path) -> dict[str, Any]:
    """Write both models and ``manifest.json`` into ``out``; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    provenance = {"script": "models/random/build.py", "weights": "random (seeded), no skill"}
    detect = {
        "name": "yolo-random",
        "version": "1.0.0",
        "file": "yolo-random.onnx",
        "sha256": _write(yolo_random(), out / "yolo-random.onnx"),
        "task": "detect",
        "input": {"name": "images", "width": 320, "height": 320, "resize": "letterbox"},
        "decoder": {
            "type": "yolov8",
            "output": "output0",
            "score_threshold": 0.3,
            "iou_threshold": 0.45,
            "max_detections": 8,
        },
        "labels": {"metadata": "names"},
        # Chosen so that about a quarter of this random model's boxes are ones the edge
        # is unsure of, on the pan across photographs (pipeline/camera/sources/photos.py).
        "confidence": {"signal": "score", "uncertain_band": [0.3, 0.72]},
        "provenance": provenance,
    }
    classify = {
        "name": "classifier224-random",
        "version": "1.0.0",
        "file": "classifier224-random.onnx",
        "sha256": _write(classifier_random(len(_CLASSES)), out / "classifier224-random.onnx"),
        "task": "classify",
        "input": {
            "name": "input",
            "width": 224,
            "height": 224,
            "resize": "stretch",
            **_IMAGENET,
        },
        "decoder": {"type": "softmax", "output": "logits"},
        "labels": list(_CLASSES),
        "provenance": provenance,
    }
    manifest = {"schema": 2, "models": {"detect": detect, "classify": classify}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    manifest = build(args.out)
    for role, entry in manifest["models"].items():
        print(f"{role}: {entry['file']} {entry['sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
