"""MTCNN in onnxruntime (edge_worker/faces.py, models/mtcnn/): the files, the boxes, the blur.

The reference boxes below are facenet-pytorch 2.6.0's own ``MTCNN(keep_all=True)
.detect`` on torch 2.13 CPU (torchvision's ``batched_nms`` replaced by a plain torch
equivalent, since PyPI's torchvision does not load beside that torch), run once in a
throwaway environment: the ONNX pipeline must give the same boxes. docs/privacy.md
has the comparison over 228 images.

``python -m tests.unit.test_faces`` prints the recall and timing figures of
docs/privacy.md ("MTCNN").
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_worker.faces import MODELS_DIR, MTCNN, Faces, MTCNNOptions, verify_models
from edge_worker.sanitize import Box, FaceBlur, FaceBlurOptions
from models.mtcnn import NETWORKS, PROVENANCE
from schemas.errors import ConfigError, ModelError, SchemaError
from tests.unit.test_sanitize import (
    ASTRONAUT_FACE,
    LAPLACIAN_MAX,
    SSIM_MAX,
    gray,
    iou,
    laplacian_ratio,
    lfw_canvases,
    outside,
    shipped,
    ssim,
)

# The cameraman's face in camera(), read off the picture by eye (4x enlargement with
# a 10-pixel grid): eyebrows to chin, from in front of the ear to the tip of the nose.
# The Haar cascade misses this three-quarter view (docs/privacy.md).
CAMERA_FACE = Box(200, 133, 55, 62)
FACE_IOU_MIN = 0.5

# facenet-pytorch 2.6.0, MTCNN(keep_all=True).detect (the module docstring):
# left, top, right, bottom, probability.
REFERENCE = {
    "astronaut": (181.05140686035156, 62.156131744384766, 267.747314453125, 172.0501708984375,
                  0.9999977350234985),
    "camera": (199.21633911132812, 118.9256591796875, 254.2662353515625, 192.26976013183594,
               0.9991000890731812),
}  # fmt: skip


@pytest.fixture(scope="module")
def mtcnn() -> MTCNN:
    return MTCNN()


def box_of(faces: Faces, i: int = 0) -> Box:
    """Face ``i`` as a whole-pixel box, rounded outwards."""
    x1, y1, x2, y2 = faces.boxes[i]
    left, top = int(np.floor(x1)), int(np.floor(y1))
    return Box(left, top, int(np.ceil(x2)) - left, int(np.ceil(y2)) - top)


def test_the_onnx_files_are_the_ones_provenance_records() -> None:
    provenance = json.loads(PROVENANCE.read_text())
    assert provenance["licence"] == "MIT"
    assert provenance["package"]["project"] == "facenet-pytorch"
    assert provenance["package"]["version"] == "2.6.0"
    assert (MODELS_DIR / "LICENSE").read_text().startswith("MIT License")
    for name in NETWORKS:
        entry = provenance["files"][name]
        data = (MODELS_DIR / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["size_bytes"]
        assert entry["max_abs_diff_vs_torch"] <= provenance["exporter"]["atol"]
    assert set(verify_models()) == set(NETWORKS)


@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_the_boxes_are_facenet_pytorchs(mtcnn: MTCNN, name: str) -> None:
    faces = mtcnn.detect(shipped(name))
    assert len(faces) == 1
    *box, probability = REFERENCE[name]
    np.testing.assert_allclose(faces.boxes[0], box, atol=0.01)
    assert faces.probabilities[0] == pytest.approx(probability, abs=1e-5)


@pytest.mark.parametrize(("name", "face"), [("astronaut", ASTRONAUT_FACE), ("camera", CAMERA_FACE)])
def test_mtcnn_finds_the_face_read_off_the_picture(mtcnn: MTCNN, name: str, face: Box) -> None:
    image = shipped(name)
    faces = mtcnn.detect(image)
    assert len(faces) == 1
    assert iou(box_of(faces), face) >= FACE_IOU_MIN
    assert faces.probabilities[0] > 0.99
    # The five landmarks (eyes, nose, mouth corners) fall inside the box.
    x1, y1, x2, y2 = faces.boxes[0]
    marks = faces.landmarks[0]
    assert ((marks[:, 0] > x1) & (marks[:, 0] < x2)).all()
    assert ((marks[:, 1] > y1) & (marks[:, 1] < y2)).all()


def test_the_haar_cascade_misses_the_cameraman_and_mtcnn_does_not() -> None:
    camera = shipped("camera")
    assert FaceBlur(FaceBlurOptions(detector="haar")).detect(camera) == []
    (found,) = FaceBlur().detect(camera)
    assert iou(found, CAMERA_FACE) >= FACE_IOU_MIN


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((480, 640, 3), np.uint8),
        np.full((720, 1280, 3), 255, np.uint8),
        np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 256, (512, 512), dtype=np.uint8),
        np.zeros((11, 400, 3), np.uint8),  # shorter than PNet's window: no pyramid at all
    ],
    ids=["black", "white-720p", "noise", "noise-gray", "sliver"],
)
def test_nothing_is_found_in_a_blank_or_noise_image(mtcnn: MTCNN, image: np.ndarray) -> None:
    faces = mtcnn.detect(image)
    assert len(faces) == 0
    assert faces.boxes.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2)


@pytest.mark.parametrize("name", ["coffee", "chelsea", "coins", "page", "rocket"])
def test_nothing_is_found_in_photographs_without_a_face(mtcnn: MTCNN, name: str) -> None:
    assert len(mtcnn.detect(shipped(name))) == 0


def test_grayscale_is_the_same_as_gray_rgb(mtcnn: MTCNN) -> None:
    g = gray(shipped("astronaut"))
    a, b = mtcnn.detect(g), mtcnn.detect(np.repeat(g[:, :, None], 3, axis=2))
    assert len(a) == 1
    np.testing.assert_array_equal(a.boxes, b.boxes)


@pytest.mark.parametrize(
    ("name", "face"),
    [("astronaut", ASTRONAUT_FACE), ("camera", CAMERA_FACE), ("astronaut-gray", ASTRONAUT_FACE)],
)
def test_the_sanitizer_blurs_the_face(name: str, face: Box) -> None:
    blur = FaceBlur()
    image = gray(shipped("astronaut")) if name == "astronaut-gray" else shipped(name)
    report = blur.sanitize(image)
    (found,) = report.faces
    (area,) = report.blurred
    # The blurred area covers the whole face read off the picture.
    assert area.x <= face.x and area.y <= face.y
    assert face.x + face.w <= area.x + area.w and face.y + face.h <= area.y + area.h
    for box in (found, face):
        assert laplacian_ratio(image, report.image, box) < LAPLACIAN_MAX
        assert ssim(image, report.image, box) < SSIM_MAX
    assert blur.detect(report.image) == []
    keep = outside(image.shape, report.blurred)
    np.testing.assert_array_equal(report.image[keep], image[keep])


def test_a_permissive_mtcnn_finds_no_face_where_the_blur_was() -> None:
    for name, face in (("astronaut", ASTRONAUT_FACE), ("camera", CAMERA_FACE)):
        image = shipped(name)
        report = FaceBlur().sanitize(image)
        eager = FaceBlur(FaceBlurOptions(thresholds=(0.3, 0.3, 0.3), equalize=False))
        # On the astronaut it returns one box of the whole upper body (IoU 0.05 with the
        # face); none has the face's place and size.
        assert [f for f in eager.detect(report.image) if iou(f, face) > 0.3] == []


def test_faces_turned_small_or_dark_are_found() -> None:
    blur, astronaut = FaceBlur(), shipped("astronaut")
    turn = cv2.getRotationMatrix2D((224.0, 113.0), 45, 1.0)
    turned = cv2.warpAffine(astronaut, turn, (512, 512), borderMode=cv2.BORDER_REFLECT)
    (found,) = blur.detect(turned)
    assert iou(found, ASTRONAUT_FACE) >= FACE_IOU_MIN
    # A quarter of the size: the face is about 23 pixels across.
    small = cv2.resize(astronaut, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    assert len(blur.detect(small)) == 1
    # min_size is where the pyramid starts, not a hard floor: PNet's window at 50 pixels
    # still takes in this head, and the regression shrinks the box to the face.
    assert len(FaceBlur(FaceBlurOptions(min_size=50)).detect(small)) == 1
    assert FaceBlur(FaceBlurOptions(min_size=60)).detect(small) == []
    # At 3% of its brightness only the gain that ``equalize`` applies brings it back.
    dark = np.rint(astronaut * 0.03).astype(np.uint8)
    (found,) = blur.detect(dark)
    assert iou(found, ASTRONAUT_FACE) >= FACE_IOU_MIN
    assert FaceBlur(FaceBlurOptions(equalize=False)).detect(dark) == []


def test_the_pyramid_is_facenet_pytorchs(mtcnn: MTCNN) -> None:
    scales = mtcnn.scales(512, 512)
    assert scales[0] == pytest.approx(12 / 20)
    assert len(scales) == 10  # 512 * 0.6 * 0.709**9 = 13.0 >= 12; one more is 9.2
    assert np.allclose(np.diff(np.log(scales)), np.log(0.709))
    assert MTCNN(MTCNNOptions(min_size=40)).scales(512, 512)[0] == pytest.approx(0.3)


def test_one_instance_is_safe_from_many_threads(mtcnn: MTCNN) -> None:
    images = [shipped("astronaut"), shipped("camera"), shipped("coffee")] * 4
    expected = [mtcnn.detect(i).boxes for i in images[:3]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: mtcnn.detect(i).boxes, images))
    for k, got in enumerate(results):
        np.testing.assert_array_equal(got, expected[k % 3])


def test_both_detectors_together_report_one_box_per_face() -> None:
    both = FaceBlur(FaceBlurOptions(detector="both"))
    assert both.detect(shipped("astronaut")) == FaceBlur().detect(shipped("astronaut"))
    faces, _ = lfw_canvases()
    # LFW faces 4 and 30 are missed by the cascade, 9 and 13 by MTCNN; together, none.
    for k in (4, 9, 13, 30):
        assert len(both.detect(faces[k])) == 1


def test_an_altered_or_missing_model_is_a_model_error(tmp_path: Path) -> None:
    folder = tmp_path / "mtcnn"
    shutil.copytree(MODELS_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    data = bytearray((folder / "rnet.onnx").read_bytes())
    data[-1] ^= 1
    (folder / "rnet.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"rnet\.onnx has SHA-256"):
        MTCNN(folder=folder)
    with pytest.raises(ModelError, match=r"rnet\.onnx has SHA-256"):
        FaceBlur(models_dir=folder)
    (folder / "onet.onnx").unlink()
    with pytest.raises(ModelError, match="missing"):
        verify_models(folder)
    (folder / "provenance.json").write_text("{}")
    with pytest.raises(ModelError, match="provenance"):
        MTCNN(folder=folder)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("min_size", 11),
        ("min_size", 20.0),
        ("thresholds", (0.6, 0.7)),
        ("thresholds", (0.6, 0.7, 1.0)),
        ("thresholds", [0.6, 0.7, 0.7]),
        ("factor", 0.95),
    ],
)
def test_mtcnn_options_out_of_range_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        MTCNNOptions(**{key: value})  # type: ignore[arg-type]


def test_images_of_other_types_are_refused(mtcnn: MTCNN) -> None:
    for image in (np.zeros((64, 64), np.float32), np.zeros((64, 64, 4), np.uint8)):
        with pytest.raises(SchemaError, match="image"):
            mtcnn.detect(image)


def _report() -> None:  # pragma: no cover - prints the MTCNN figures of docs/privacy.md
    """Recall on the shipped photographs, Haar against MTCNN, and ms per frame."""
    cv2.setNumThreads(1)
    # The cascade as FaceBlur() ran it before MTCNN: its default min_size was then 30.
    haar, mtcnn = FaceBlur(FaceBlurOptions(detector="haar", min_size=30)), FaceBlur()
    astronaut = shipped("astronaut")
    canvas = cv2.resize(shipped("coffee"), (1280, 720), interpolation=cv2.INTER_AREA)
    canvas[:, 280:1000] = cv2.resize(astronaut, (720, 720), interpolation=cv2.INTER_AREA)
    frames = {"512x512": astronaut, "1280x720": canvas}
    faces, others = lfw_canvases()
    for name, blur in (("haar", haar), ("mtcnn", mtcnn)):
        hits = {
            n: [round(iou(f, face), 2) for f in blur.detect(shipped(n))]
            for n, face in (("astronaut", ASTRONAUT_FACE), ("camera", CAMERA_FACE))
        }
        missed = [k for k, c in enumerate(faces) if not blur.detect(c)]
        flagged = sum(1 for c in others if blur.detect(c))
        print(f"{name}: IoU of each box with the face {hits}; LFW missed {missed}, "
              f"non-faces flagged {flagged}/100")  # fmt: skip
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    for size, frame in frames.items():
        for name, detect in (
            ("haar", haar.detect),
            ("mtcnn", mtcnn.detect),
            ("mtcnn detect_scale 0.5", FaceBlur(FaceBlurOptions(detect_scale=0.5)).detect),
        ):
            detect(frame)
            wall, cpu = [], []
            for _ in range(runs):
                w, c = time.perf_counter(), time.process_time()
                found = detect(frame)
                wall.append(time.perf_counter() - w)
                cpu.append(time.process_time() - c)
            print(f"{size} {name}: faces {found}, median of {runs}: "
                  f"{statistics.median(wall) * 1e3:.0f} ms wall, "
                  f"{statistics.median(cpu) * 1e3:.0f} ms CPU")  # fmt: skip


if __name__ == "__main__":
    _report()
