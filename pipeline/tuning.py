"""Choosing the edge's confidence threshold from a target: ``hybridfleet tune``.

A frame stays on the edge when its confidence >= threshold (``EscalationPolicy``) and
is escalated otherwise. Given per-frame confidences and whether the edge's and the
cloud's answers are right, each threshold is an operating point: the escalation share
(frames with confidence < threshold) and the hybrid accuracy (the edge's answer where
kept, the cloud's where escalated). :func:`sweep` lists every distinct point,
:func:`choose` picks one for a :class:`Target`, and :func:`area_under_curve` compares
confidence signals. All frames are assumed escalatable; priority-1 and ``local_only``
frames stay local in practice, which :func:`with_mix` accounts for.

The first part of the module is pure. The second gathers the data (out-of-fold
predictions on the training digits, never the simulator's held-out split), measures
message sizes with the real codec, and reads and writes the TOML config.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import tomllib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipeline.calibration import DEFAULT_SIGNAL, SETTING_NAME, SIGNALS, confidence
from pipeline.costs import CostModel, Mode
from schemas.errors import ConfigError, HybridfleetError
from schemas.messages import PrivacyClass

__all__ = [
    "MessageSizes",
    "OperatingPoint",
    "Target",
    "TargetKind",
    "TuneResult",
    "TuningData",
    "TuningError",
    "area_under_curve",
    "best_signal",
    "choose",
    "cross_validated_data",
    "dump_toml",
    "format_result",
    "measure_message_sizes",
    "sweep",
    "tune",
    "update_config",
    "with_mix",
]

BEST: Final = "best"


class TuningError(HybridfleetError):
    """The target cannot be met on the data, or the config cannot be written."""


# --- pure: operating points ------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold and what it gives on the data it was computed on."""

    threshold: float
    escalation_share: float
    accuracy: float
    escalated: int
    frames: int


def _nice_threshold(lo: float, hi: float) -> float:
    """A short decimal in (lo, hi], from the middle half of the interval if one fits.

    Any threshold in (lo, hi] separates the same frames; the middle keeps a margin to
    the confidences on either side, and few digits keep the config readable.
    """
    width = hi - lo
    a, b = lo + width / 4, hi - width / 4
    for digits in range(1, 16):
        scale = 10.0**digits
        candidate = math.ceil(a * scale) / scale
        if candidate <= b and lo < candidate <= hi:
            return candidate
    return lo + width / 2


def sweep(
    confidences: np.ndarray, edge_correct: np.ndarray, cloud_correct: np.ndarray
) -> tuple[OperatingPoint, ...]:
    """Every distinct operating point, from no escalation upwards.

    Point k escalates the frames whose confidence is among the k lowest distinct
    values. Its threshold is 0.0 for none, 1.0 for all (when no confidence is 1.0;
    a frame with confidence 1.0 can never escalate), and otherwise a short decimal
    between the k-th and (k+1)-th distinct confidences.
    """
    conf = np.asarray(confidences, dtype=np.float64)
    edge = np.asarray(edge_correct, dtype=bool)
    cloud = np.asarray(cloud_correct, dtype=bool)
    n = conf.shape[0]
    if conf.ndim != 1 or edge.shape != (n,) or cloud.shape != (n,) or n == 0:
        raise ValueError("confidences, edge_correct and cloud_correct must be equal 1-D, n > 0")
    if not (np.isfinite(conf).all() and conf.min() >= 0.0 and conf.max() <= 1.0):
        raise ValueError("confidences must be in [0, 1]")
    order = np.argsort(conf, kind="stable")
    values, counts = np.unique(conf[order], return_counts=True)
    cum_cloud = np.concatenate([[0], np.cumsum(cloud[order])])
    cum_edge = np.concatenate([[0], np.cumsum(edge[order])])
    total_edge = int(cum_edge[-1])
    escalated_at = np.concatenate([[0], np.cumsum(counts)])
    last = len(values) if values[-1] < 1.0 else len(values) - 1
    points = []
    for k in range(last + 1):
        m = int(escalated_at[k])
        if k == 0:
            threshold = 0.0
        elif k == len(values):
            threshold = 1.0
        else:
            threshold = _nice_threshold(float(values[k - 1]), float(values[k]))
        correct = int(cum_cloud[m]) + total_edge - int(cum_edge[m])
        points.append(OperatingPoint(threshold, m / n, correct / n, m, n))
    return tuple(points)


