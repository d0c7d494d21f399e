"""Face blurring on real photographs shipped by scikit-image (docs/privacy.md).

Most tests run twice, with each detector: MTCNN (the default) and the Haar cascade
(``FaceBlurOptions(detector="haar")``); tests/unit/test_faces.py has MTCNN's own.

The blur measure, per face box (the detected box, compared on grayscale):
  (a) ``laplacian_ratio``: variance of the Laplacian after / before, the share of
      high-frequency energy left; below LAPLACIAN_MAX;
  (b) the detector itself finds no face in the sanitized image;
  (c) ``ssim``: structural similarity of the box, original vs sanitized; below SSIM_MAX.

``python -m tests.unit.test_sanitize`` prints the values docs/privacy.md reports, for
both detectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity as _structural_similarity

from edge_worker.sanitize import (
    DETECTORS,
    Box,
    Detector,
    FaceBlur,
    FaceBlurOptions,
    SanitizeReport,
)
from pipeline.camera.simulator import CameraOptions, CameraSimulator
from schemas.errors import ConfigError, ModelError, SchemaError

LAPLACIAN_MAX = 0.05
SSIM_MAX = 0.4
# Eileen Collins's face in astronaut(), read off the picture by eye (brows to chin,
# cheek to cheek), not taken from the detector.
ASTRONAUT_FACE = Box(180, 75, 85, 110)
FACE_IOU_MIN = 0.5


# scikit-image has no type hints: typed views of what these tests use.
structural_similarity: Callable[..., Any] = _structural_similarity


def shipped(name: str) -> np.ndarray:
    """One of the images scikit-image ships, e.g. ``shipped("astronaut")``."""
    return np.asarray(getattr(data, name)())


def gray(image: np.ndarray) -> np.ndarray:
    out: np.ndarray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return out


def laplacian_ratio(before: np.ndarray, after: np.ndarray, box: Box) -> float:
    """(a) High-frequency energy left in ``box``: Laplacian variance after / before."""
    lap = [cv2.Laplacian(box.crop(gray(i)), cv2.CV_64F).var() for i in (before, after)]
    return float(lap[1] / lap[0])


def ssim(before: np.ndarray, after: np.ndarray, box: Box) -> float:
    """(c) Structural similarity of ``box``, original vs sanitized, on grayscale."""
    a, b = box.crop(gray(before)), box.crop(gray(after))
    return float(structural_similarity(a, b, data_range=255))


def iou(a: Box, b: Box) -> float:
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(0, w) * max(0, h)
    return inter / (a.w * a.h + b.w * b.h - inter)


def outside(shape: tuple[int, ...], boxes: tuple[Box, ...]) -> np.ndarray:
    """A (rows, columns) mask of the pixels outside every box."""
    mask = np.ones(shape[:2], dtype=bool)
    for b in boxes:
        mask[b.y : b.y + b.h, b.x : b.x + b.w] = False
    return mask


def lfw_canvases() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """scikit-image's 100 LFW faces and 100 non-faces (25x25), scaled 4x and padded.

    Padding by half a side with replicated edges gives the cascade the context around
    the face that it was trained with; without it, it finds fewer faces.
    """
    patches = np.rint(shipped("lfw_subset") * 255).astype(np.uint8)
    canvases = [
        cv2.copyMakeBorder(
            cv2.resize(p, (100, 100), interpolation=cv2.INTER_CUBIC),
            50,
            50,
            50,
            50,
            cv2.BORDER_REPLICATE,
        )
        for p in patches
    ]
    return canvases[:100], canvases[100:]


@pytest.fixture(scope="module", params=["mtcnn", "haar"])
def blur(request: pytest.FixtureRequest) -> FaceBlur:
    return FaceBlur(FaceBlurOptions(detector=request.param))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return shipped("astronaut")


def assert_sanitized(original: np.ndarray, report: SanitizeReport, blur: FaceBlur) -> None:
    """Every face blurred by all three measures; every other pixel byte-identical."""
    assert report.image is not original
    assert report.image.shape == original.shape and report.image.dtype == np.uint8
    after = blur.detect(report.image)
    for face in report.faces:
        assert laplacian_ratio(original, report.image, face) < LAPLACIAN_MAX
        assert ssim(original, report.image, face) < SSIM_MAX
        assert [f for f in after if iou(f, face) > 0] == []
    keep = outside(original.shape, report.blurred)
    np.testing.assert_array_equal(report.image[keep], original[keep])
    assert not np.array_equal(report.image[~keep], original[~keep])


def test_the_detector_finds_the_astronauts_face(blur: FaceBlur, astronaut: np.ndarray) -> None:
    faces = blur.detect(astronaut)
    assert len(faces) == 1
    assert iou(faces[0], ASTRONAUT_FACE) >= FACE_IOU_MIN


def test_sanitize_blurs_the_astronauts_face_and_nothing_else(
    blur: FaceBlur, astronaut: np.ndarray
) -> None:
    before = astronaut.copy()
    report = blur.sanitize(astronaut)
    np.testing.assert_array_equal(astronaut, before)  # the caller's array is untouched
    assert len(report.faces) == 1
    assert blur.detect(report.image) == []
    # The enlarged box covers the whole face read off the picture, chin included.
    (area,) = report.blurred
    f = ASTRONAUT_FACE
    assert area.x <= f.x and area.y <= f.y
    assert f.x + f.w <= area.x + area.w and f.y + f.h <= area.y + area.h
    assert_sanitized(astronaut, report, blur)


def test_a_permissive_detector_finds_no_face_where_the_blur_was(
    blur: FaceBlur, astronaut: np.ndarray
) -> None:
    report = blur.sanitize(astronaut)
    eager = FaceBlur(FaceBlurOptions(detector="haar", min_neighbors=1, equalize=False))
    (face,) = report.faces
    # At min_neighbors=1 a box appears on the suit beside the blur; none on the face.
    # (A permissive MTCNN: tests/unit/test_faces.py.)
    assert [f for f in eager.detect(report.image) if iou(f, face) > 0] == []


def test_grayscale_astronaut(blur: FaceBlur, astronaut: np.ndarray) -> None:
    image = gray(astronaut)
    report = blur.sanitize(image)
    assert len(report.faces) == 1
    assert iou(report.faces[0], ASTRONAUT_FACE) >= FACE_IOU_MIN
    assert_sanitized(image, report, blur)


def test_an_image_without_a_face_comes_back_byte_identical(blur: FaceBlur) -> None:
    coffee = shipped("coffee")
    report = blur.sanitize(coffee)
    assert report.faces == () and report.blurred == ()
    assert report.image is not coffee
    np.testing.assert_array_equal(report.image, coffee)


def test_a_face_cut_by_the_image_edge_is_blurred_up_to_the_edge(blur: FaceBlur) -> None:
    # The face sits in the top-left corner, so the enlarged box is clipped.
    corner = np.ascontiguousarray(shipped("astronaut")[60:, 170:])
    report = blur.sanitize(corner)
    (area,) = report.blurred
    assert (area.x, area.y) == (0, 0)
    assert_sanitized(corner, report, blur)


def test_a_crop_over_part_of_the_face_is_blurred(blur: FaceBlur, astronaut: np.ndarray) -> None:
    crop = Box(240, 120, 60, 60)  # the right cheek and beyond: half a face
    report = blur.sanitize_crop(astronaut, crop)
    assert report.image.shape == (60, 60, 3)
    assert len(report.faces) == 1
    expected = crop.crop(blur.sanitize(astronaut).image)
    np.testing.assert_array_equal(report.image, expected)
    assert not np.array_equal(report.image, crop.crop(astronaut))


def test_a_crop_away_from_the_face_is_unchanged(blur: FaceBlur, astronaut: np.ndarray) -> None:
    crop = Box(400, 400, 32, 32)
    report = blur.sanitize_crop(astronaut, crop)
    assert report.faces == ()
    np.testing.assert_array_equal(report.image, crop.crop(astronaut))
    assert not np.shares_memory(report.image, astronaut)


@pytest.mark.parametrize("crop", [Box(500, 0, 20, 10), Box(-1, 0, 5, 5), Box(0, 0, 0, 5)])
def test_a_crop_outside_the_image_is_refused(blur: FaceBlur, crop: Box) -> None:
    with pytest.raises(SchemaError, match="crop"):
        blur.sanitize_crop(np.zeros((512, 512), np.uint8), crop)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 64), np.float32),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((2, 64, 64, 3), np.uint8),
    ],
)
def test_images_of_other_types_are_refused(blur: FaceBlur, image: np.ndarray) -> None:
    with pytest.raises(SchemaError, match="image"):
        blur.sanitize(image)


def test_lfw_faces_are_found_and_none_survives_the_blur(blur: FaceBlur) -> None:
    faces, others = lfw_canvases()
    reports = [blur.sanitize(c) for c in faces]
    found = [(c, r) for c, r in zip(faces, reports, strict=True) if r.faces]
    assert len(found) >= 90  # measured: 98 of 100 (LFW is itself frontal faces)
    assert sum(1 for c in others if blur.detect(c)) <= 2  # measured: 0 of 100
    for canvas, report in found:
        assert blur.detect(report.image) == []
        keep = outside(canvas.shape, report.blurred)
        np.testing.assert_array_equal(report.image[keep], canvas[keep])


def test_one_instance_is_safe_from_many_threads(blur: FaceBlur, astronaut: np.ndarray) -> None:
    expected = blur.detect(astronaut)
    images = [astronaut, gray(astronaut), shipped("coffee")] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(blur.detect, images))
    assert results[0::3] == [expected] * 4
    assert results[1::3] == [blur.detect(gray(astronaut))] * 4
    assert results[2::3] == [[]] * 4


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("scale_factor", 1.0),
        ("scale_factor", float("nan")),
        ("min_neighbors", 0),
        ("min_neighbors", 2.5),
        ("min_size", 11),
        ("detector", "yunet"),
        ("thresholds", (0.6, 0.7)),
        ("margin", -0.1),
        ("cells", 9),
        ("cells", True),
        ("smoothing", 0.2),
        ("equalize", 1),
    ],
)
def test_options_out_of_range_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        FaceBlurOptions(**{key: value})  # type: ignore[arg-type]


def test_a_missing_cascade_file_is_a_model_error(tmp_path: Path) -> None:
    haar = FaceBlurOptions(detector="haar")
    with pytest.raises(ModelError, match="missing"):
        FaceBlur(haar, cascade_path=tmp_path / "missing.xml")
    junk = tmp_path / "junk.xml"
    junk.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ModelError, match="could not be loaded"):
        FaceBlur(haar, cascade_path=junk)
    with pytest.raises(ModelError, match="could not be loaded"):
        FaceBlur(FaceBlurOptions(detector="both"), cascade_path=junk)


def test_a_file_for_a_detector_not_in_use_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cascade_path"):
        FaceBlur(cascade_path=tmp_path / "any.xml")  # the default detector is MTCNN
    with pytest.raises(ConfigError, match="models_dir"):
        FaceBlur(FaceBlurOptions(detector="haar"), models_dir=tmp_path)


def test_an_opencv_without_haar_cascades_is_a_model_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(cv2, "data")
    cascades: tuple[Detector, ...] = ("haar", "both")
    for detector in cascades:
        with pytest.raises(ModelError, match="OpenCV 5"):
            FaceBlur(FaceBlurOptions(detector=detector))
    FaceBlur()  # MTCNN needs no cascade


def _report(detector: Detector) -> None:  # pragma: no cover - docs/privacy.md's figures
    blur = FaceBlur(FaceBlurOptions(detector=detector))
    print("options", blur.options)
    astronaut = shipped("astronaut")
    for name, image in (("astronaut rgb", astronaut), ("astronaut gray", gray(astronaut))):
        r = blur.sanitize(image)
        (face,) = r.faces
        print(
            f"{name}: face {face} iou {iou(face, ASTRONAUT_FACE):.2f} enlarged {r.blurred[0]} "
            f"laplacian {laplacian_ratio(image, r.image, face):.4f} "
            f"ssim {ssim(image, r.image, face):.3f} faces after {blur.detect(r.image)}"
        )
    faces, others = lfw_canvases()
    reports = [(c, blur.sanitize(c)) for c in faces]
    found = [(c, r) for c, r in reports if r.faces]
    lap = [laplacian_ratio(c, r.image, f) for c, r in found for f in r.faces]
    sim = [ssim(c, r.image, f) for c, r in found for f in r.faces]
    print(
        f"lfw: faces found {len(found)}/100, non-faces flagged "
        f"{sum(1 for c in others if blur.detect(c))}/100, found again after blur "
        f"{sum(1 for _, r in found if blur.detect(r.image))}; laplacian median "
        f"{np.median(lap):.3f} max {max(lap):.3f}; ssim median {np.median(sim):.3f} "
        f"max {max(sim):.3f}"
    )
    plain = FaceBlur(FaceBlurOptions(detector=detector, equalize=False))
    for name in (
        "camera", "coins", "chelsea", "immunohistochemistry", "page", "coffee", "cell", "retina",
        "rocket", "text", "hubble_deep_field",
    ):  # fmt: skip
        image = shipped(name)
        print(f"{name}: {len(blur.detect(image))} boxes ({len(plain.detect(image))} unequalised)")
    g = gray(astronaut)
    (face,) = blur.detect(g)
    for angle in (10, 20, 30, 45, 90):
        turn = cv2.getRotationMatrix2D((224.0, 113.0), angle, 1.0)
        turned = cv2.warpAffine(g, turn, (512, 512), borderMode=cv2.BORDER_REFLECT)
        # Turned about the face's centre, so the face stays (roughly) where it was.
        ious = [round(iou(f, face), 2) for f in blur.detect(turned)]
        print(f"rotated {angle} deg: IoU of each box with the face {ious}")
    for scale in (0.4, 0.33, 0.25):
        small = cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        print(f"scaled {scale} (face ~{round(93 * scale)} px): {blur.detect(small)}")
    for gain in (0.25, 0.15, 0.05, 0.03):
        dark = np.rint(g * gain).astype(np.uint8)
        print(f"brightness x{gain}: {blur.detect(dark)} (unequalised {plain.detect(dark)})")
    for part, (top, bottom, left, right) in {
        "eyes": (85, 113, 177, 270),
        "mouth": (122, 160, 177, 270),
        "left half": (66, 161, 177, 224),
    }.items():
        covered = g.copy()
        covered[top:bottom, left:right] = 0
        print(f"occluded {part}: {blur.detect(covered)}")
    simulator = CameraSimulator(CameraOptions(regions_per_frame=3))
    seconds, boxes = [], 0
    for seq in range(25):
        for camera in simulator.camera_names:
            frame, _ = simulator.make_frame(camera, seq, 0.0)
            start = time.perf_counter()
            boxes += len(blur.sanitize(frame.raw_image).faces)
            seconds.append(time.perf_counter() - start)
    print(
        f"{len(seconds)} simulator frames (640x480, 3 digits each): {boxes} boxes; "
        f"sanitize median {np.median(seconds) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    for name in DETECTORS:
        if name != "both":
            _report(name)


def test_detecting_at_half_scale_still_finds_and_blurs_the_astronauts_face(
    astronaut: np.ndarray,
) -> None:
    half = FaceBlur(FaceBlurOptions(detect_scale=0.5))
    faces = half.detect(astronaut)
    assert len(faces) == 1 and iou(faces[0], ASTRONAUT_FACE) >= FACE_IOU_MIN
    report = half.sanitize(astronaut)
    assert laplacian_ratio(astronaut, report.image, ASTRONAUT_FACE) < LAPLACIAN_MAX
    assert outside(astronaut.shape, report.blurred).sum() > 0
    keep = outside(astronaut.shape, report.blurred)
    assert np.array_equal(report.image[keep], astronaut[keep])
