"""edge-classify export stage: Keras ResNet -> self-describing ONNX (FP32, FP16).

Heavy dependencies (TensorFlow, tf2onnx, onnx) are imported inside the functions that
need them, so ``export-model --help`` is instant and the runtime never pulls them in.
"""
