"""Benchmarks: onnxc side by side with onnxruntime in one process (``python -m bench``)."""
