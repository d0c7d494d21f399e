"""Models: verified ONNX loading, calibration, the site's embedding, the digits
features."""