def area_under_curve(points: Sequence[OperatingPoint], up_to: float) -> float:
    """Mean hybrid accuracy over escalation shares 0..``up_to`` (linear between points).

    The area under the accuracy-vs-escalation curve divided by ``up_to``, so curves
    compare over the same range: pass the smallest largest share among them.
    """
    if not points:
        raise ValueError("no points")
    xs = np.array([p.escalation_share for p in points])
    ys = np.array([p.accuracy for p in points])
    if up_to <= 0.0:
        return float(ys[0])
    if up_to > xs[-1] + 1e-12:
        raise ValueError(f"the curve ends at share {xs[-1]:.4f}, before {up_to:.4f}")
    inside = xs < up_to
    grid = np.concatenate([xs[inside], [up_to]])
    values = np.interp(grid, xs, ys)
    area = float(np.sum((grid[1:] - grid[:-1]) * (values[1:] + values[:-1]) / 2))
    return area / up_to


def best_signal(areas: Mapping[str, float], frames: int) -> str:
    """The signal with the largest area; differences under one frame (1/frames) are ties.

    A tie goes to the signal listed first in ``SIGNALS``, so ``max_probability`` (what
    the edge worker computes today) stays unless another is better by more than one
    frame's worth of accuracy.
    """
    if not areas or frames < 1:
        raise ValueError("need areas and frames >= 1")
    top = max(areas.values())
    order = [name for name in SIGNALS if name in areas] + [n for n in areas if n not in SIGNALS]
    return next(name for name in order if areas[name] >= top - 1.0 / frames)


class TargetKind(StrEnum):
    """What the user asks for."""

    MIN_ACCURACY = "min_accuracy"
    MAX_ESCALATION = "max_escalation"
    MAX_COST = "max_cost_per_million"


@dataclass(frozen=True)
class Target:
    """One target: at least this accuracy, at most this share, or at most this cost."""

    kind: TargetKind
    value: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value < 0:
            raise ConfigError(f"--{self.flag} must be a finite number >= 0, got {self.value}")
        if self.kind is not TargetKind.MAX_COST and self.value > 1:
            raise ConfigError(f"--{self.flag} is a share in 0..1, got {self.value}")

    @property
    def flag(self) -> str:
        """The command-line option that sets this target."""
        return self.kind.value.replace("_", "-")

    def describe(self) -> str:
        """E.g. ``accuracy >= 98.50%``."""
        if self.kind is TargetKind.MIN_ACCURACY:
            return f"accuracy >= {100 * self.value:.2f}%"
        if self.kind is TargetKind.MAX_ESCALATION:
            return f"escalation share <= {100 * self.value:.2f}%"
        return f"cost <= ${self.value:.4g} per 1M frames"


def choose(
    points: Sequence[OperatingPoint],
    target: Target,
    cost: Callable[[float], float] | None = None,
) -> OperatingPoint:
    """The operating point that meets ``target``.

    * minimum accuracy: the smallest escalation share whose accuracy reaches it;
    * maximum escalation share, or maximum cost (``cost(share)`` in $ per 1M frames):
      the highest accuracy within the bound, and of equals the smallest share.

    TuningError when no point meets the target, saying what is reachable.
    """
    if not points:
        raise ValueError("no points")
    if target.kind is TargetKind.MIN_ACCURACY:
        meeting = [p for p in points if p.accuracy >= target.value - 1e-12]
        if not meeting:
            best = max(points, key=lambda p: (p.accuracy, -p.escalation_share))
            raise TuningError(
                f"no threshold reaches {target.describe()} on this data; the best is "
                f"{100 * best.accuracy:.2f}% at escalation share "
                f"{100 * best.escalation_share:.1f}%"
            )
        return min(meeting, key=lambda p: p.escalation_share)
    if target.kind is TargetKind.MAX_ESCALATION:
        within = [p for p in points if p.escalation_share <= target.value + 1e-12]
    else:
        if cost is None:
            raise ValueError("a cost target needs cost(share)")
        within = [p for p in points if cost(p.escalation_share) <= target.value]
        if not within:
            raise TuningError(
                f"even escalating nothing costs ${cost(0.0):.4g} per 1M frames (the edge "
                f"device and connectivity), above {target.describe()}"
            )
    # Share 0 is always a point, so `within` is empty only for a cost target (above).
    return max(within, key=lambda p: (p.accuracy, -p.escalation_share))


