"""Write the golden messages of the wire contract: ``python -m schemas.vectors.make``.

Each vector ``<name>`` is one message in both wire forms: ``<name>.msgpack`` holds the
exact bytes hybridfleet sends, and ``<name>.json`` the same message in the JSON form
(indented for reading; any JSON with the same values is equivalent). A client in
another language can check its reader and writer against them. Ids, times, pixels and
scores are fixed, so running this again rewrites the same bytes.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson

from schemas import messages as wire
from schemas.codec import encode
from schemas.jsonform import to_json

__all__ = ["DIRECTORY", "files", "messages", "main"]

DIRECTORY = Path(__file__).resolve().parent
CAPTURED_AT = 1_700_000_000.125  # exact in binary, like every time here

# Fixed JPEG files, so the vectors stay byte for byte the same whatever libjpeg is
# installed. Each is the RGB image ``_colour(8, 16)`` (or the crop of it named), written
# by OpenCV 4.14 with ``cv2.imencode(".jpg", <as BGR>, [IMWRITE_JPEG_QUALITY, 75,
# IMWRITE_JPEG_OPTIMIZE, 1, IMWRITE_JPEG_SAMPLING_FACTOR, IMWRITE_JPEG_SAMPLING_FACTOR_444])``.
# The frame: 16 columns, 8 rows.
JPEG_FRAME = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIs"
    "IxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/2wBDAQkJCQwLDBgNDRgyIRwhMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIy"
    "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjL/wAARCAAIABADAREAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAA"
    "AQT/xAAdEAEBAAMAAgMAAAAAAAAAAAABAgMREiIxBCNS/8QAFgEBAQEAAAAAAAAAAAAAAAAAAQAC/8QAIREBAAIB"
    "AwQDAAAAAAAAAAAAAQIRIQMiMQASMkFhYoL/2gAMAwEAAhEDEQA/AJ8d5WZw4+MRfMzgw4jahzwz62Bzrb+X1mVn"
    "pmmMpBZ7k/q+EMheAKuu2ERowillzI38RoMmc13S42rYeU9qzqe/qJuFL+RdW2U+kDa+a7Qp72eeWeQlLUcsp08B"
    "RgyWvtxV/V41HrMtR0dsZEfW3mzJnF7uUUsswQ6//9k="
)
# Its region [0, 0, 8, 8]: 8 columns, 8 rows.
JPEG_CROP_0 = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIs"
    "IxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/2wBDAQkJCQwLDBgNDRgyIRwhMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIy"
    "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjL/wAARCAAIAAgDAREAAhEBAxEB/8QAFAABAAAAAAAAAAAAAAAAAAAA"
    "BP/EABoQAAIDAQEAAAAAAAAAAAAAAAEDAhESMVL/xAAVAQEBAAAAAAAAAAAAAAAAAAAAAf/EAB8RAQACAQQDAQAA"
    "AAAAAAAAAAECESEDEiIxMkFhgv/aAAwDAQACEQMRAD8AOubTGKV4UJ5jFCVCyQM4MeWAM1Z8njibPTNMZSCz3J/V"
    "9IZC8AVdbYRFGEUsuZG/kaDJnNbpdcVsPKfH/9k="
)
# Its region [8, 2, 6, 5]: 6 columns, 5 rows.
JPEG_CROP_1 = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIs"
    "IxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/2wBDAQkJCQwLDBgNDRgyIRwhMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIy"
    "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjL/wAARCAAFAAYDAREAAhEBAxEB/8QAFAABAAAAAAAAAAAAAAAAAAAA"
    "A//EABwQAAMBAAIDAAAAAAAAAAAAAAECAwQREhNRY//EABUBAQEAAAAAAAAAAAAAAAAAAAIE/8QAHxEAAgEEAwEB"
    "AAAAAAAAAAAAAQIRAwQhMRJBUTJS/9oADAMBAAIRAxEAPwAa6Fy4I76nQ0rKriOe3gIZ2fk9lHz5IAAJb0qgShVu"
    "Kpt1RfZYF/lUPZH73O+R2xgXqilVZJJKnjM7jHmNazAgdSf/2Q=="
)


def _pixels(rows: int, columns: int) -> np.ndarray:
    """A fixed uint8 image; neighbouring pixels differ, so a transposed reader shows."""
    values = np.arange(rows * columns, dtype=np.uint32) * 37 % 241
    return values.astype(np.uint8).reshape(rows, columns)


def _colour(rows: int, columns: int) -> np.ndarray:
    """A fixed uint8 RGB image (rows, columns, 3): ``_pixels`` read three values a pixel."""
    return _pixels(rows, columns * 3).reshape(rows, columns, 3)


def _scores(*winners: int) -> np.ndarray:
    """One row per region, 10 classes; each row sums to 1 in exact binary fractions."""
    rows = np.full((len(winners), 10), 1 / 64, dtype=np.float32)
    for row, label in enumerate(winners):
        rows[row, label] = 55 / 64
    return rows


def _embedding(rows: int, width: int) -> np.ndarray:
    """A fixed float32 (rows, width) embedding of exact binary fractions, some negative."""
    values = (np.arange(rows * width, dtype=np.float32) - 3) / 8
    return values.reshape(rows, width)


def messages() -> dict[str, wire.Message]:
    """Every vector by name."""
    frame = wire.Frame(
        frame_id="site1-cam-1-run7-42",
        site="site1",
        camera="cam-1",
        seq=42,
        captured_at=CAPTURED_AT,
        image=_pixels(8, 16),
        regions=(wire.Region(0, 0, 8, 8), wire.Region(8, 2, 6, 5)),
        priority=2,
        deadline_ms=250,
        threshold=0.8,
        privacy=wire.PrivacyClass.CROP,
    )
    bare = replace(
        frame,
        frame_id="site1-cam-2-run7-0",
        camera="cam-2",
        seq=0,
        image=_pixels(4, 6),
        regions=(),
        priority=1,
        deadline_ms=1000,
        threshold=None,
        privacy=wire.PrivacyClass.LOCAL_ONLY,
    )
    # A frame the camera's own model was unsure of, forwarded to the edge.
    forwarded = replace(
        frame,
        frame_id="site1-cam-3-run7-9",
        camera="cam-3",
        seq=9,
        image=_pixels(8, 8),
        regions=(wire.Region(0, 0, 8, 8),),
        priority=3,
        deadline_ms=500,
        threshold=None,
        privacy=wire.PrivacyClass.EMBEDDING,
        path=("device",),
    )

    # A colour camera sending raw RGB pixels.
    colour = replace(
        frame,
        frame_id="site1-cam-4-run7-5",
        camera="cam-4",
        seq=5,
        image=_colour(4, 6),
        regions=(wire.Region(1, 1, 4, 2),),
        threshold=None,
        privacy=wire.PrivacyClass.FULL,
        colour=wire.Colour.RGB,
    )
    # A camera sending JPEG for a detector: no regions, the model finds its own.
    jpeg = replace(
        frame,
        frame_id="site1-cam-5-run7-3",
        camera="cam-5",
        seq=3,
        image=wire.Encoded(JPEG_FRAME, wire.Encoding.JPEG),
        regions=(),
        deadline_ms=500,
        threshold=None,
        colour=wire.Colour.RGB,
    )

    def escalated(send: wire.PrivacyClass, embedding: np.ndarray | None = None) -> wire.Escalation:
        """``frame`` as the edge escalates it under ``send``, having answered 3 and 1."""
        return wire.Escalation.of_frame(
            frame, send, "replies.site1.edge-1", (3, 1), 0.5, embedding=embedding
        )

    edge = wire.InferenceResult(
        frame_id=frame.frame_id,
        site="site1",
        camera="cam-1",
        seq=42,
        labels=(3, 7),
        scores=_scores(3, 7),
        confidence=55 / 64,
        source=wire.Source.EDGE,
        model="digits-mlp32",
        model_version="1.0.0",
        latency_ms=4.5,
        reason=wire.Reason.CONFIDENT,
        degraded=False,
        edge_labels=None,
        path=("edge",),
    )
    # A detector's answer for the JPEG frame: no labels or scores, two detections.
    detected = replace(
        edge,
        frame_id=jpeg.frame_id,
        camera="cam-5",
        seq=3,
        labels=(),
        scores=np.zeros((0, 0), np.float32),
        confidence=0.625,
        model="detector-ssd",
        latency_ms=12.5,
        detections=(
            wire.Detection(wire.Region(1, 0, 6, 8), "person", 0, 0.875, wire.Source.EDGE),
            wire.Detection(wire.Region(9, 3, 5, 4), "car", 2, 0.625, wire.Source.EDGE),
        ),
    )
    return {
        "frame_regions": frame,
        "frame_no_regions": bare,
        "frame_forwarded": forwarded,
        "frame_rgb": colour,
        "frame_jpeg": jpeg,
        "escalation_crop": escalated(wire.PrivacyClass.CROP),
        # The JPEG crops of ``frame``'s two regions, cut from its colour twin and encoded
        # again by the edge.
        "escalation_jpeg_crops": replace(
            escalated(wire.PrivacyClass.CROP),
            crops=(
                wire.Encoded(JPEG_CROP_0, wire.Encoding.JPEG),
                wire.Encoded(JPEG_CROP_1, wire.Encoding.JPEG),
            ),
        ),
        "escalation_full": escalated(wire.PrivacyClass.FULL),
        "escalation_embedding": escalated(wire.PrivacyClass.EMBEDDING, _embedding(2, 4)),
        "result_edge": edge,
        # The camera skipped the frame as unchanged and reused its last answer.
        "result_device": replace(
            edge,
            frame_id="site1-cam-3-run7-10",
            camera="cam-3",
            seq=10,
            labels=(5,),
            scores=_scores(5),
            source=wire.Source.DEVICE,
            model="digits-logreg",
            latency_ms=1.25,
            reason=wire.Reason.UNCHANGED,
            path=("device",),
        ),
        "result_cloud": replace(
            edge,
            source=wire.Source.CLOUD,
            model="digits-svc",
            latency_ms=61.25,
            reason=wire.Reason.CLOUD_ANSWER,
            edge_labels=(3, 1),
            path=("edge", "cloud"),
        ),
        # What an overloaded edge worker publishes for a frame it drops: no labels, no
        # edge_labels, and the path of the frame with the edge, the tier that shed it.
        "result_shed": replace(
            edge,
            frame_id=bare.frame_id,
            camera="cam-2",
            seq=0,
            labels=(),
            scores=np.zeros((0, 10), np.float32),
            confidence=0.0,
            latency_ms=0.75,
            reason=wire.Reason.SHED,
            degraded=True,
        ),
        "result_detections": detected,
        # A text reader's answer: two lines, one of them not ASCII.
        "result_lines": replace(
            detected,
            confidence=0.5,
            model="reader-crnn",
            latency_ms=20.25,
            detections=(),
            lines=(
                wire.TextLine(wire.Region(1, 1, 14, 3), "HF-2024", 0.75, wire.Source.EDGE),
                wire.TextLine(wire.Region(1, 5, 12, 3), "Straße 12", 0.5, wire.Source.EDGE),
            ),
        ),
        "dead_letter": wire.DeadLetter(
            stage="edge",
            site="site1",
            subject="frames.site1.cam-1",
            reason="frame: not valid msgpack (FormatError: ...)",
            data=b"\xc1not msgpack",
            at=CAPTURED_AT + 0.5,
        ),
    }


def files() -> dict[str, bytes]:
    """The content of every vector file, by file name."""
    out = {}
    for name, message in messages().items():
        out[f"{name}.msgpack"] = encode(message)
        out[f"{name}.json"] = _one_key_a_line(to_json(message))
    return out


def _one_key_a_line(compact: bytes) -> bytes:
    """The same JSON with each top-level key on its own line, for people to read."""
    lines = [
        b"  " + orjson.dumps(k) + b": " + orjson.dumps(v) for k, v in orjson.loads(compact).items()
    ]
    return b"{\n" + b",\n".join(lines) + b"\n}\n"


def main() -> None:
    """Write every vector next to this script."""
    for name, content in files().items():
        (DIRECTORY / name).write_bytes(content)
        print(f"{name}: {len(content)} bytes")


if __name__ == "__main__":
    main()
