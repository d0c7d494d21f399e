"""The JSON form over a real worker: frames in as JSON, results back as JSON on request."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson
import pytest
from nats.aio.client import Client

from edge_worker.worker import EdgeWorker
from pipeline.config import Settings
from schemas import subjects
from schemas.codec import decode_result, encode
from schemas.jsonform import JSON, from_json, to_json
from schemas.messages import InferenceResult
from tests.helpers import make_frames, wait_until

pytestmark = pytest.mark.integration


async def test_json_request_gets_a_json_reply(settings: Settings, nc: Client) -> None:
    (frame, truth), (other, _) = make_frames(2, deadline_ms=5_000, priority=1)
    async with EdgeWorker.from_settings(settings) as worker:
        reply = await nc.request(
            subjects.infer("site1"),
            to_json(replace(frame, captured_at=time.time())),
            timeout=10,
            headers={"Content-Type": JSON, "Accept": JSON},
        )
        assert reply.headers is not None and reply.headers.get("Content-Type") == JSON
        result = from_json(InferenceResult, reply.data)
        assert result.frame_id == frame.frame_id and len(result.labels) == len(truth)
        assert orjson.loads(reply.data)["type"] == "result"

        # No Accept: msgpack, as before.
        plain = await nc.request(subjects.infer("site1"), encode(other), timeout=10)
        assert decode_result(plain.data).frame_id == other.frame_id

        # A content type the contract does not know is a dead letter, not a crash.
        await nc.publish(
            subjects.frames("site1", frame.camera),
            encode(frame),
            headers={"Content-Type": "text/csv"},
        )
        await wait_until(
            lambda: (
                worker.metrics.value(
                    "hybridfleet_edge_dead_letters_total", site="site1", kind="schema"
                )
                == 1
            ),
            10,
            "the dead letter",
        )
