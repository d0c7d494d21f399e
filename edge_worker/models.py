"""The edge's models as this deployment runs them (pipeline/inference/deployment.py).

``edge.providers``, ``edge.intra_op_threads`` and ``edge.max_batch`` replace the
manifest entries' values for the declared models of ``edge.models``, without editing
the manifest; ``edge.intra_op_threads`` also sets the threads of the region classifier
(``edge.models`` empty) and of the signed bundles that replace it (``ModelUpdater``).
The site's embedding and the face detector are small helpers and run as declared.
"""

from __future__ import annotations

from pipeline.config import EdgeSettings
from pipeline.inference.analysis import Analyser
from pipeline.inference.deployment import deployed_analyser
from pipeline.inference.model import OnnxModel
from schemas.messages import Source

__all__ = ["edge_analyser"]


def edge_analyser(cfg: EdgeSettings, *, model: OnnxModel | None = None) -> Analyser:
    """What an edge worker runs: its declared models as ``cfg`` says, else the region
    classifier ``model`` or that of role ``edge``, judged by ``edge.confidence_signal``."""
    return deployed_analyser(
        cfg, cfg.models, source=Source.EDGE, signal=cfg.confidence_signal, model=model
    )
