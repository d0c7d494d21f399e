"""Repeated frame ids (edge_worker/repeats.py), admission rules (edge_worker/intake.py)
and escalation tags (edge_worker/tags.py): pure logic, no server."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from edge_worker.intake import check_frame
from edge_worker.repeats import FrameIds, Joiner, Seen
from edge_worker.tags import EscalationTags
from schemas.errors import SchemaError
from tests.helpers import make_frames


def test_a_new_id_is_in_flight_until_finished_then_remembered() -> None:
    ids: FrameIds[str] = FrameIds(remember=2)
    assert ids.admit("a") == (Seen.NEW, None)
    assert ids.admit("a") == (Seen.IN_FLIGHT, None)
    ids.join("a", Joiner("_INBOX.1", None))
    ids.join("a", Joiner("_INBOX.2", "application/json"))
    assert [j.reply_to for j in ids.finish("a", "final-a")] == ["_INBOX.1", "_INBOX.2"]
    assert ids.admit("a") == (Seen.FINISHED, "final-a")
    assert ids.in_flight == 0


def test_only_the_last_finished_ids_are_remembered() -> None:
    ids: FrameIds[str] = FrameIds(remember=2)
    for frame_id in "abc":
        ids.admit(frame_id)
        ids.finish(frame_id, f"final-{frame_id}")
    assert "a" not in ids and "b" in ids and "c" in ids
    assert ids.admit("a") == (Seen.NEW, None)  # forgotten: treated as new


def test_forget_ends_an_id_without_a_result() -> None:
    ids: FrameIds[str] = FrameIds(remember=10)
    ids.admit("a")
    ids.join("a", Joiner("_INBOX.1", None))
    assert [j.reply_to for j in ids.forget("a")] == ["_INBOX.1"]
    assert ids.admit("a") == (Seen.NEW, None)
    with pytest.raises(KeyError):
        ids.join("b", Joiner("_INBOX.1", None))
    with pytest.raises(ValueError):
        FrameIds(remember=-1)


def test_remember_zero_keeps_only_what_is_in_flight() -> None:
    ids: FrameIds[str] = FrameIds(remember=0)
    ids.admit("a")
    ids.finish("a", "final")
    assert "a" not in ids


NOW = 1_800_000_000.0


def _frame(**changes: object):  # type: ignore[no-untyped-def]
    frame = make_frames(1, cameras=1)[0][0]
    return replace(frame, **{"captured_at": NOW, **changes})  # type: ignore[arg-type]


def test_check_frame_accepts_a_frame_of_this_site_and_camera() -> None:
    frame = _frame()
    check_frame(frame, f"frames.site1.{frame.camera}", "site1", NOW + 1.0, 300.0)
    check_frame(frame, "infer.site1", "site1", NOW - 299.0, 300.0)


@pytest.mark.parametrize(
    ("changes", "subject", "now", "needle"),
    [
        ({"site": "site2"}, "frames.site1.cam0", NOW, "frame.site"),
        ({}, "frames.site1.other", NOW, "frame.camera"),
        ({"path": ("edge",)}, "frames.site1.cam0", NOW, "frame.path"),
        ({}, "frames.site1.cam0", NOW + 301.0, "captured_at"),
        ({}, "frames.site1.cam0", NOW - 301.0, "captured_at"),
        ({"captured_at": 1e308}, "frames.site1.cam0", NOW, "captured_at"),
        ({"captured_at": math.inf}, "frames.site1.cam0", NOW, "captured_at"),
    ],
)
def test_check_frame_refuses_with_the_field_named(
    changes: dict[str, object], subject: str, now: float, needle: str
) -> None:
    frame = _frame(**changes)
    subject = subject.replace("cam0", frame.camera) if "other" not in subject else subject
    with pytest.raises(SchemaError, match=needle):
        check_frame(frame, subject, "site1", now, 300.0)


def test_tags_verify_only_the_sites_own() -> None:
    tags = EscalationTags("site1", b"k" * 32)
    tag = tags.tag("frame-1")
    assert tags.verify("frame-1", tag)
    assert not tags.verify("frame-2", tag)
    assert not tags.verify("frame-1", None)
    assert not tags.verify("frame-1", "0" * len(tag))
    assert not EscalationTags("site2", b"k" * 32).verify("frame-1", tag)
    assert not EscalationTags("site1", b"j" * 32).verify("frame-1", tag)
    with pytest.raises(ValueError):
        EscalationTags("site1", b"short")
