"""The ONNX models hybridfleet ships, with ``manifest.json`` describing them.

A package (not a plain folder) so the ``.onnx`` files and the manifest install with
the code; ``python -m models.build`` regenerates them.
"""

__all__: list[str] = []
