"""The shelf scene generator (pipeline/camera/shelf): deterministic for a seed, its
ground truth where the text is, prices that look like prices, the video it writes
(read back with PyAV), and labels that keep their ids while their prices change."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from pipeline.camera.shelf import (
    ShelfConfig,
    ShelfScene,
    ground_truth_path,
    read_ground_truth,
    write_shelf_video,
)
from pipeline.camera.shelf.cli import main
from pipeline.camera.shelf.labels import (
    PRICE_PATTERN,
    UNIT_PRICE_PATTERN,
    font_files,
    random_label,
    render_label,
)
from pipeline.camera.shelf.photos import face_photo, product_photos

W, H = 1280, 720


def frames_of(config: ShelfConfig) -> list[tuple[np.ndarray, dict[str, Any]]]:
    return [(f.image, f.truth) for f in ShelfScene(config)]


@pytest.fixture(scope="module")
def degraded() -> list[tuple[np.ndarray, dict[str, Any]]]:
    """30 frames (3 s at 10 fps) with every degradation."""
    return frames_of(ShelfConfig(W, H, fps=10, frames=30, seed=0))


@pytest.fixture(scope="module")
def clean() -> list[tuple[np.ndarray, dict[str, Any]]]:
    """6 frames without degradations (the camera still shakes)."""
    return frames_of(ShelfConfig(W, H, fps=10, frames=6, seed=1, degrade=False))


def lines_of(truth: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for label in truth["labels"] for line in label["lines"]]


def test_the_same_seed_makes_the_same_video_and_another_seed_another() -> None:
    config = ShelfConfig(W, H, fps=10, frames=8, seed=5)
    first, second = frames_of(config), frames_of(config)
    assert [t for _, t in first] == [t for _, t in second]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(first, second, strict=True))
    other = frames_of(ShelfConfig(W, H, fps=10, frames=8, seed=6))
    assert [t for _, t in other] != [t for _, t in first]
    assert not np.array_equal(other[0][0], first[0][0])


def test_boxes_lie_inside_the_frame_and_over_the_text(
    clean: list[tuple[np.ndarray, dict[str, Any]]],
) -> None:
    checked = 0
    for image, truth in clean:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        for label in truth["labels"]:
            for line in label["lines"]:
                x0, y0, x1, y1 = line["box"]
                assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
                quad = np.array(line["quad"])
                assert quad.shape == (4, 2)
                assert (quad >= 0).all() and (quad[:, 0] <= W).all() and (quad[:, 1] <= H).all()
                # the box is the quadrilateral's bounds
                assert quad.min(0) == pytest.approx([x0, y0], abs=0.11)
                assert quad.max(0) == pytest.approx([x1, y1], abs=0.11)
            cx0, cy0, cx1, cy1 = (round(v) for v in label["box"])
            paper = float(np.median(grey[cy0:cy1, cx0:cx1]))
            price = next(line for line in label["lines"] if line["kind"] == "price")
            px0, py0, px1, py1 = (round(v) for v in price["box"])
            inside = grey[py0:py1, px0:px1]
            # ink in the box: its mean differs from the card's paper, and it varies
            assert abs(float(inside.mean()) - paper) > 20, (label["id"], price["text"])
            assert float(inside.std()) > 20
            checked += 1
    assert checked > 50


def test_ground_truth_boxes_stay_inside_when_degraded(
    degraded: list[tuple[np.ndarray, dict[str, Any]]],
) -> None:
    for _, truth in degraded:
        for line in lines_of(truth):
            x0, y0, x1, y1 = line["box"]
            assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
            assert "truncated" not in line


def test_prices_and_unit_prices_look_like_prices(
    degraded: list[tuple[np.ndarray, dict[str, Any]]],
) -> None:
    seen = 0
    for _, truth in degraded:
        for label in truth["labels"]:
            kinds = {line["kind"]: line["text"] for line in label["lines"]}
            assert set(kinds) == {"name", "price", "unit_price"}
            assert PRICE_PATTERN.fullmatch(kinds["price"]), kinds
            assert re.fullmatch(r"\$\d+\.\d\d", label["price"]) and label["price"] == kinds["price"]
            assert UNIT_PRICE_PATTERN.fullmatch(kinds["unit_price"]), kinds
            assert kinds["name"].strip()
            seen += 1
    assert seen > 30 * 15


def test_labels_near_are_several_times_the_height_of_labels_far(
    clean: list[tuple[np.ndarray, dict[str, Any]]],
) -> None:
    heights: dict[str, list[float]] = {"near": [], "mid": [], "far": []}
    for label in clean[0][1]["labels"]:
        heights[label["size"]].append(label["box"][3] - label["box"][1])
    near, mid, far = (float(np.mean(heights[k])) for k in ("near", "mid", "far"))
    assert near > mid > far
    assert near / far > 3


def test_labels_keep_their_ids_while_prices_change_and_labels_come_and_go(
    degraded: list[tuple[np.ndarray, dict[str, Any]]],
) -> None:
    history: dict[int, list[tuple[int, int, str]]] = {}  # id -> (frame, slot, price)
    events = [e for _, truth in degraded for e in truth["events"]]
    for _, truth in degraded:
        ids = [label["id"] for label in truth["labels"]]
        assert len(ids) == len(set(ids))
        for label in truth["labels"]:
            history.setdefault(label["id"], []).append(
                (truth["frame"], label["slot"], label["price"])
            )
    for seen in history.values():  # an id stays in its slot, in consecutive frames
        assert len({slot for _, slot, _ in seen}) == 1
        frames = [f for f, _, _ in seen]
        assert frames == list(range(frames[0], frames[0] + len(frames)))
    repriced = [i for i, seen in history.items() if len({p for _, _, p in seen}) > 1]
    assert repriced, "no label changed its price"
    assert any(e["kind"] == "price" and e["id"] in repriced for e in events)
    kept = [i for i in repriced if len(history[i]) > 5]
    assert kept and all(len({p for _, _, p in history[i]}) < len(history[i]) for i in kept)
    assert any(e["kind"] == "remove" for e in events)
    added = [e["id"] for e in events if e["kind"] == "add"]
    assert added and all(history[i][0][0] > 0 for i in added)  # new ids, not seen at first


def test_every_degradation_happens_and_is_told(
    degraded: list[tuple[np.ndarray, dict[str, Any]]],
) -> None:
    lines = [line for _, truth in degraded for line in lines_of(truth)]
    effects = [truth["effects"] for _, truth in degraded]
    for flag in ("occluded", "blurred", "glared"):
        assert any(line[flag] for line in lines), flag
        assert not all(line[flag] for line in lines), flag
    assert any(e["motion_blur"] > 0 for e in effects)
    assert any(e["focus_blur"] > 0 for e in effects)
    assert min(e["light"] for e in effects) < 0.6
    qualities = [e["jpeg_quality"] for e in effects]
    assert min(qualities) <= 30 and len(set(qualities)) > 5
    offsets = [tuple(truth["camera"]["offset"]) for _, truth in degraded]
    assert len(set(offsets)) == len(offsets)  # the camera moves every frame
    assert all(abs(v) < 0.05 * W for offset in offsets for v in offset)


def test_a_face_is_in_view_where_the_ground_truth_says(
    clean: list[tuple[np.ndarray, dict[str, Any]]],
) -> None:
    image, truth = clean[0]
    (face,) = truth["faces"]
    x0, y0, x1, y1 = face["box"]
    assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H and x1 - x0 > 40
    cascade = cv2.CascadeClassifier(
        cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
    )
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    found = cascade.detectMultiScale(grey, 1.1, 5)
    centres = [(x + w / 2, y + h / 2) for x, y, w, h in found]
    assert any(x0 <= cx <= x1 and y0 <= cy <= y1 for cx, cy in centres), (found, face)


def test_the_video_has_the_frames_and_size_asked(tmp_path: Path) -> None:
    written = write_shelf_video(tmp_path / "shelf.mp4", seconds=1.2, fps=10, seed=2)
    assert written.truth == tmp_path / "shelf.jsonl" == ground_truth_path(written.video)
    with av.open(str(written.video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(pictures) == 12
    assert all(p.shape == (H, W, 3) for p in pictures)
    truth = read_ground_truth(written.video)
    assert [t["frame"] for t in truth] == list(range(12))
    assert truth == read_ground_truth(written.truth)


def test_the_command_writes_a_video_and_its_ground_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.mp4"
    assert main([str(out), "--seconds", "0.3", "--size", "1280x720", "--seed", "3"]) == 0
    assert out.stat().st_size > 0 and len(read_ground_truth(out)) == 3
    assert "wrote 3 frames (1280x720, 10 fps, seed 3)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(out), "--size", "big"])
    assert main([str(out), "--size", "1281x720"]) == 2


def test_labels_use_several_fonts_and_photographs_load_without_a_download() -> None:
    assert len(font_files()) >= 3
    rng = np.random.default_rng(0)
    fonts = {random_label(rng).fonts for _ in range(40)}
    assert len(fonts) >= 3
    for height in (40, 120):
        card = render_label(random_label(rng), height)
        assert card.image.shape[0] == height
        assert [line.kind for line in card.lines] == ["name", "price", "unit_price"]
        ink = (card.image != np.array(card.paper, dtype=np.uint8)).any(axis=2)
        for line in card.lines:  # tight: ink on every edge of the box
            x0, y0, x1, y1 = line.box
            assert ink[y0, x0:x1].any() and ink[y1 - 1, x0:x1].any(), line
            assert ink[y0:y1, x0].any() and ink[y0:y1, x1 - 1].any(), line
    assert len(product_photos()) >= 4 and face_photo().shape == (512, 512, 3)