def with_mix(
    point: OperatingPoint, edge_accuracy: float, escalatable: float
) -> tuple[float, float]:
    """(escalation share, accuracy) when only ``escalatable`` of frames may escalate.

    The others (priority 1, ``local_only``) keep the edge's answer whatever their
    confidence; assumes the mix is independent of confidence.
    """
    share = escalatable * point.escalation_share
    accuracy = escalatable * point.accuracy + (1.0 - escalatable) * edge_accuracy
    return share, accuracy


# --- pure: a tiny TOML writer for the flat [section] key = value form -------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are all valid in a TOML basic string; DEL must be escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise TuningError(f"{where}: cannot write a {type(value).__name__} back to TOML")


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML text for top-level keys and one level of ``[section]`` tables."""
    lines: list[str] = []
    for key, value in data.items():
        if not isinstance(value, Mapping):
            lines.append(f"{_toml_key(key)} = {_toml_value(value, key)}")
    for name, table in data.items():
        if not isinstance(table, Mapping):
            continue
        if lines:
            lines.append("")
        lines.append(f"[{_toml_key(name)}]")
        for key, value in table.items():
            where = f"{name}.{key}"
            if isinstance(value, Mapping):
                raise TuningError(f"{where}: nested tables are not supported here")
            lines.append(f"{_toml_key(key)} = {_toml_value(value, where)}")
    return "\n".join(lines) + "\n"


# --- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuningData:
    """Per-frame answers to tune on: the truth, the edge's (calibrated) probabilities
    [n, classes] as the worker sees them, the cloud's labels, and where they come from."""

    truth: np.ndarray
    edge_proba: np.ndarray
    cloud_labels: np.ndarray
    source: str

    @property
    def edge_correct(self) -> np.ndarray:
        """Whether the edge's argmax is right, per frame."""
        correct: np.ndarray = self.edge_proba.argmax(axis=1) == self.truth
        return correct

    @property
    def cloud_correct(self) -> np.ndarray:
        """Whether the cloud's label is right, per frame."""
        correct: np.ndarray = self.cloud_labels == self.truth
        return correct

    def curve(self, signal: str) -> tuple[OperatingPoint, ...]:
        """The operating points of one confidence signal."""
        return sweep(confidence(self.edge_proba, signal), self.edge_correct, self.cloud_correct)


def cross_validated_data() -> TuningData:
    """Out-of-fold predictions of both models on the training digits (needs the models extra).

    The same stratified, seeded folds as the calibration in ``models/build.py``; the
    edge temperature from the shipped manifest is applied, as the worker applies it.
    Retrains 5 MLPs and 5 SVCs (seconds). The simulator's held-out split is not used.
    """
    try:
        import sklearn  # noqa: F401  (the training below imports it lazily)

        from models.build import (
            CALIBRATION_FOLDS,
            cross_validated_proba,
            train_cloud,
            train_edge,
        )
        from pipeline.digits import load_split
    except ImportError as exc:  # depends on the installed extras
        raise TuningError(
            f"tune needs the models extra (scikit-learn, skl2onnx): {exc}; "
            "install with pip install -e '.[models]'"
        ) from exc
    from pipeline.model import apply_temperature, load_spec

    split = load_split()
    with warnings.catch_warnings():
        # See models.build._ignore_svc_probability_deprecation.
        warnings.filterwarnings("ignore", r"The `probability` parameter", FutureWarning)
        warnings.filterwarnings("ignore", r"Attribute `prob[AB]_` was deprecated", FutureWarning)
        edge = cross_validated_proba(train_edge, split)
        cloud = cross_validated_proba(train_cloud, split)
    temperature = load_spec("edge").temperature
    return TuningData(
        truth=split.y_train,
        edge_proba=apply_temperature(edge.astype(np.float32), temperature),
        cloud_labels=cloud.argmax(axis=1),
        source=(
            f"{CALIBRATION_FOLDS}-fold cross-validated (out-of-fold) predictions of both "
            f"models on the {len(split.y_train)} training digits, edge temperature "
            f"{temperature} applied; not the simulator's held-out split"
        ),
    )


