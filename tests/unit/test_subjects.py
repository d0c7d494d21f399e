"""schemas.subjects: each builder gives its documented subject and refuses unsafe tokens."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from schemas import subjects
from schemas.errors import SchemaError
from schemas.subjects import check_token


def test_frames() -> None:
    assert subjects.frames("site1", "cam-1") == "frames.site1.cam-1"
    assert subjects.frames("site1") == "frames.site1.*"
    assert subjects.frames("site1", "*") == "frames.site1.*"


def test_results() -> None:
    assert subjects.results("site1", "cam_2") == "results.site1.cam_2"
    assert subjects.results("site1") == "results.site1.*"


def test_infer() -> None:
    assert subjects.infer("site1") == "infer.site1"


def test_escalations() -> None:
    assert subjects.escalations("site1", "cam-1") == "escalations.site1.cam-1"
    assert subjects.escalations("site1") == "escalations.site1.*"
    assert subjects.escalations() == "escalations.*.*"
    assert subjects.escalations("*", "cam-1") == "escalations.*.cam-1"


def test_replies() -> None:
    assert subjects.replies("site1", "edge-1") == "replies.site1.edge-1"


def test_dead_letters() -> None:
    assert subjects.dead_letters("cloud", "site1") == "dlq.cloud.site1"
    assert subjects.dead_letters("edge", "s-2") == "dlq.edge.s-2"


def test_edge_queue_group() -> None:
    assert subjects.edge_queue_group("site1") == "edge-site1"


def test_stream_and_consumer_names() -> None:
    assert subjects.ESCALATIONS_STREAM == "ESCALATIONS"
    assert subjects.REPLIES_STREAM == "REPLIES"
    assert subjects.CLOUD_DLQ_STREAM == "DLQ_CLOUD"
    assert subjects.CLOUD_CONSUMER == "cloud-workers"
    assert subjects.site_escalations_stream("s1") == "ESCALATIONS_s1"
    assert subjects.finals_stream("s1") == "FINALS_s1"
    assert subjects.site_dlq_stream("s1") == "DLQ_EDGE_s1"
    assert subjects.reply_consumer("s1", "edge-1") == "edge-s1-edge-1"
    assert subjects.sourcing("s1") == "sourcing.s1.escalations"


def test_finals_subject_is_one_token_per_frame_id() -> None:
    a = subjects.finals("site1", "site1-cam1-ab12-7")
    b = subjects.finals("site1", "site1-cam1-ab12-8")
    assert a.startswith("finals.site1.") and a.count(".") == 2
    assert a != b and a == subjects.finals("site1", "site1-cam1-ab12-7")
    # Characters a frame id may hold but a subject token may not are hashed away.
    assert subjects.finals("site1", "a.b:c/d").count(".") == 2


def test_replies_wildcards() -> None:
    assert subjects.replies() == "replies.*.*"
    assert subjects.replies("site1") == "replies.site1.*"


def test_every_token_character_class_is_accepted() -> None:
    token = "Az09_-" + "x" * 58
    assert len(token) == 64
    assert subjects.frames(token, token) == f"frames.{token}.{token}"
    assert check_token(token, "site") == token


BAD = [
    "a.b",
    ".",
    "site1.",
    "*",
    "a*",
    ">",
    "a>",
    "site 1",
    " site1",
    "site1\n",
    "\t",
    "",
    "x" * 65,
    "caf\u00e9",
    "a/b",
    "$SYS",
]

# (builder call with the bad token in one position, name the error uses for it)
POSITIONS: list[tuple[str, Callable[[str], str], str]] = [
    ("frames-site", lambda t: subjects.frames(t, "cam"), "site"),
    ("frames-camera", lambda t: subjects.frames("site1", t), "camera"),
    ("results-site", lambda t: subjects.results(t, "cam"), "site"),
    ("results-camera", lambda t: subjects.results("site1", t), "camera"),
    ("infer-site", lambda t: subjects.infer(t), "site"),
    ("escalations-site", lambda t: subjects.escalations(t, "cam"), "site"),
    ("escalations-camera", lambda t: subjects.escalations("site1", t), "camera"),
    ("replies-site", lambda t: subjects.replies(t, "w"), "site"),
    ("replies-worker", lambda t: subjects.replies("site1", t), "worker"),
    ("dlq-stage", lambda t: subjects.dead_letters(t, "site1"), "stage"),
    ("dlq-site", lambda t: subjects.dead_letters("cloud", t), "site"),
    ("queue-group-site", lambda t: subjects.edge_queue_group(t), "site"),
]


# Positions where '*' is the documented "all" wildcard rather than a name.
WILDCARD_OK = {
    "frames-camera",
    "results-camera",
    "escalations-site",
    "escalations-camera",
    "replies-site",
    "replies-worker",
}
CASES = [
    pytest.param(build, what, token, id=f"{name}-{token!r}")
    for name, build, what in POSITIONS
    for token in BAD
    if not (token == "*" and name in WILDCARD_OK)
]


@pytest.mark.parametrize(("build", "what", "token"), CASES)
def test_unsafe_tokens_refused(build: Callable[[str], str], what: str, token: str) -> None:
    message = f"{what}: {token!r} is not a valid name; use 1-64 letters, digits, '_' or '-'"
    with pytest.raises(SchemaError, match=re.escape(message)):
        build(token)


def test_wildcard_positions() -> None:
    built = {name: build("*") for name, build, _ in POSITIONS if name in WILDCARD_OK}
    assert built == {
        "frames-camera": "frames.site1.*",
        "results-camera": "results.site1.*",
        "escalations-site": "escalations.*.cam",
        "escalations-camera": "escalations.site1.*",
        "replies-site": "replies.*.w",
        "replies-worker": "replies.site1.*",
    }


@pytest.mark.parametrize(
    "build",
    [
        lambda: subjects.frames("*"),
        lambda: subjects.results("*"),
        lambda: subjects.infer("*"),
        lambda: subjects.replies("site1", ">"),
        lambda: subjects.dead_letters("*", "site1"),
        lambda: subjects.frames(">"),
        lambda: subjects.escalations(">"),
        lambda: subjects.escalations("site1", ">"),
    ],
)
def test_wildcards_only_where_documented(build: Callable[[], str]) -> None:
    # Only the camera of frames/results/escalations and the site of escalations and
    # both tokens of replies take '*'.
    with pytest.raises(SchemaError, match="is not a valid name"):
        build()


@pytest.mark.parametrize("value", [None, 5, b"site1", ["site1"]], ids=repr)
def test_non_strings_refused(value: object) -> None:
    with pytest.raises(SchemaError, match=re.escape(f"site: {value!r} is not a valid name")):
        subjects.infer(value)  # type: ignore[arg-type]
