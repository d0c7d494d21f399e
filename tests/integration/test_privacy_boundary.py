"""What crosses the site boundary, watched on the wire: every cloud-bound subject.

A listener on ``escalations.>`` (everything the site stores for the cloud) decodes
every message and checks it against the privacy class of the frame it came from:
``local_only`` frames never appear, ``embedding`` escalations carry an embedding and
not one pixel, ``crop`` escalations carry crops and no frame, and a whole frame that
leaves has its faces blurred (a real photograph with a face, scikit-image's
``astronaut``). The cloud answers embeddings with the model trained on them.
"""

from __future__ import annotations

import time
from dataclasses import replace

import cv2
import numpy as np
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from skimage import data

from cloud_worker.worker import CloudWorker
from edge_worker.worker import EdgeWorker
from pipeline.config import Settings
from pipeline.inference.images import decode
from schemas import subjects
from schemas.codec import decode_escalation, encode
from schemas.messages import Escalation, Frame, PrivacyClass, Region
from tests.helpers import make_frames, wait_until
from tests.integration.feeds import collect

pytestmark = pytest.mark.integration

# The astronaut's face, read off the picture (tests/unit/test_sanitize.py).
FACE = Region(180, 75, 85, 110)


def _laplacian_variance(image: np.ndarray, box: Region) -> float:
    return float(cv2.Laplacian(box.crop(image), cv2.CV_64F).var())


async def test_nothing_forbidden_crosses_and_faces_are_blurred(
    settings: Settings, nc: Client
) -> None:
    # Every uncertain frame wants the cloud; no shadow samples, so only policy decides.
    settings = replace(
        settings, edge=replace(settings.edge, default_threshold=1.0, shadow_rate=0.0)
    )
    rgb = np.asarray(data.astronaut())  # type: ignore[no-untyped-call]
    photo = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    frames: list[Frame] = [f for f, _ in make_frames(120, deadline_ms=10_000, priority=2)]
    frames = [
        replace(f, privacy=list(PrivacyClass)[i % len(PrivacyClass)]) for i, f in enumerate(frames)
    ]
    # A whole photograph with a face, its region of interest on the suit.
    portrait = replace(
        frames[0],
        frame_id="portrait-1",
        image=photo,
        regions=(Region(300, 400, 32, 32),),
        privacy=PrivacyClass.FULL,
        captured_at=time.time(),
    )
    # The same photograph with its region of interest on the face, privacy crop.
    close_up = replace(
        portrait,
        frame_id="portrait-2",
        regions=(Region(160, 60, 120, 140),),
        privacy=PrivacyClass.CROP,
    )
    frames += [portrait, close_up]
    privacy = {f.frame_id: f.privacy for f in frames}
    crossed: list[Escalation] = []

    async def on_escalation(msg: Msg) -> None:
        crossed.append(decode_escalation(msg.data))

    await nc.subscribe("escalations.>", cb=on_escalation)
    results = await collect(nc, subjects.results("site1"))
    async with CloudWorker.from_settings(settings) as cloud, EdgeWorker.from_settings(settings):
        for frame in frames:
            await nc.publish(subjects.frames("site1", frame.camera), encode(frame))
        await wait_until(lambda: len(results) >= len(frames), 30, "a result per frame")
    await nc.flush()

    assert crossed, "uncertain frames that may leave were escalated"
    seen = {privacy[e.frame_id] for e in crossed}
    assert seen == {PrivacyClass.EMBEDDING, PrivacyClass.CROP, PrivacyClass.FULL}
    for escalation in crossed:
        allowed = privacy[escalation.frame_id]
        assert allowed is not PrivacyClass.LOCAL_ONLY, "a local-only frame left the site"
        assert escalation.privacy is allowed
        if allowed is PrivacyClass.EMBEDDING:
            assert escalation.image is None and not escalation.crops, "pixels left the site"
            assert escalation.embedding is not None
            assert escalation.embedding.shape == (len(escalation.regions), 16)
        elif allowed is PrivacyClass.CROP:
            assert escalation.image is None, "a crop escalation carried the whole frame"
            assert escalation.embedding is None
            assert [decode(c).shape for c in escalation.crops] == [
                (r.h, r.w) for r in escalation.regions
            ]
        else:
            assert escalation.image is not None and not escalation.crops
    # Embeddings are answered by the model trained on embeddings, pixels by the other.
    escalated = {e.frame_id for e in crossed}
    for result in results:
        if result.frame_id in escalated and result.source.value == "cloud":
            embedded = privacy[result.frame_id] is PrivacyClass.EMBEDDING
            model = cloud.embedding_model if embedded else cloud.analyser
            assert result.model == model.name

    (sent,) = [e for e in crossed if e.frame_id == "portrait-1"]
    assert isinstance(sent.image, np.ndarray)
    # The face that left is blurred beyond recognition (the measure and threshold of
    # docs/privacy.md); the region of interest, away from the face, left untouched.
    ratio = _laplacian_variance(sent.image, FACE) / _laplacian_variance(photo, FACE)
    assert ratio < 0.05
    roi = portrait.regions[0]
    assert np.array_equal(roi.crop(sent.image), roi.crop(photo))
    # A crop over the face leaves with the face blurred too.
    (cropped,) = [e for e in crossed if e.frame_id == "portrait-2"]
    (crop,) = cropped.crops
    assert isinstance(crop, np.ndarray) and crop.shape == (140, 120)
    face_in_crop = Region(FACE.x - 160, FACE.y - 60, FACE.w, FACE.h)
    ratio = _laplacian_variance(crop, face_in_crop) / _laplacian_variance(photo, FACE)
    assert ratio < 0.05