@dataclass(frozen=True)
class MessageSizes:
    """Encoded sizes in bytes of a simulator frame, its escalations and a cloud answer."""

    frame: int
    crop_escalation: int
    full_escalation: int
    reply: int

    def escalation(self, privacy: PrivacyClass | str) -> int:
        """Bytes one escalation sends under ``privacy`` (``crop`` or ``full``)."""
        kind = PrivacyClass(privacy)
        if kind is PrivacyClass.LOCAL_ONLY:
            raise ValueError("a local_only frame is never sent")
        return self.crop_escalation if kind is PrivacyClass.CROP else self.full_escalation


def measure_message_sizes(regions: int = 1) -> MessageSizes:
    """Encode one simulator frame, both escalations of it and a cloud answer; their sizes."""
    import time

    from pipeline.camera import CameraOptions, CameraSimulator
    from schemas.codec import encode
    from schemas.messages import Escalation, InferenceResult, Reason, Source

    frame, _ = CameraSimulator(CameraOptions(cameras=1, regions_per_frame=regions)).make_frame(
        "cam1", 0, time.time()
    )

    def escalation(full: bool) -> Escalation:
        send = PrivacyClass.FULL if full else PrivacyClass.CROP
        return Escalation.of_frame(frame, send, f"replies.{frame.site}.edge-1", (0,) * regions, 0.5)

    reply = InferenceResult(
        frame_id=frame.frame_id,
        site=frame.site,
        camera=frame.camera,
        seq=frame.seq,
        labels=(0,) * regions,
        scores=np.zeros((regions, 10), dtype=np.float32),
        confidence=0.5,
        source=Source.CLOUD,
        model="digits-svc",
        model_version="1.0.0",
        latency_ms=10.0,
        reason=Reason.CLOUD_ANSWER,
        edge_labels=(0,) * regions,
    )
    return MessageSizes(
        frame=len(encode(frame)),
        crop_escalation=len(encode(escalation(full=False))),
        full_escalation=len(encode(escalation(full=True))),
        reply=len(encode(reply)),
    )


# --- the command -----------------------------------------------------------------------


@dataclass(frozen=True)
class TuneResult:
    """Everything ``hybridfleet tune`` prints."""

    target: Target
    signal: str
    point: OperatingPoint
    source: str
    edge_accuracy: float
    cloud_accuracy: float
    areas: Mapping[str, float]
    area_up_to: float
    best_signal: str
    per_signal: Mapping[str, OperatingPoint | None]
    privacy: PrivacyClass
    sizes: MessageSizes
    costs: CostModel
    escalatable: float


def _simulator_escalatable() -> float:
    """Share of the simulator's frames that may escalate: not priority 1, not local_only."""
    from pipeline.camera import CameraOptions

    options = CameraOptions()
    return (1.0 - options.priority_mix[0]) * (1.0 - options.privacy_mix[0])


