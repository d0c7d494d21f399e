"""What a decoder makes of one image's model outputs. Pure data.

One type per kind of answer; ``pipeline.inference.decoders`` produce them, the
workers turn them into the wire's ``Detection`` and ``TextLine`` (schemas.messages).
Boxes are in the source image's pixels (letterbox undone), x1, y1, x2, y2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Boxes", "Classes", "Decoded", "Embedding", "Text"]


@dataclass(frozen=True, slots=True, eq=False)
class Classes:
    """A classifier's answer: probabilities over the labels, float32 [C]; they sum to 1
    except for a multi-label (``sigmoid``) classifier, whose are independent."""

    probabilities: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class Boxes:
    """What a detector found in one image: best score first (a text detector: reading
    order, top to bottom, then left to right).

    ``xyxy`` float32 [K, 4] in source pixels; ``scores`` float32 [K] in [0, 1];
    ``classes`` int64 [K], indexes into the model's labels (0 for a one-class model
    such as a text detector); ``polygons`` float32 [K, P, 2] where the detector gives
    quadrilaterals (text), else None.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    polygons: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])


@dataclass(frozen=True, slots=True, eq=False)
class Text:
    """A text reader's answer for one line: the text and each character's probability
    (float32 [len(text)]; empty text has an empty array)."""

    text: str
    char_probabilities: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class Embedding:
    """An embedding model's answer: one float32 vector [D]."""

    vector: np.ndarray


Decoded = Classes | Boxes | Text | Embedding
