"""Execution providers: which onnxruntime backends a model asks for, and its session.

A model's manifest entry says how it wants to run (``runtime``: :class:`Runtime`):
the execution providers in order of preference and the session's thread counts.
:func:`session_for` asks onnxruntime for those of them that this installation has
(``onnxruntime.get_available_providers()``), falls back to the CPU provider with a
WARNING naming what was asked and what runs instead, and logs at INFO the providers
the session really uses. :data:`PROVIDERS` lists the providers a manifest may name and
what each needs, so a typo is refused when the manifest is read, not at run time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Final

import onnxruntime as ort

from pipeline.declared import one_of, ranged
from schemas.errors import ConfigError, ModelError

__all__ = ["CPU", "PROVIDERS", "Runtime", "session_for", "with_threads"]

log = logging.getLogger(__name__)

CPU: Final = "CPUExecutionProvider"
# Every provider a manifest may name, with what it needs to be available.
PROVIDERS: Final = MappingProxyType(
    {
        CPU: "always available",
        "CUDAExecutionProvider": "an NVIDIA GPU and the onnxruntime-gpu package",
        "TensorrtExecutionProvider": "an NVIDIA GPU, TensorRT and onnxruntime-gpu",
        "OpenVINOExecutionProvider": "Intel CPU/GPU/NPU and the onnxruntime-openvino package",
        "CoreMLExecutionProvider": "macOS or iOS (Apple Neural Engine, GPU)",
        "DmlExecutionProvider": "Windows DirectML and the onnxruntime-directml package",
        "ROCMExecutionProvider": "an AMD GPU and onnxruntime built with ROCm",
        "MIGraphXExecutionProvider": "an AMD GPU and onnxruntime built with MIGraphX",
        "QNNExecutionProvider": "a Qualcomm NPU and onnxruntime-qnn",
        "XnnpackExecutionProvider": "onnxruntime built with XNNPACK (Arm and x86 CPUs)",
        "ACLExecutionProvider": "an Arm CPU and onnxruntime built with the Arm Compute Library",
    }
)
_MAX_THREADS: Final = 256


@dataclass(frozen=True, slots=True)
class Runtime:
    """How a model runs (the manifest entry's ``runtime`` table).

    ``providers``: onnxruntime execution providers in order of preference, from
    :data:`PROVIDERS`; those this installation lacks are skipped, and the CPU provider
    runs when none is left. ``intra_op_threads``: threads one operator may use;
    ``inter_op_threads``: operators run in parallel. Workers parallelise across
    requests themselves, so both default to 1 (predictable OS threads).
    """

    providers: tuple[str, ...] = one_of((CPU,), *PROVIDERS)
    intra_op_threads: int = ranged(1, lo=1, hi=_MAX_THREADS)
    inter_op_threads: int = ranged(1, lo=1, hi=_MAX_THREADS)


def with_threads(runtime: Runtime, intra_op_threads: int | None) -> Runtime:
    """``runtime`` with its intra-op threads replaced (a worker's setting), if given.

    ConfigError for anything but an integer >= 1.
    """
    if intra_op_threads is None:
        return runtime
    if isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, int):
        raise ConfigError(f"intra_op_threads must be an integer >= 1, got {intra_op_threads!r}")
    if not 1 <= intra_op_threads <= _MAX_THREADS:
        raise ConfigError(
            f"intra_op_threads must be in [1, {_MAX_THREADS}], got {intra_op_threads}"
        )
    return replace(runtime, intra_op_threads=intra_op_threads)


def _chosen(runtime: Runtime, where: str) -> list[str]:
    """The asked-for providers this installation has; CPU (with a warning) if none."""
    available = ort.get_available_providers()
    usable = [p for p in runtime.providers if p in available]
    missing = [p for p in runtime.providers if p not in available]
    if missing:
        needs = "; ".join(f"{p} needs {PROVIDERS.get(p, 'an unknown build')}" for p in missing)
        runs = usable or [CPU]
        log.warning(
            "%s: providers %s are not available here (available: %s): running on %s (%s)",
            where,
            missing,
            available,
            runs,
            needs,
        )
    return usable or [CPU]


def _options(runtime: Runtime) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = runtime.intra_op_threads
    options.inter_op_num_threads = runtime.inter_op_threads
    return options


def session_for(
    data_or_path: bytes | Path | str, runtime: Runtime, where: str
) -> ort.InferenceSession:
    """An onnxruntime session over the model (bytes already checked against their
    digest, or a file), on the providers of ``runtime`` that are available.

    ``where`` names the model in messages and logs. Raises :class:`ModelError` when
    onnxruntime cannot load the model.
    """
    providers = _chosen(runtime, where)
    source = str(data_or_path) if isinstance(data_or_path, Path) else data_or_path
    try:
        session = ort.InferenceSession(source, sess_options=_options(runtime), providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ModelError(f"{where}: onnxruntime cannot load it: {exc}") from exc
    in_use = session.get_providers()
    dropped = [p for p in providers if p not in in_use]
    if dropped:
        log.warning("%s: onnxruntime could not start %s: running on %s", where, dropped, in_use)
    log.info(
        "%s: running on %s (%d intra-op, %d inter-op threads)",
        where,
        in_use,
        runtime.intra_op_threads,
        runtime.inter_op_threads,
    )
    return session
