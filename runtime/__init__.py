"""edge-classify runtime: classify images with an exported, self-describing ONNX model.

Imports nothing heavy at package import time: ``Classifier`` pulls in numpy,
OpenCV and ONNX Runtime on first use, and nothing here ever imports TensorFlow.
"""

__version__ = "0.1.0"

__all__ = ["Classifier", "Classification", "Prediction", "EngineOptions", "TensorRTOptions", "MachineFacts",
           "MultiStream", "EdgeClassifyError", "__version__"]

_WHERE = {"Classifier": "classifier", "Classification": "results", "Prediction": "results",
          "EngineOptions": "engines.options", "TensorRTOptions": "engines.options", "MachineFacts": "host.facts",
          "MultiStream": "apps.multistream", "EdgeClassifyError": "errors"}


def __getattr__(name):  # PEP 562: keep `import edge_classify.runtime` cheap
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(name)
