"""Raw ONNX Runtime throughput of a model as the edge worker holds it, at one batch size.

``measure_raw`` times ``predict_proba`` on the 32x32 crops of camera frames, once with
``pixels_to_features`` (what the worker's ``_infer`` does per batch) and once for the
model alone: the ceiling ``bench.edge_throughput`` compares the worker against.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from pipeline.inference.digits import pixels_to_features
from pipeline.inference.model import OnnxModel
from schemas.messages import Frame

__all__ = ["measure_raw"]


def _seconds_per_call(
    fn: Callable[[], object], min_seconds: float, repeats: int
) -> tuple[float, float]:
    """Median and best over ``repeats`` of the mean time of ``fn`` over ``min_seconds``."""
    fn()  # first call allocates
    samples = []
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        samples.append(elapsed / calls)
    return statistics.median(samples), min(samples)


def measure_raw(
    model: OnnxModel, frames: Sequence[Frame], batch: int, min_seconds: float, repeats: int
) -> dict[str, float]:
    """Images/s of ``model`` at ``batch``: with ``pixels_to_features`` and model only."""
    crops = [frames[i % len(frames)].crops()[0] for i in range(batch)]
    features = pixels_to_features(crops)
    with_features, with_features_best = _seconds_per_call(
        lambda: model.predict_proba(pixels_to_features(crops)), min_seconds, repeats
    )
    model_only, model_only_best = _seconds_per_call(
        lambda: model.predict_proba(features), min_seconds, repeats
    )
    return {
        "features_and_model_images_per_s": batch / with_features,
        "model_only_images_per_s": batch / model_only,
        "features_and_model_ms_per_batch": with_features * 1000,
        "model_only_ms_per_batch": model_only * 1000,
        "features_and_model_images_per_s_best": batch / with_features_best,
        "model_only_images_per_s_best": batch / model_only_best,
    }