def tune(
    data: TuningData,
    target: Target,
    *,
    signal: str = DEFAULT_SIGNAL,
    privacy: PrivacyClass | str = PrivacyClass.CROP,
    sizes: MessageSizes,
    costs: CostModel | None = None,
    escalatable: float | None = None,
) -> TuneResult:
    """Compare the signals on ``data`` and pick the threshold of ``signal`` for ``target``.

    ``signal`` is a name from ``SIGNALS`` or ``"best"`` (see :func:`best_signal`).
    ``privacy`` (crop or full) decides the bytes of an escalation for a cost target.
    """
    if signal != BEST and signal not in SIGNALS:
        raise ConfigError(f"unknown signal {signal!r}; known: {', '.join([*SIGNALS, BEST])}")
    kind = PrivacyClass(privacy)
    costs = costs or CostModel()
    sent = sizes.escalation(kind)

    def cost(share: float) -> float:
        return costs.cost_per_million(Mode.HYBRID, share, sent, bytes_per_reply=sizes.reply).total

    curves = {name: data.curve(name) for name in SIGNALS}
    up_to = min(c[-1].escalation_share for c in curves.values())
    areas = {name: area_under_curve(c, up_to) for name, c in curves.items()}
    best = best_signal(areas, frames=len(data.truth))
    per_signal: dict[str, OperatingPoint | None] = {}
    for name, c in curves.items():
        try:
            per_signal[name] = choose(c, target, cost)
        except TuningError:
            per_signal[name] = None
    chosen = best if signal == BEST else signal
    point = choose(curves[chosen], target, cost)  # raises with the reachable best
    return TuneResult(
        target=target,
        signal=chosen,
        point=point,
        source=data.source,
        edge_accuracy=float(data.edge_correct.mean()),
        cloud_accuracy=float(data.cloud_correct.mean()),
        areas=areas,
        area_up_to=up_to,
        best_signal=best,
        per_signal=per_signal,
        privacy=kind,
        sizes=sizes,
        costs=costs,
        escalatable=_simulator_escalatable() if escalatable is None else escalatable,
    )


def _pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}%"


def format_result(r: TuneResult) -> str:
    """The report ``hybridfleet tune`` prints."""
    p, s, c = r.point, r.sizes, r.costs
    lines = [
        f"data            {r.source}",
        f"                edge-only {_pct(r.edge_accuracy)}, cloud-only {_pct(r.cloud_accuracy)}"
        f" on these {p.frames} frames",
        f"target          {r.target.describe()}",
        "",
        f"signal            area*     threshold  escalated  accuracy   (* mean accuracy over "
        f"escalation 0..{_pct(r.area_up_to, 1)})",
    ]
    for name in SIGNALS:
        q = r.per_signal[name]
        at = (
            f"{q.threshold!r:<10} {_pct(q.escalation_share, 1):>9}  {_pct(q.accuracy):>8}"
            if q is not None
            else "target not reachable"
        )
        lines.append(f"{name:<17} {_pct(r.areas[name], 3):>8}  {at}")
    lines.append(
        f"best signal     {r.best_signal} (largest area under accuracy vs escalation; "
        f"differences under one frame, {_pct(1 / p.frames, 3)}, count as ties)"
    )
    share_mix, accuracy_mix = with_mix(p, r.edge_accuracy, r.escalatable)

    def hybrid(kind: PrivacyClass) -> float:
        return c.cost_per_million(
            Mode.HYBRID, p.escalation_share, s.escalation(kind), bytes_per_reply=s.reply
        ).total

    def cloud_only(kind: PrivacyClass) -> float:
        return c.cost_per_million(
            Mode.CLOUD_ONLY, bytes_per_frame=s.escalation(kind), bytes_per_reply=s.reply
        ).total

    crop, full = PrivacyClass.CROP, PrivacyClass.FULL
    lines += [
        "",
        f"chosen          {r.signal} >= {p.threshold!r} stays on the edge",
        f"  accuracy      {_pct(p.accuracy)} expected (edge-only {_pct(r.edge_accuracy)}, "
        f"cloud-only {_pct(r.cloud_accuracy)})",
        f"  escalated     {_pct(p.escalation_share, 1)} of frames ({p.escalated} of {p.frames}),"
        " if every frame may escalate",
        f"                priority-1 and local_only frames stay local: with the simulator's "
        f"mix ({_pct(r.escalatable, 0)} may escalate)",
        f"                {_pct(share_mix, 1)} escalated, accuracy {_pct(accuracy_mix)}",
        f"  to the cloud  crop {p.escalation_share * s.crop_escalation:,.0f} B/frame, full "
        f"{p.escalation_share * s.full_escalation:,.0f} B/frame (an escalation is "
        f"{s.crop_escalation:,} B with crops, {s.full_escalation:,} B with the frame; "
        f"a pure-cloud fleet sends one per frame)",
        f"  cloud work    {p.escalation_share:.3f} inferences per frame (pure cloud: 1)",
        f"  cost per 1M   hybrid ${hybrid(crop):.2f} crop, ${hybrid(full):.2f} full; "
        f"edge-only ${c.cost_per_million(Mode.EDGE_ONLY).total:.2f}; "
        f"cloud-only ${cloud_only(crop):.2f} crop, ${cloud_only(full):.2f} full",
        f"                (GPU ${c.gpu_hour}/h at {c.cloud_images_per_s:,.0f} images/s, "
        f"${c.egress_per_gb}/GB, docs/cost-model.md; a cost target uses {r.privacy.value})",
    ]
    return "\n".join(lines)


