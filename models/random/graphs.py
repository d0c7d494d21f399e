"""Random-weight ONNX graphs in the layouts common trainers export. Named so.

They have real shapes and real work but no skill: they exist to show that a model
from Ultralytics or torchvision runs with only a manifest entry, and for throughput
benchmarks. Seeded, built with ``onnx.helper``; ``python -m models.random.build``
writes them and their manifest.

* ``yolo_random``: ``images [N, 3, S, S]`` -> ``output0 [N, 4 + classes, A]``, the
  Ultralytics v8 layout (centre x, centre y, width, height in input pixels, then
  per-class sigmoid scores; no objectness, no NMS). One anchor per cell of an
  ``S/32`` grid; each box is centred in its cell, its size and scores a random
  function of the cell's mean colour.
* ``classifier_random``: ``input [N, 3, 224, 224]`` -> ``logits [N, classes]``, the
  torchvision layout (normalised RGB in, logits out).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["classifier_random", "yolo_random"]

_OPSET = 17
_IR_VERSION = 9


def _model(graph: onnx.GraphProto, names: dict[int, str] | None = None) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], ir_version=_IR_VERSION
    )
    model.producer_name = "hybridfleet models.random (random weights)"
    if names is not None:
        # Where Ultralytics puts its class names: a Python dict literal.
        helper.set_model_props(model, {"names": repr(names)})
    onnx.checker.check_model(model)
    return model


def yolo_random(size: int = 320, classes: int = 3, seed: int = 0) -> onnx.ModelProto:
    """A random detector with the YOLOv8 output layout (see the module's doc)."""
    rng = np.random.default_rng(seed)
    cells = size // 32
    anchors = cells * cells
    # Per cell: 1x1 conv of the cell's mean colour to 2 size and `classes` score logits.
    weight = rng.normal(0.0, 2.0, (2 + classes, 3, 1, 1)).astype(np.float32)
    bias = rng.normal(-1.5, 1.0, (2 + classes,)).astype(np.float32)
    ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
    centres = np.stack([(xs.ravel() + 0.5) * 32, (ys.ravel() + 0.5) * 32]).astype(np.float32)
    # Box sides 16..112 px, from the sigmoid of the conv's first two channels.
    side_scale = np.full((1, 2, 1), 96.0, np.float32)
    side_shift = np.full((1, 2, 1), 16.0, np.float32)
    nodes = [
        helper.make_node(
            "AveragePool", ["images"], ["cells"], kernel_shape=[32, 32], strides=[32, 32]
        ),
        helper.make_node("Conv", ["cells", "w", "b"], ["conv"]),
        helper.make_node("Reshape", ["conv", "flat_shape"], ["flat"]),
        helper.make_node("Sigmoid", ["flat"], ["squashed"]),
        helper.make_node("Slice", ["squashed", "s0", "s2", "axis1"], ["sides01"]),
        helper.make_node("Mul", ["sides01", "side_scale"], ["sides_scaled"]),
        helper.make_node("Add", ["sides_scaled", "side_shift"], ["sides"]),
        helper.make_node("Slice", ["squashed", "s2", "s_end", "axis1"], ["scores"]),
        helper.make_node("Shape", ["images"], ["in_shape"]),
        helper.make_node("Slice", ["in_shape", "s0", "s1", "axis0"], ["batch"]),
        helper.make_node("Concat", ["batch", "two", "anchors"], ["centre_shape"], axis=0),
        helper.make_node("Expand", ["centres", "centre_shape"], ["centres_n"]),
        helper.make_node("Concat", ["centres_n", "sides", "scores"], ["output0"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(bias, "b"),
        numpy_helper.from_array(np.array([0, 2 + classes, anchors], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([1], np.int64), "s1"),
        numpy_helper.from_array(np.array([2], np.int64), "s2"),
        numpy_helper.from_array(np.array([2 + classes], np.int64), "s_end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([anchors], np.int64), "anchors"),
        numpy_helper.from_array(centres[None], "centres"),
        numpy_helper.from_array(side_scale, "side_scale"),
        numpy_helper.from_array(side_shift, "side_shift"),
    ]
    graph = helper.make_graph(
        nodes,
        "yolo_random",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 4 + classes, anchors])],
        inits,
    )
    names = {i: name for i, name in enumerate(("shelf", "product", "price_label")[:classes])}
    return _model(graph, names)


def classifier_random(classes: int = 5, seed: int = 1) -> onnx.ModelProto:
    """A random 224x224 RGB classifier with logits out (see the module's doc)."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 3.0, (3 * 16, classes)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, (classes,)).astype(np.float32)
    nodes = [
        # A 4x4 grid of mean colours: 48 features.
        helper.make_node(
            "AveragePool", ["input"], ["grid"], kernel_shape=[56, 56], strides=[56, 56]
        ),
        helper.make_node("Flatten", ["grid"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "w", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier_random",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    return _model(graph)
