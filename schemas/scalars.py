"""The rules for the numbers and times of each message, for readers and writers alike.

``SCALARS[type]`` reads every number and time of one message type from its wire map
and checks it: the range of ``seq``, ``priority`` and the confidences, every time a Unix
time in [0, MAX_UNIX_TIME], a frame due no later than 2100, an escalation due 0 to
MAX_DEADLINE_S after capture, and a result's ``detections`` and ``lines`` (small maps of
boxes, names and scores, cheap to check whole). The decoders build messages from what
it returns, and ``to_map`` runs it on every map it writes, so no writer can send what a
reader refuses for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.fields import Fields
from schemas.limits import MAX_DEADLINE_MS, MAX_DEADLINE_S, MAX_SEQ, MAX_UNIX_TIME
from schemas.messages import DeadLetter, Escalation, Frame, InferenceResult

__all__ = ["SCALARS"]


Step = str | Callable[[Fields, dict[str, Any]], None]


def _time(f: Fields, key: str) -> float:
    """A Unix time in seconds: finite and in [0, MAX_UNIX_TIME]."""
    return f.number(key, 0.0, MAX_UNIX_TIME)


def _share(f: Fields, key: str) -> float:
    """A confidence or threshold: in [0, 1]."""
    return f.number(key, 0.0, 1.0)


def _not_negative(f: Fields, key: str) -> float:
    return f.number(key, 0.0)


# The rule of each number and time, by field name, whichever message carries it.
_RULES: dict[str, Callable[[Fields, str], Any]] = {
    "seq": lambda f, key: f.integer(key, 0, MAX_SEQ),
    "priority": lambda f, key: f.integer(key, 1, 3),
    "deadline_ms": lambda f, key: f.integer(key, 1, MAX_DEADLINE_MS),
    "captured_at": _time,
    "deadline_at": _time,
    "threshold": lambda f, key: f.optional(key, lambda k: _share(f, k)),
    "confidence": _share,
    "edge_confidence": _share,
    "latency_ms": _not_negative,
    "at": _not_negative,
    "detections": lambda f, key: f.detections(key),
    "lines": lambda f, key: f.lines(key),
}


def _frame_due_by_2100(f: Fields, values: dict[str, Any]) -> None:
    # The same sum as Frame.deadline_at, so every accepted frame can be escalated.
    deadline_at = values["captured_at"] + values["deadline_ms"] / 1000.0
    if deadline_at > MAX_UNIX_TIME:
        raise f.fail(
            "deadline_ms",
            f"the deadline captured_at + deadline_ms / 1000 = {deadline_at} is after "
            f"{MAX_UNIX_TIME} (2100-01-01)",
        )


def _escalation_due_in_time(f: Fields, values: dict[str, Any]) -> None:
    captured_at, deadline_at = values["captured_at"], values["deadline_at"]
    # Written as comparisons of IEEE 754 doubles, not as a difference: a frame's
    # captured_at + deadline_ms / 1000 is never above captured_at + MAX_DEADLINE_S.
    if not captured_at <= deadline_at <= captured_at + MAX_DEADLINE_S:
        raise f.fail(
            "deadline_at",
            f"{deadline_at} is {deadline_at - captured_at:.3f} s after captured_at "
            f"{captured_at}; it must be 0 to {MAX_DEADLINE_S:g} s after",
        )


def _scalars(*steps: Step) -> Callable[[Fields], dict[str, Any]]:
    """Read the named fields by their rules and run the checks between them, in order.

    The order is the order errors are found in: a check between fields runs as soon as
    the fields it compares are read.
    """

    def read(f: Fields) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for step in steps:
            if isinstance(step, str):
                values[step] = _RULES[step](f, step)
            else:
                step(f, values)
        return values

    return read


# Each returns the checked values by field name.
SCALARS: dict[type[Any], Callable[[Fields], dict[str, Any]]] = {
    Frame: _scalars(
        "captured_at", "deadline_ms", _frame_due_by_2100, "seq", "priority", "threshold"
    ),
    InferenceResult: _scalars("seq", "confidence", "latency_ms", "detections", "lines"),
    Escalation: _scalars(
        "captured_at", "deadline_at", _escalation_due_in_time, "seq", "priority", "edge_confidence"
    ),
    DeadLetter: _scalars("at"),
}