def _edit_section(text: str, section: str, updates: Mapping[str, Any]) -> str:
    """``text`` with ``key = value`` lines of ``[section]`` set, the rest left as it is.

    Replaces a key's line where it is, inserts missing keys after the section's header,
    and appends the section if the file has none. Only for plain ``[section]`` tables;
    the caller checks the result by parsing it.
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    header = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\]\s*(#.*)?$")
    any_header = re.compile(r"^\s*\[")
    starts = [i for i, line in enumerate(lines) if header.match(line)]
    rendered = {key: f"{_toml_key(key)} = {_toml_value(v, key)}\n" for key, v in updates.items()}
    if len(starts) != 1:
        block = "".join(rendered.values())
        return "".join(lines) + ("\n" if lines else "") + f"[{_toml_key(section)}]\n{block}"
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if any_header.match(lines[i])), len(lines))
    missing = dict(rendered)
    for i in range(start + 1, end):
        for key in list(missing):
            if re.match(rf"^\s*{re.escape(_toml_key(key))}\s*=", lines[i]):
                lines[i] = missing.pop(key)
    lines[start + 1 : start + 1] = list(missing.values())
    return "".join(lines)


def update_config(path: Path | str, threshold: float, signal: str) -> list[str]:
    """Set ``[edge] default_threshold`` and ``[edge] confidence_signal``.

    Other sections, keys, comments and layout are kept: the key's line is replaced in
    place (or added under ``[edge]``). If that edit does not parse back to the same
    settings (an unusual layout such as dotted keys), the file is rewritten from its
    parsed content with :func:`dump_toml`, which keeps every setting but not comments.
    The result must load with ``pipeline.config.load_settings`` before it replaces the
    file. Returns what was written.
    """
    from pipeline.config import load_settings

    target = Path(path)
    edge_updates: dict[str, Any] = {"default_threshold": float(threshold), SETTING_NAME: signal}
    original = ""
    if target.exists():
        try:
            original = target.read_text(encoding="utf-8")
            data = tomllib.loads(original)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise TuningError(f"cannot read {target}: {exc}") from exc
    else:
        data = {}
    edge = data.get("edge", {})
    if not isinstance(edge, dict):
        raise TuningError(f"{target}: edge is not a [edge] table")
    wanted = {**data, "edge": {**edge, **edge_updates}}
    text = _edit_section(original, "edge", edge_updates)
    try:
        kept = tomllib.loads(text) == wanted
    except tomllib.TOMLDecodeError:
        kept = False
    written = [f"[edge] {key} = {_toml_value(value, key)}" for key, value in edge_updates.items()]
    if not kept:
        text = dump_toml(wanted)
        if "#" in original:
            written.append("(the file was rewritten from its settings: comments were not kept)")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        load_settings(tmp, env={})  # refuse to leave a config the workers would refuse
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written
