"""The model contract: what an exported file promises (preprocessing, labels, head, provenance),
read from its ONNX metadata, checked against the graph, and compared with a reference.
"""
