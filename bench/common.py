"""What the benchmarks share: the machine they ran on, the compute-shaped model, output.

* ``machine_info`` (a dict for the JSON figures) and ``machine_line`` (one line for
  a report) describe the machine;
* ``build_compute_model`` writes the compute-shaped MLP that ``bench.edge_throughput``
  and ``bench.batching`` measure (``compute-mlp-4096x1024x1024x10-random``, random
  weights, about 11 MFLOP an image), ``flops_per_image`` counts its work;
* ``echo`` prints a line at once (a long run shows its progress as it goes),
  ``begin_run`` readies a benchmark's process and prints its header,
  ``echo_header`` a run's title, command line and machine, ``save_figure`` a plot,
  ``write_figures`` a run's figures as JSON;
* ``timed_run`` runs a benchmark's coroutine in a temporary folder, with the load
  average before and after (``RunTime``);
* ``number_list`` and ``choice_list`` read the comma-separated options.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import itertools
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy as np
import onnxruntime as ort
import uvloop

from pipeline.inference.digits import MAX_VALUE, N_FEATURES, load_split
from pipeline.messaging.server import find_nats_server

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "begin_run",
    "COMPUTE_MODEL_NAME",
    "COMPUTE_WIDTHS",
    "build_compute_model",
    "choice_list",
    "cpu_model",
    "echo",
    "echo_header",
    "flops_per_image",
    "machine_info",
    "machine_line",
    "number_list",
    "proc_cpu_seconds",
    "RunTime",
    "save_figure",
    "timed_run",
    "write_figures",
    "write_into_doc",
]

N = TypeVar("N", int, float)
T = TypeVar("T")

COMPUTE_MODEL_NAME: Final = "compute-mlp-4096x1024x1024x10-random"
COMPUTE_WIDTHS: Final = (N_FEATURES, 4096, 1024, 1024, 10)


def echo(text: str = "") -> None:
    """Print ``text`` and flush."""
    print(text, flush=True)


def echo_header(
    title: str, module: str, argv: Sequence[str] | None, machine: Mapping[str, Any]
) -> str:
    """Print a run's title, its command line and the machine; the command line."""
    args = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python", "-m", module, *args])
    echo(title)
    echo(f"command: {command}")
    for key, value in machine.items():
        echo(f"  {key}: {value}")
    return command


def begin_run(title: str, module: str, argv: Sequence[str] | None) -> tuple[dict[str, Any], str]:
    """Ready a benchmark's process and print its header (``echo_header``); the machine
    (``machine_info``) and the command line.

    SIGTERM stops the run as Ctrl-C does (KeyboardInterrupt), so the finally blocks stop
    what the run started (child processes, the nats-server) by their pids; warnings
    and errors are logged.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    machine = machine_info()
    return machine, echo_header(title, module, argv, machine)


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> None:
    """Lay out ``fig``, write it to ``path`` (making its folder) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def write_figures(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``path`` (making its folder) as indented JSON, NaN and
    infinities as null and numpy scalars as numbers, and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(document), indent=2, default=_json_default, allow_nan=False)
    path.write_text(text + "\n")
    echo(f"figures written to {path}")


def write_into_doc(path: Path, key: str, text: str) -> None:
    """Replace what lies between ``<!-- key -->`` and ``<!-- /key -->`` in the
    markdown file ``path`` with ``text``; a ``ValueError`` if the markers are missing."""
    begin, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    doc = path.read_text(encoding="utf-8")
    start, stop = doc.find(begin), doc.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"{path} has no {begin} ... {end} block to write into")
    path.write_text(doc[: start + len(begin)] + "\n" + text.strip() + "\n" + doc[stop:])


def _finite(value: Any) -> Any:
    """The same structure with NaN and infinities as None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


@dataclass(frozen=True)
class RunTime:
    """How long a run took, and the machine's load average (1/5/15 min) around it."""

    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    def line(self) -> str:
        """The run time and the load average after, for the end of a report."""
        return f"total run time {self.seconds:.0f} s; load average after: " + " ".join(
            f"{x:.2f}" for x in self.load_after
        )


def timed_run(
    body: Callable[[Path], Coroutine[Any, Any, T]], prefix: str, note: str
) -> tuple[T, RunTime] | None:
    """Print the load average (and ``note``), then run ``body(folder)`` under uvloop
    in a temporary folder named ``prefix...``; its result and the run's time, or None
    (said on stderr) if it was interrupted (Ctrl-C; SIGTERM where the caller made it
    raise KeyboardInterrupt), after its finally blocks ran."""
    load_before = os.getloadavg()
    echo("load average before (1/5/15 min): " + " ".join(f"{x:.2f}" for x in load_before) + note)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            result = uvloop.run(body(Path(tmp)))
    except KeyboardInterrupt:
        print("interrupted: no figures", file=sys.stderr)
        return None
    total = time.monotonic() - started
    return result, RunTime(total, load_before, os.getloadavg())


