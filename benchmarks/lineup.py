"""Which rows a run times: one worker spec (systems.py) per row, and notes on what was left out.

Kinds: ``keras`` (the baselines), ``edge`` (edge-classify's runners: every exported
precision file x every installed engine), ``peer`` (what a competent user would do with
the same FP32 ONNX file and the same calibration photos; the headline compares against
the strongest of them) and ``peer-extra`` (informative, not a headline peer).
"""

from __future__ import annotations

from pathlib import Path

KERAS_PREDICT = "keras predict"
TF_FUNCTION = "keras tf.function"
OV_DEFAULT = "OpenVINO default"
OV_NNCF = "OpenVINO NNCF int8"
ORT_PLAIN = "ORT CPU fp32 (tf2onnx file)"
OV_OUR_INT8 = "OpenVINO on our int8 file"


def edge_name(engine: str, file_precision: str) -> str:
    return f"edge-classify {engine} {file_precision}"


def keras_specs(source: dict, input_shape: tuple[int, ...], threads: int | None) -> list[dict]:
    """``source``: what to load (model_files.keras_source); ``input_shape``: one image's
    tensor shape, for the tf.function signature."""
    return [{"type": "keras", "name": n, "mode": mode, **source, "input_shape": list(input_shape), "threads": threads}
            for n, mode in ((KERAS_PREDICT, "predict"), (TF_FUNCTION, "tf.function"))]


def edge_specs(files: dict, engines: list[str], threads: int | None, ovep: bool,
               provider: str = "cpu") -> list[dict]:
    """``files``: precision -> path of the exported files present; ``provider``: ONNX Runtime's
    provider for the onnxruntime rows (``edge-bench --provider``; the openvino engine has
    its own devices and stays on the CPU)."""
    specs = []
    for engine in engines:
        for pr, path in files.items():
            specs.append({"type": "edge", "name": edge_name(engine, pr), "model": str(path), "file_precision": pr,
                          "providers": provider if engine == "onnxruntime" else "cpu", "threads": threads,
                          "engine": engine})
    if ovep:  # ONNX Runtime's OpenVINO execution provider (the onnxruntime-openvino build)
        for pr in ("fp32", "int8"):
            if pr in files:
                specs.append({"type": "edge", "name": edge_name("onnxruntime+openvino EP", pr),
                              "model": str(files[pr]), "file_precision": pr, "providers": "openvino",
                              "threads": threads, "engine": "onnxruntime"})
    return specs


def peer_specs(fp32: Path, int8: Path | None, nncf_ir: Path | None, have_ov: bool,
               threads: int | None) -> list[dict]:
    specs = [{"type": "ort", "name": ORT_PLAIN, "kind": "peer", "model": str(fp32), "precision": "fp32",
              "threads": threads}]
    if have_ov:
        specs.insert(0, {"type": "openvino", "name": OV_DEFAULT, "kind": "peer", "model": str(fp32),
                         "precision": "fp32", "threads": threads})
        if nncf_ir is not None:
            specs.insert(1, {"type": "openvino", "name": OV_NNCF, "kind": "peer", "model": str(nncf_ir),
                             "precision": "int8", "threads": threads})
        if int8 is not None:
            specs.append({"type": "openvino", "name": OV_OUR_INT8, "kind": "peer-extra", "model": str(int8),
                          "precision": "int8", "threads": threads})
    return specs
