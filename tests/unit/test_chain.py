"""ModelChain: declared models run as a tier's analyser (models/random/ as the models)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.random.build import HERE as RANDOM_MODELS
from pipeline.camera.sources.photos import photo_frames
from pipeline.inference.analysis import Look
from pipeline.inference.chain import ModelChain
from pipeline.inference.runtime import DeclaredModel
from schemas.errors import ModelError
from schemas.messages import Region, Source

MANIFEST = RANDOM_MODELS / "manifest.json"


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return photo_frames(6, 480, 272)


def test_a_detector_reports_boxes_and_asks_about_those_in_its_band(
    frames: list[np.ndarray],
) -> None:
    chain = ModelChain.load("detect", MANIFEST, source=Source.EDGE)
    low, high = chain.stages[0].declaration.confidence.uncertain_band
    for look, analysis in zip(
        [Look(f, ()) for f in frames], chain.analyse([Look(f, ()) for f in frames]), strict=True
    ):
        assert analysis.detections and analysis.threshold == high
        scores = [d.score for d in analysis.detections]
        assert analysis.asks == tuple(d.box for d in analysis.detections if low <= d.score < high)
        assert analysis.confidence == min(s for s in scores if s >= low)
        height, width = look.image.shape[:2]
        for d in analysis.detections:
            assert d.source is Source.EDGE and d.label in chain.stages[0].labels
            assert d.box.x >= 0 and d.box.x + d.box.w <= width + 1
            assert d.box.y >= 0 and d.box.y + d.box.h <= height + 1


def test_a_frames_own_threshold_replaces_the_bands_upper_end(frames: list[np.ndarray]) -> None:
    chain = ModelChain.load("detect", MANIFEST, source=Source.EDGE)
    (strict,) = chain.analyse([Look(frames[0], (), threshold=1.0)])
    low, _ = chain.stages[0].declaration.confidence.uncertain_band
    assert strict.threshold == 1.0
    assert strict.asks == tuple(d.box for d in strict.detections if d.score >= low)


def test_a_classifier_after_a_detector_labels_each_box(frames: list[np.ndarray]) -> None:
    chain = ModelChain.load("detect,classify", MANIFEST, source=Source.CLOUD)
    detector, classifier = chain.stages
    (alone,) = ModelChain((detector,), Source.CLOUD).analyse([Look(frames[1], ())])
    (labelled,) = chain.analyse([Look(frames[1], ())])
    assert [d.box for d in labelled.detections] == [d.box for d in alone.detections]
    crops = [frames[1][b.y : b.y + b.h, b.x : b.x + b.w] for b in (d.box for d in alone.detections)]
    expected = classifier.run(crops)
    for d, answer in zip(labelled.detections, expected, strict=True):
        assert d.label_index == int(np.argmax(answer.probabilities))  # type: ignore[union-attr]
        assert d.label == classifier.labels[d.label_index]
    assert chain.name == "yolo-random+classifier224-random"


def test_a_classifier_alone_labels_the_regions_or_else_the_whole_frame(
    frames: list[np.ndarray],
) -> None:
    chain = ModelChain.load("classify", MANIFEST, source=Source.CLOUD)
    region = Region(10, 20, 100, 80)
    with_regions, whole = chain.analyse([Look(frames[2], (region,)), Look(frames[2], ())])
    assert [d.box for d in with_regions.detections] == [region]
    height, width = frames[2].shape[:2]
    assert [d.box for d in whole.detections] == [Region(0, 0, width, height)]


def test_a_chain_refuses_stages_that_cannot_follow_each_other() -> None:
    detector = DeclaredModel.load("detect", MANIFEST)
    classifier = DeclaredModel.load("classify", MANIFEST)
    with pytest.raises(ModelError, match="cannot follow"):
        ModelChain((classifier, detector), Source.EDGE)
    with pytest.raises(ModelError, match="at least one"):
        ModelChain((), Source.EDGE)


def test_a_declared_temperature_calibrates_box_scores(frames: list[np.ndarray]) -> None:
    raw = DeclaredModel.load("detect", MANIFEST)
    warm = DeclaredModel.load("detect", MANIFEST)
    confidence = replace(warm.declaration.confidence, temperature=2.0)
    object.__setattr__(warm, "declaration", replace(warm.declaration, confidence=confidence))
    (plain,) = ModelChain((raw,), Source.EDGE).analyse([Look(frames[3], ())])
    (softened,) = ModelChain((warm,), Source.EDGE).analyse([Look(frames[3], ())])
    for a, b in zip(plain.detections, softened.detections, strict=True):
        logit = np.log(a.score / (1 - a.score))
        assert b.score == pytest.approx(1 / (1 + np.exp(-logit / 2)), rel=1e-5)
        assert abs(b.score - 0.5) < abs(a.score - 0.5)