# ---------------------------------------------------------------- command lines


def number_list(
    parser: argparse.ArgumentParser,
    option: str,
    text: str,
    kind: Callable[[str], N],
    bounds: tuple[N, N],
) -> tuple[N, ...]:
    """The comma-separated numbers of ``option``, each within ``bounds``; else a usage error."""
    what = "integers" if kind is int else "numbers"
    try:
        values = tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        parser.error(f"{option}: not a list of {what}: {text!r}")
    low, high = bounds
    if not values or any(not low <= v <= high for v in values):
        parser.error(f"{option}: each must be in {low:g}..{high:g}")
    return values


def choice_list(
    parser: argparse.ArgumentParser, option: str, text: str, allowed: Sequence[str]
) -> tuple[str, ...]:
    """The comma-separated names of ``option``, each one of ``allowed``; else a usage error."""
    values = tuple(x.strip() for x in text.split(",") if x.strip())
    if not values or any(v not in allowed for v in values):
        parser.error(f"{option}: choose from {', '.join(allowed)}")
    return values


# ---------------------------------------------------------------- the machine


def cpu_model(unknown: str) -> str:
    """The CPU's model name from /proc/cpuinfo, else ``platform.processor()``, else
    ``unknown``."""
    cpu = platform.processor() or unknown
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu


def machine_line() -> str:
    """One line naming the machine, for the figures."""
    return (
        f"{cpu_model('unknown CPU')}, {len(os.sched_getaffinity(0))} usable cores, Python "
        f"{platform.python_version()}, onnxruntime {ort.__version__}"
    )


def proc_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (from /proc), NaN if unreadable."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory and the versions that decide the figures."""
    cpu = cpu_model("unknown")
    mem_gib: float | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / (1 << 20), 1)
                break
    except OSError:
        pass
    cpu_quota: str | None = None
    with contextlib.suppress(OSError):
        cpu_quota = Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    try:
        server = subprocess.run(
            [str(find_nats_server()), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except Exception as exc:
        server = f"unknown ({exc})"

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cgroup_cpu_max": cpu_quota,
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "nats-py": version("nats-py"),
        "nats-server": server.removeprefix("nats-server: "),
        "uvloop": version("uvloop"),
        "msgpack": version("msgpack"),
    }


# ---------------------------------------------------------------- the compute-shaped model


def build_compute_model(folder: Path, seed: int = 0) -> Path:
    """Write an MLP 64 -> 4096 -> 1024 -> 1024 -> 10 (random weights) and its manifest.

    MatMul + Add + Relu per hidden layer, Softmax at the end; input ``input`` float32
    [N, 64], output ``probabilities`` float32 [N, 10]. Returns the manifest path, which
    ``OnnxModel.load("edge", manifest=...)`` accepts (SHA-256 checked as for any model).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pipeline.inference.manifest import MANIFEST_SCHEMA

    rng = np.random.default_rng(seed)
    nodes: list[Any] = []
    weights: list[Any] = []
    previous = "input"
    layers = list(itertools.pairwise(COMPUTE_WIDTHS))
    for i, (fan_in, fan_out) in enumerate(layers):
        scale = 1.0 / math.sqrt(fan_in) / (MAX_VALUE if i == 0 else 1.0)
        w = (rng.standard_normal((fan_in, fan_out)) * scale).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"]))
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"h{i}"]))
            previous = f"h{i}"
        else:
            previous = f"z{i}"
    nodes.append(helper.make_node("Softmax", [previous], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        COMPUTE_MODEL_NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=weights,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hybridfleet-bench"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    path = folder / f"{COMPUTE_MODEL_NAME}.onnx"
    path.write_bytes(data)

    # Its held-out accuracy, so the manifest entry is honest (about chance: random weights).
    split = load_split()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (proba,) = session.run(["probabilities"], {"input": split.x_heldout})
    accuracy = float((np.asarray(proba).argmax(axis=1) == split.y_heldout).mean())

    entry = {
        "name": COMPUTE_MODEL_NAME,
        "version": "0.0.0",
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "task": "classify",
        "input": {"name": "input", "preprocess": "digits8x8"},
        "decoder": {"type": "probabilities", "output": "probabilities"},
        "labels": [str(label) for label in range(10)],
        "heldout_accuracy": round(accuracy, 4),
        "provenance": {
            "size_bytes": len(data),
            "heldout_size": len(split.y_heldout),
            "script": "bench/common.py",
            "note": f"random weights (seed {seed}), for timing only",
        },
    }
    manifest = folder / "manifest.json"
    document = {"schema": MANIFEST_SCHEMA, "models": {"edge": entry}}
    manifest.write_text(json.dumps(document, indent=2) + "\n")
    return manifest


def flops_per_image(widths: Sequence[int]) -> int:
    """Multiply-adds x 2 of a dense MLP with these layer widths."""
    return sum(2 * a * b for a, b in itertools.pairwise(widths))
