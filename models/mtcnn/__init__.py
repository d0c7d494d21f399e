"""MTCNN's three face-detection networks as ONNX, exported from facenet-pytorch 2.6.0.

``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx`` are committed (2 MB together) and
``provenance.json`` gives each file's SHA-256, the wheel it came from and its licence
(MIT, text in ``LICENSE``). ``export.py`` made them, in a throwaway environment with
PyTorch; nothing here needs torch at run time. The detector that runs them is
``edge_worker/faces.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["HERE", "NETWORKS", "PROVENANCE"]

HERE: Final = Path(__file__).resolve().parent
PROVENANCE: Final = HERE / "provenance.json"
NETWORKS: Final = ("pnet", "rnet", "onet")
