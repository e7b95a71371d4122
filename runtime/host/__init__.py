"""Facts about this machine: optional imports (OpenCV, ONNX Runtime, OpenVINO, Ray), the CPU,
the GPU, probed once.
"""
