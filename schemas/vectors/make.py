"""Write the golden messages of the wire contract: ``python -m schemas.vectors.make``.

Each vector ``<name>`` is one message in both wire forms: ``<name>.msgpack`` holds the
exact bytes hybridfleet sends, and ``<name>.json`` the same message in the JSON form
(indented for reading; any JSON with the same values is equivalent). A client in
another language can check its reader and writer against them. Ids, times, pixels and
scores are fixed, so running this again rewrites the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from schemas.codec import Message, encode
from schemas.jsonform import to_json
from schemas.messages import (
    DeadLetter,
    Escalation,
    Frame,
    InferenceResult,
    PrivacyClass,
    Reason,
    Region,
    Source,
)

__all__ = ["DIRECTORY", "files", "messages", "main"]

DIRECTORY = Path(__file__).resolve().parent
CAPTURED_AT = 1_700_000_000.125  # exact in binary, like every time here


def _pixels(rows: int, columns: int) -> np.ndarray:
    """A fixed uint8 image; neighbouring pixels differ, so a transposed reader shows."""
    values = np.arange(rows * columns, dtype=np.uint32) * 37 % 241
    return values.astype(np.uint8).reshape(rows, columns)


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


def messages() -> dict[str, Message]:
    """Every vector by name."""
    frame = Frame(
        frame_id="site1-cam-1-run7-42",
        site="site1",
        camera="cam-1",
        seq=42,
        captured_at=CAPTURED_AT,
        image=_pixels(8, 16),
        regions=(Region(0, 0, 8, 8), Region(8, 2, 6, 5)),
        priority=2,
        deadline_ms=250,
        threshold=0.8,
        privacy=PrivacyClass.CROP,
    )
    bare = Frame(
        frame_id="site1-cam-2-run7-0",
        site="site1",
        camera="cam-2",
        seq=0,
        captured_at=CAPTURED_AT,
        image=_pixels(4, 6),
        regions=(),
        priority=1,
        deadline_ms=1000,
        threshold=None,
        privacy=PrivacyClass.LOCAL_ONLY,
    )
    # A frame the camera's own model was unsure of, forwarded to the edge.
    forwarded = Frame(
        frame_id="site1-cam-3-run7-9",
        site="site1",
        camera="cam-3",
        seq=9,
        captured_at=CAPTURED_AT,
        image=_pixels(8, 8),
        regions=(Region(0, 0, 8, 8),),
        priority=3,
        deadline_ms=500,
        threshold=None,
        privacy=PrivacyClass.EMBEDDING,
        path=("device",),
    )
    reply_to = "replies.site1.edge-1"
    edge = InferenceResult(
        frame_id=frame.frame_id,
        site="site1",
        camera="cam-1",
        seq=42,
        labels=(3, 7),
        scores=_scores(3, 7),
        confidence=55 / 64,
        source=Source.EDGE,
        model="digits-mlp32",
        model_version="1.0.0",
        latency_ms=4.5,
        reason=Reason.CONFIDENT,
        degraded=False,
        edge_labels=None,
        path=("edge",),
    )
    return {
        "frame_regions": frame,
        "frame_no_regions": bare,
        "frame_forwarded": forwarded,
        "escalation_crop": Escalation.of_frame(frame, PrivacyClass.CROP, reply_to, (3, 1), 0.5),
        "escalation_full": Escalation.of_frame(frame, PrivacyClass.FULL, reply_to, (3, 1), 0.5),
        "escalation_embedding": Escalation.of_frame(
            frame, PrivacyClass.EMBEDDING, reply_to, (3, 1), 0.5, embedding=_embedding(2, 4)
        ),
        "result_edge": edge,
        # The camera skipped the frame as unchanged and reused its last answer.
        "result_device": InferenceResult(
            frame_id="site1-cam-3-run7-10",
            site="site1",
            camera="cam-3",
            seq=10,
            labels=(5,),
            scores=_scores(5),
            confidence=55 / 64,
            source=Source.DEVICE,
            model="digits-logreg",
            model_version="1.0.0",
            latency_ms=1.25,
            reason=Reason.UNCHANGED,
            degraded=False,
            edge_labels=None,
            path=("device",),
        ),
        "result_cloud": InferenceResult(
            frame_id=frame.frame_id,
            site="site1",
            camera="cam-1",
            seq=42,
            labels=(3, 7),
            scores=_scores(3, 7),
            confidence=55 / 64,
            source=Source.CLOUD,
            model="digits-svc",
            model_version="1.0.0",
            latency_ms=61.25,
            reason=Reason.CLOUD_ANSWER,
            degraded=False,
            edge_labels=(3, 1),
            path=("edge", "cloud"),
        ),
        # What an overloaded edge worker publishes for a frame it drops: no labels, no
        # edge_labels, and the path of the frame with the edge, the tier that shed it.
        "result_shed": InferenceResult(
            frame_id=bare.frame_id,
            site="site1",
            camera="cam-2",
            seq=0,
            labels=(),
            scores=np.zeros((0, 10), np.float32),
            confidence=0.0,
            source=Source.EDGE,
            model="digits-mlp32",
            model_version="1.0.0",
            latency_ms=0.75,
            reason=Reason.SHED,
            degraded=True,
            edge_labels=None,
            path=("edge",),
        ),
        "dead_letter": DeadLetter(
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
