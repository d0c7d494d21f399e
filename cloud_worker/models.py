"""The cloud's models as this deployment runs them (pipeline/inference/deployment.py).

``cloud.providers``, ``cloud.intra_op_threads`` and ``cloud.max_batch`` replace the
manifest entries' values for the declared models of ``cloud.models``, without editing
the manifest; ``cloud.intra_op_threads`` also sets the region classifier's threads when
``cloud.models`` is empty. The ``cloud-embed`` classifier runs as declared.
"""

from __future__ import annotations

from pipeline.config import CloudSettings
from pipeline.inference.analysis import Analyser
from pipeline.inference.calibration import DEFAULT_SIGNAL
from pipeline.inference.deployment import deployed_analyser
from pipeline.inference.model import OnnxModel
from schemas.messages import Source

__all__ = ["cloud_analyser"]


def cloud_analyser(cfg: CloudSettings, *, model: OnnxModel | None = None) -> Analyser:
    """What a cloud worker runs: its declared models as ``cfg`` says, else the region
    classifier ``model`` or that of role ``cloud``."""
    return deployed_analyser(
        cfg, cfg.models, source=Source.CLOUD, signal=DEFAULT_SIGNAL, model=model
    )
