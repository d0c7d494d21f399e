"""Any declared model, run: ``DeclaredModel`` = file + preprocessing + session + decoder.

What a model is comes from its manifest entry (``ModelDeclaration``): its file is
read and checked against the entry's SHA-256, its session opened on the declared
execution providers, its labels resolved (inline, a file, or the ONNX metadata). ``run``
turns decoded images into one decoded answer each (``pipeline.inference.outputs``), in
batches of at most the input's ``max_batch``. Blocking and thread-safe: workers call
it from their pool.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.inference.calibration import confidence
from pipeline.inference.declaration import ModelDeclaration
from pipeline.inference.manifest import DEFAULT_MANIFEST, load_declaration
from pipeline.inference.outputs import Boxes, Classes, Decoded, Text
from pipeline.inference.preprocess import preprocess
from pipeline.inference.providers import session_for
from pipeline.inference.session import read_verified, tensor_name
from schemas.errors import ModelError

__all__ = ["DeclaredModel"]

_NUMPY_TYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}


class DeclaredModel:
    """One model as its manifest entry declares it. Create with :meth:`load`."""

    def __init__(
        self,
        declaration: ModelDeclaration,
        session: ort.InferenceSession,
        labels: tuple[str, ...],
        where: str,
    ) -> None:
        self.declaration = declaration
        self._session = session
        self.labels = labels
        self._where = where
        self._input = tensor_name(declaration.input.name, session.get_inputs())
        if self._input not in {i.name for i in session.get_inputs()}:
            names = [i.name for i in session.get_inputs()]
            raise ModelError(f"{where}: input.name {self._input!r} is not in the file: {names}")
        self._outputs = [o.name for o in session.get_outputs()]
        params = declaration.decoder.params
        if declaration.task == "text_recognize":
            # The CTC decoder reads characters; index ``blank`` is not one.
            params = replace(
                params, labels=tuple(c for i, c in enumerate(labels) if i != params.blank)
            )
        self._params = params
        self._expected = tuple(
            (re.compile(rule.looks_like), re.compile(rule.must_match))
            for rule in declaration.confidence.expect
        )

    @classmethod
    def load(cls, role: str, manifest: Path | None = None) -> DeclaredModel:
        """The model of ``role`` in ``manifest`` (default: the shipped one), verified."""
        path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
        declaration, where = load_declaration(role, path)
        data = read_verified(path.parent / declaration.file, declaration.sha256)
        session = session_for(data, declaration.runtime, where)
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        labels = declaration.resolve_labels(path.parent, metadata, where)
        return cls(declaration, session, labels, where)

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def version(self) -> str:
        return self.declaration.version

    @property
    def task(self) -> str:
        return self.declaration.task

    def label_name(self, index: int) -> str:
        """The name of class ``index`` ("text" for a text detector, which has none)."""
        if 0 <= index < len(self.labels):
            return self.labels[index]
        return "text" if self.task == "text_detect" else str(index)

    def run(self, images: Sequence[np.ndarray]) -> list[Decoded]:
        """One decoded answer per image (decoded pixels: H x W grey or RGB)."""
        spec = self.declaration.input
        order = list(range(len(images)))
        if spec.resize == "fit_height":
            # Text lines batched by width, as PaddleOCR does: each batch is padded to
            # its widest line, so similar widths waste the least.
            order.sort(key=lambda i: images[i].shape[1] / max(1, images[i].shape[0]))
        out: list[Decoded] = [None] * len(images)  # type: ignore[list-item]
        for start in range(0, len(order), spec.max_batch):
            indices = order[start : start + spec.max_batch]
            chunk = [images[i] for i in indices]
            tensor, geometries = preprocess(chunk, spec)
            tensor = tensor.astype(_NUMPY_TYPES[spec.dtype], copy=False)
            try:
                results = self._session.run(None, {self._input: tensor})
            except Exception as exc:  # onnxruntime raises its own pybind types
                raise ModelError(f"{self._where}: inference failed: {exc}") from exc
            outputs = dict(zip(self._outputs, results, strict=True))
            decoded = self.declaration.kind.decode(outputs, geometries, self._params)
            for i, answer in zip(indices, decoded, strict=True):
                out[i] = answer
        return out

    def confidence_of(self, answer: Decoded) -> float:
        """An answer's confidence by the declared signal, in [0, 1]."""
        signal = self.declaration.confidence.signal
        if isinstance(answer, Classes):
            p = answer.probabilities
            return float(confidence(p[None], signal)[0]) if p.size else 0.0
        if isinstance(answer, Text):
            chars = self.calibrated(answer.char_probabilities)
            if not chars.size:
                return 0.0
            sure = float(chars.min() if signal == "min_char" else chars.mean())
            text = "".join(answer.text.split())
            for looks_like, must_match in self._expected:
                if looks_like.search(text) and not must_match.fullmatch(text):
                    # Not what such a reading must be: unsure, however sure each character.
                    sure = min(sure, self.declaration.confidence.uncertain_band[0])
            return sure
        if isinstance(answer, Boxes):
            return float(self.calibrated(answer.scores).min()) if len(answer) else 1.0
        return 1.0

    def calibrated(self, p: np.ndarray) -> np.ndarray:
        """Scores or character probabilities with the declared ``confidence.temperature``
        applied, ``sigmoid(logit(p) / T)`` (``p`` itself without one)."""
        temperature = self.declaration.confidence.temperature
        if temperature is None or not p.size:
            return p
        q = np.clip(p.astype(np.float64), 1e-12, 1.0 - 1e-12)
        return 1.0 / (1.0 + np.exp(-np.log(q / (1.0 - q)) / temperature))

    def __repr__(self) -> str:
        return f"DeclaredModel({self.name!r}, version={self.version!r}, task={self.task!r})"
