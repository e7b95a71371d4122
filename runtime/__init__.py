"""edge-classify runtime: classify images with an exported, self-describing ONNX model.

Imports nothing heavy at package import time: ``Classifier`` pulls in numpy,
OpenCV and ONNX Runtime on first use, and nothing here ever imports TensorFlow.
"""

__version__ = "0.1.0"

__all__ = ["Classifier", "Classification", "Prediction", "EdgeClassifyError", "__version__"]


def __getattr__(name):  # PEP 562: keep `import edge_classify.runtime` cheap
    if name in ("Classifier", "Classification", "Prediction"):
        from . import classifier

        return getattr(classifier, name)
    if name == "EdgeClassifyError":
        from .errors import EdgeClassifyError

        return EdgeClassifyError
    raise AttributeError(name)
