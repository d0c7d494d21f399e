"""Execution providers: what a model asks for, what runs, and what the log says."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort
import pytest

from pipeline.inference.model import OnnxModel
from pipeline.inference.providers import CPU, PROVIDERS, Runtime, session_for, with_threads
from schemas.errors import ConfigError, ModelError

EDGE_FILE = Path(__file__).resolve().parents[2] / "models" / "edge-mlp32.onnx"


def test_available_providers_are_known() -> None:
    assert CPU in PROVIDERS
    assert set(ort.get_available_providers()) - {"AzureExecutionProvider"} <= set(PROVIDERS)


def test_cpu_runs_with_the_declared_threads(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.inference.providers")
    runtime = Runtime(intra_op_threads=2, inter_op_threads=3)
    session = session_for(EDGE_FILE.read_bytes(), runtime, "edge-mlp32.onnx")
    assert session.get_providers() == [CPU]
    options = session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 3)
    assert (
        "edge-mlp32.onnx: running on ['CPUExecutionProvider'] (2 intra-op, 3 inter-op"
        in caplog.text
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_missing_provider_falls_back_to_cpu_with_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    caplog.set_level(logging.INFO, logger="pipeline.inference.providers")
    asked = Runtime(providers=("TensorrtExecutionProvider", "CUDAExecutionProvider"))
    session = session_for(EDGE_FILE, asked, "edge")
    assert session.get_providers() == [CPU]
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = warning.getMessage()
    assert "['TensorrtExecutionProvider', 'CUDAExecutionProvider'] are not available" in text
    assert "running on ['CPUExecutionProvider']" in text and "onnxruntime-gpu" in text


def test_available_ones_are_kept_in_order(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    session = session_for(EDGE_FILE, Runtime(providers=("CUDAExecutionProvider", CPU)), "edge")
    assert session.get_providers() == [CPU]
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "['CUDAExecutionProvider'] are not available" in warning.getMessage()


def test_unloadable_bytes() -> None:
    with pytest.raises(ModelError, match=r"x\.onnx: onnxruntime cannot load it"):
        session_for(b"not onnx", Runtime(), "x.onnx")


def test_a_workers_thread_setting_replaces_the_declared_one() -> None:
    assert with_threads(Runtime(), None) == Runtime()
    assert with_threads(Runtime(), 4).intra_op_threads == 4
    for bad in (0, 257, True, 1.5):
        with pytest.raises(ConfigError, match="intra_op_threads must be"):
            with_threads(Runtime(), bad)  # type: ignore[arg-type]
    model = OnnxModel.load("edge", intra_op_threads=3)
    assert model._session.get_session_options().intra_op_num_threads == 3
