"""Real PaddleOCR (PP-OCR) text models, taken from pinned RapidOCR wheels (see build.py).

The ``.onnx`` files are not in the repository: ``python -m models.ppocr.build`` fetches
the wheels from the package registry with pip, checks their SHA-256, and copies the
model files into ``models/ppocr/files/``. ``manifest.json`` (schema 2) declares them.
"""

__all__: list[str] = []
