"""CTC text recognition heads ``[B, T, C]`` -> one ``Text`` per image. Pure.

Greedy decoding: the best class at each step; runs of the same class collapse to one
character; the blank class (``blank``) emits nothing. A character's probability is
the highest of its run's steps. Steps are probabilities (PaddleOCR's rec models end
in a softmax), or logits with ``logits`` set. NaN or infinity raises ModelError.

Labels: ``labels`` holds the characters of the non-blank classes in class order, so
``C == len(labels) + 1``. It is filled by the model loader from the model's own
character list (``dataclasses.replace(params, labels=...)``), not written in the
manifest's decoder table. For PaddleOCR (blank 0) that list is its dictionary file's
lines, then " " when the model was trained with ``use_space_char``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pipeline.declared import ranged
from pipeline.inference.decoders import register
from pipeline.inference.decoders._common import (
    Params,
    batch_of,
    fail,
    pick_output,
    require_finite,
)
from pipeline.inference.geometry import Geometry
from pipeline.inference.outputs import Decoded, Text

__all__ = ["CtcParams", "decode_ctc"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CtcParams(Params):
    """``output``: the tensor, "" for the first; ``blank``: the blank class's index;
    ``logits``: steps are logits (softmax them); ``labels``: the non-blank classes'
    characters, in order (filled by the loader from the model's labels)."""

    decoder: ClassVar[str] = "ctc"
    output: str = ""
    blank: int = ranged(0, lo=0)
    logits: bool = False
    labels: tuple[str, ...] = ()


def _read(steps: np.ndarray, characters: np.ndarray, blank: int) -> Text:
    """One line's probabilities [T, C] -> its ``Text``."""
    best = np.argmax(steps, axis=1)
    prob = steps[np.arange(len(best)), best]
    # argmax picks a NaN or +infinity wherever a step holds one: checking the picked
    # values checks the line, at a fraction of the cost of checking every class.
    require_finite("ctc", prob)
    starts = np.flatnonzero(np.r_[True, best[1:] != best[:-1]]) if len(best) else best[:0]
    run_class = best[starts]
    run_prob = np.maximum.reduceat(prob, starts) if len(starts) else prob[:0]
    emit = run_class != blank
    chars = characters[run_class[emit] - (run_class[emit] > blank)]
    return Text("".join(chars.tolist()), run_prob[emit].astype(np.float32))


@register("ctc", CtcParams)
def decode_ctc(
    outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], params: CtcParams
) -> list[Decoded]:
    """``[B, T, C]`` -> one ``Text`` per image (see the module's docstring)."""
    head = pick_output("ctc", outputs, params.output, "decoder.output")
    batch_of("ctc", head, geometries, "[batch, steps, classes]", (0, 2))
    classes = head.shape[2]
    if classes != len(params.labels) + 1:
        fail(
            "ctc",
            f"the model has {classes} classes but labels give {len(params.labels)} "
            "characters + the blank: check the model's character list (and use_space_char)",
        )
    if params.blank >= classes:
        fail("ctc", f"blank is {params.blank} but the model has {classes} classes")
    steps = head.astype(np.float32, copy=False)
    if params.logits:
        require_finite("ctc", steps)
        z = np.exp(steps - steps.max(axis=2, keepdims=True))
        steps = z / z.sum(axis=2, keepdims=True)
    characters = np.array(params.labels, dtype=object)
    return [_read(s, characters, params.blank) for s in steps]
