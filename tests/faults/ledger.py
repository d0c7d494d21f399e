"""What the fault tests saw cross NATS, keyed by frame id, and the promise they check.

A ``Ledger`` counts frames published, escalations stored, cloud answers and final
results, so that each test can count published against answered, lost and duplicated.
``check_promise`` asserts what every fault test promises: no frame without its final
result, none with two, and every escalation named answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from nats.aio.msg import Msg

from schemas.codec import decode_escalation, decode_result
from schemas.messages import InferenceResult


@dataclass
class Ledger:
    """Everything seen on the wire, keyed by frame id."""

    published: dict[str, int] = field(default_factory=dict)  # frame id -> priority
    escalated: set[str] = field(default_factory=set)
    answered: Counter[str] = field(default_factory=Counter)
    finals: Counter[str] = field(default_factory=Counter)
    final_results: dict[str, InferenceResult] = field(default_factory=dict)

    async def on_escalation(self, msg: Msg) -> None:
        self.escalated.add(decode_escalation(msg.data).frame_id)

    async def on_answer(self, msg: Msg) -> None:
        self.answered[decode_result(msg.data).frame_id] += 1

    async def on_final(self, msg: Msg) -> None:
        result = decode_result(msg.data)
        self.finals[result.frame_id] += 1
        self.final_results.setdefault(result.frame_id, result)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.finals.values() if n > 1)

    def lost(self, frame_ids: set[str]) -> set[str]:
        return {f for f in frame_ids if self.finals[f] == 0}

    def unanswered(self, frame_ids: Iterable[str]) -> set[str]:
        """The frames of ``frame_ids`` whose escalation no cloud answer reached."""
        return {f for f in frame_ids if self.answered[f] == 0}

    def check_promise(self, frame_ids: set[str], answered: Iterable[str] = ()) -> None:
        """Every frame has exactly one final result, and every escalation of
        ``answered`` its cloud answer."""
        assert self.lost(frame_ids) == set()
        assert self.duplicates() == 0
        assert self.unanswered(answered) == set()

    def counts(self, frame_ids: set[str]) -> str:
        """``published=N finals=N lost=N duplicates=N``, for a test's printed summary."""
        lost = len(self.lost(frame_ids))
        return (
            f"published={len(frame_ids)} finals={len(frame_ids) - lost} lost={lost} "
            f"duplicates={self.duplicates()}"
        )

    def report(self, test: str, frame_ids: set[str]) -> str:
        """One line of counts for docs/reliability.md (printed with ``pytest -s``)."""
        escalated = self.escalated & frame_ids
        finals = [self.final_results[f] for f in frame_ids if f in self.final_results]
        line = (
            f"FAULT {test}: published {len(frame_ids)}, final results {len(finals)}, "
            f"lost {len(self.lost(frame_ids))}, duplicates {self.duplicates()}, "
            f"escalated {len(escalated)}, answered {sum(1 for f in escalated if self.answered[f])}"
            f", degraded {sum(r.degraded for r in finals)}, "
            f"shed {sum(r.reason.value == 'shed' for r in finals)}"
        )
        print(line)
        return line

    def reasons(self) -> Counter[str]:
        return Counter(r.reason.value for r in self.final_results.values())
