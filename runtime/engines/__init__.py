"""Inference engines: the runner protocol, one runner per engine (ONNX Runtime, OpenVINO),
ONNX Runtime's providers and TensorRT, the engine policy, and the loader that turns a model
file into a runner.
"""
