"""Models declared only by a manifest entry, on JPEG colour frames from a video file.

The edge runs a random-weight detector in the Ultralytics v8 layout, the cloud a
random-weight 224x224 RGB classifier (models/random/); no worker code knows either.
Camera frames come from a generated H.264 file through a video camera. Every frame is
answered exactly once; the detections the edge is unsure of leave as JPEG crops, and
the cloud's labels take their place in the final result.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from nats.aio.client import Client

from models.random.build import HERE as RANDOM_MODELS
from pipeline.camera.sources.config import VideoCamera
from pipeline.camera.sources.photos import write_photo_video
from pipeline.config import Settings
from pipeline.inference.images import decode
from pipeline.inference.runtime import DeclaredModel
from schemas.messages import Encoded, PrivacyClass, Reason, Source
from tests.integration.feeds import run_video

pytestmark = pytest.mark.integration

MANIFEST = RANDOM_MODELS / "manifest.json"


def _settings(settings: Settings) -> Settings:
    edge = replace(settings.edge, model_manifest=str(MANIFEST), models="detect", shadow_rate=0.0)
    cloud = replace(settings.cloud, model_manifest=str(MANIFEST), models="classify")
    return replace(settings, edge=edge, cloud=cloud)


async def test_detector_and_classifier_declared_by_manifest_answer_video(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    video = tmp_path / "pan.mp4"
    write_photo_video(video, 40, width=480, height=272)
    camera = VideoCamera(
        "shelf", str(video), rate_hz=25.0, realtime=False, deadline_ms=30_000, jpeg_quality=85
    )
    run = await run_video(_settings(settings), nc, [camera])
    results, escalations, edge = run.results, run.escalations, run.edge

    assert run.published > 0
    by_id = {r.frame_id: r for r in results}
    assert len(results) == len(by_id) == run.published, "exactly one final result per frame"
    assert (edge.analyser.name, run.cloud.analyser.name) == (
        "yolo-random",
        "classifier224-random",
    )

    detector = DeclaredModel.load("detect", MANIFEST)
    low, high = detector.declaration.confidence.uncertain_band
    classes = set(DeclaredModel.load("classify", MANIFEST).labels)
    assert escalations, "some detections were uncertain"
    for escalation in escalations:
        # Only the uncertain boxes leave, each as a JPEG crop of its own size.
        assert escalation.regions and escalation.image is None
        assert len(escalation.crops) == len(escalation.regions)
        for box, crop in zip(escalation.regions, escalation.crops, strict=True):
            assert isinstance(crop, Encoded)
            assert decode(crop).shape == (box.h, box.w, 3)
        final = by_id[escalation.frame_id]
        assert final.source is Source.CLOUD
        cloud_boxes = {d.box for d in final.detections if d.source is Source.CLOUD}
        assert cloud_boxes == set(escalation.regions)
        for d in final.detections:
            if d.source is Source.CLOUD:
                assert d.label in classes
            else:  # what the edge kept was certain (or too weak to ask about)
                assert d.score >= high or d.score < low
    for result in results:
        if result.source is Source.EDGE:
            assert all(d.score >= high or d.score < low for d in result.detections)
            assert result.detections and all(d.label in detector.labels for d in result.detections)
    assert np.isfinite([r.confidence for r in results]).all()


async def test_a_whole_jpeg_frame_leaves_and_the_cloud_labels_the_boxes_asked_about(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    video = tmp_path / "pan.mp4"
    write_photo_video(video, 12, width=480, height=272)
    camera = VideoCamera(
        "door",
        str(video),
        rate_hz=25.0,
        realtime=False,
        deadline_ms=30_000,
        privacy=PrivacyClass.FULL,
    )
    run = await run_video(_settings(settings), nc, [camera])
    results, escalations = run.results, run.escalations
    by_id = {r.frame_id: r for r in results}
    assert escalations and len(by_id) == run.published
    for escalation in escalations:
        assert isinstance(escalation.image, Encoded) and not escalation.crops
        assert decode(escalation.image).shape == (272, 480, 3)
        final = by_id[escalation.frame_id]
        assert (final.source, final.reason) == (Source.CLOUD, Reason.CLOUD_ANSWER)
        assert {d.box for d in final.detections if d.source is Source.CLOUD} == set(
            escalation.regions
        )
