"""A model declared, not coded: ``ModelDeclaration``, one entry of ``models/manifest.json``.

An entry says everything a worker needs to run a model file: what the model does
(``task``), how its input is made (``input``, :class:`~pipeline.inference.preprocess.
InputSpec`), how its outputs become answers (``decoder``: a registered decoder and its
parameters, :data:`pipeline.inference.decoders.DECODERS`), its class names
(``labels``, :mod:`pipeline.inference.labels`), how its confidence is read
(``confidence``), and how it runs (``runtime``, :class:`~pipeline.inference.providers.
Runtime`). It is built by :func:`pipeline.declared.build`, so an unknown, missing or
wrong key is refused with its dotted path; :class:`ModelDeclaration` then checks that
the parts fit together (:data:`TASK_DECODERS`, :data:`CONFIDENCE_SIGNALS`).
docs/model-manifest.md describes the format with examples.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from pipeline.declared import Registry, Variant, checked, ranged, shorthand, variant
from pipeline.inference.calibration import SIGNALS as CLASSIFY_SIGNALS
from pipeline.inference.decoders import DECODERS, DecoderKind
from pipeline.inference.labels import Labels, resolve_labels
from pipeline.inference.preprocess import InputSpec
from pipeline.inference.providers import Runtime
from schemas.errors import ModelError

__all__ = [
    "CONFIDENCE_SIGNALS",
    "TASKS",
    "TASK_DECODERS",
    "Confidence",
    "Expectation",
    "InputFrom",
    "ModelDeclaration",
    "Task",
]

Task = Literal["classify", "detect", "text_detect", "text_recognize", "embed"]
TASKS: Final[tuple[Task, ...]] = ("classify", "detect", "text_detect", "text_recognize", "embed")
# The decoders that turn each task's outputs into its answers.
TASK_DECODERS: Final[Mapping[Task, tuple[str, ...]]] = MappingProxyType(
    {
        "classify": ("probabilities", "softmax", "sigmoid"),
        "detect": ("yolov8", "yolov5", "ssd"),
        "text_detect": ("db",),
        "text_recognize": ("ctc",),
        "embed": ("embedding",),
    }
)
# The confidence signals each task's answers give, the default first: a classifier's
# (pipeline/inference/calibration.py), a box's score, a line's lowest or mean character
# probability; an embedding has none.
CONFIDENCE_SIGNALS: Final[Mapping[Task, tuple[str, ...]]] = MappingProxyType(
    {
        "classify": tuple(CLASSIFY_SIGNALS),
        "detect": ("score",),
        "text_detect": ("score",),
        "text_recognize": ("min_char", "mean_char"),
        "embed": ("none",),
    }
)
# Tasks whose answers carry no class names.
_NO_LABELS: Final = ("text_detect", "embed")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _text(value: str) -> str | None:
    return None if value else "must be a non-empty string"


def _sha256(value: str) -> str | None:
    ok = _SHA256.fullmatch(value)
    return None if ok else f"must be a lowercase hex SHA-256 (64 characters), got {value!r}"


def _relative(value: str) -> str | None:
    path = Path(value)
    if value and not path.is_absolute() and ".." not in path.parts:
        return None
    return f"must be a file name relative to the manifest's folder, got {value!r}"


def _regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as exc:
        return f"must be a regular expression: {exc}"
    return None if value else "must be a non-empty regular expression"


def _decoder_params() -> Registry:
    return {name: kind.params for name, kind in DECODERS.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """What a text reader's reading must look like (an entry of ``confidence.expect``).

    A reading (spaces removed) in which ``looks_like`` is found must match
    ``must_match`` whole; one that does not is unsure whatever its characters'
    probabilities: its confidence is at most the band's low end, so it is asked about.
    A price-label reader says so for prices: a reading that looks like a price but is
    not ``$<digits>.<two digits>`` is one the small model misread, however sure of
    each character it was (docs/benchmarks.md, "Shelf labels").
    """

    looks_like: str = checked(_regex)
    must_match: str = checked(_regex)


@dataclass(frozen=True, slots=True)
class Confidence:
    """How a model's confidence is read (the entry's ``confidence`` table).

    ``signal``: one of :data:`CONFIDENCE_SIGNALS` for the model's task ("" chooses the
    task's default); escalation compares it with the threshold. ``uncertain_band``
    [low, high): a box or line with low <= confidence < high is one the tier is unsure
    of (pipeline/inference/chain.py). ``temperature`` (> 0, None for none) calibrates a
    score or character probability p as sigmoid(logit(p) / T), for decoders without a
    temperature of their own (a classifier's is ``decoder.temperature``). ``expect``
    (text readers only): what readings must look like (:class:`Expectation`).
    """

    signal: str = ""
    uncertain_band: tuple[float, float] = ranged((0.25, 0.6), lo=0.0, hi=1.0)
    temperature: float | None = ranged(None, lo=1e-3, hi=1e3)
    expect: tuple[Expectation, ...] = ()

    def __post_init__(self) -> None:
        low, high = self.uncertain_band
        if low > high:
            raise ModelError(
                f"uncertain_band must be [low, high] with low <= high, got {[low, high]}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class InputFrom:
    """The model whose output is this model's input (the entry's ``input_from``): its
    ``role`` in the manifest, its name, version and SHA-256 when this model was trained,
    and ``width``, the number of floats per row it gives."""

    role: str = checked(_text)
    name: str = checked(_text)
    version: str = checked(_text)
    sha256: str = checked(_sha256)
    width: int = ranged(lo=1, hi=1 << 20)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelDeclaration:
    """One model, declared (a ``models.<role>`` entry; see the module's docstring).

    ``file`` is relative to the manifest's folder and must have ``sha256``.
    ``heldout_accuracy``: the build's measurement on held-out data, if any.
    ``provenance``: free facts about how the file was made (training script, library
    versions, size, calibration figures), kept as written.
    """

    name: str = checked(_text)
    version: str = checked(_text)
    file: str = checked(_relative)
    sha256: str = checked(_sha256)
    task: Task
    input: InputSpec
    decoder: Variant = field(metadata=variant(_decoder_params))
    labels: Labels | None = field(default=None, metadata=shorthand("names"))
    confidence: Confidence = Confidence()
    runtime: Runtime = field(default_factory=Runtime)
    heldout_accuracy: float | None = ranged(None, lo=0.0, hi=1.0)
    input_from: InputFrom | None = None
    provenance: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        decoders = TASK_DECODERS[self.task]
        if self.decoder.type not in decoders:
            raise ModelError(
                f"decoder.type {self.decoder.type!r} does not fit task {self.task!r}; "
                f"{self.task} takes {', '.join(decoders)}"
            )
        signals = CONFIDENCE_SIGNALS[self.task]
        if self.confidence.signal not in ("", *signals):
            raise ModelError(
                f"confidence.signal {self.confidence.signal!r} does not fit task "
                f"{self.task!r}; {self.task} gives {', '.join(signals)}"
            )
        if self.confidence.expect and self.task != "text_recognize":
            raise ModelError(
                f"confidence.expect: only a text reader's readings have an expected form; "
                f"task {self.task!r} gives none"
            )
        if not self.confidence.signal:
            object.__setattr__(self, "confidence", replace(self.confidence, signal=signals[0]))
        own_temperature = getattr(self.decoder.params, "temperature", None) is not None
        if own_temperature and self.confidence.temperature is not None:
            raise ModelError(
                f"confidence.temperature: decoder {self.decoder.type!r} has a temperature "
                "of its own; set decoder.temperature instead"
            )
        if getattr(self.decoder.params, "labels", ()):
            raise ModelError("decoder.labels is filled from the entry's labels; declare labels")
        if self.labels is None and self.task not in _NO_LABELS:
            raise ModelError(f"labels: required for task {self.task!r}")
        if self.labels is not None and self.task == "embed":
            raise ModelError("labels: an embedding has no classes; remove the key")

    @property
    def kind(self) -> DecoderKind:
        """The registered decoder this model's outputs go through."""
        return DECODERS[self.decoder.type]

    def resolve_labels(
        self, folder: Path, metadata: Mapping[str, str], where: str
    ) -> tuple[str, ...]:
        """The label of each output column (() for a model without labels).

        ``folder``: the manifest's (or bundle's) folder; ``metadata``: the ONNX file's
        metadata properties. ModelError says what is wrong, prefixed by ``where``.
        """
        if self.labels is None:
            return ()
        blank = self.decoder.params.blank if self.task == "text_recognize" else None
        return resolve_labels(self.labels, folder, metadata, where, ctc_blank=blank)
