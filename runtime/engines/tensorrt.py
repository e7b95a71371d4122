"""TensorRT through ONNX Runtime: the provider options, the engine cache and when TensorRT
must not be tried. Pure functions over injected facts, so all of it is tested without a GPU.

What a first real device would otherwise hit (ONNX Runtime's TensorRT provider source, docs
and issue tracker):

* **INT8 needs ``trt_int8_enable``**: without it TensorRT's INT8 builder flag is off and a
  QDQ model fails to build ("int8 is not configured in the builder"). TensorRT also takes
  only symmetric int8 activations, and its parser rejects int32 biases behind
  ``DequantizeLinear``: a uint8-activation QDQ model (export's x86 default), or one with
  quantized biases (exports before s8 models kept them float), is kept off TensorRT before
  any session is created.
* **Stale engines**: the provider's engine id hashes graph and tensor names, not weights, so
  one cache folder for every model would load the engine of an earlier export of the same
  architecture. Each model gets its own folder, keyed by the model's sha256, precision,
  profile, TensorRT / ONNX Runtime versions and the GPU (``engine_cache_dir``).
* **Folders**: the provider creates one level only; ours are created with their parents.
* **Timing cache**: ``trt_timing_cache_path`` is an unknown option before ONNX Runtime 1.17
  (JetPack 5's wheels), which makes the provider fail every time; it is set only on 1.17+.
* **Profile**: a dynamic batch gets one fixed profile (``PROFILE_BATCHES``: 1 / 8 / 32),
  independent of ``--batch-size`` up to 32, so changing the batch size never rebuilds the
  engine (minutes on a Jetson) nor overwrites the cached one. A larger batch (many camera
  streams in one inference, ``--batch-size 48``) raises the profile's maximum to it: outside
  the profile TensorRT refuses the shape.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import EXIT_MODEL, EdgeClassifyError

PROFILE_BATCHES = (1, 8, 32)  # min / opt / max batch of the one optimisation profile
TIMING_CACHE_SINCE = (1, 17)


def _version(text: str) -> tuple[int, ...]:
    out = []
    for part in str(text).split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def refuse_reason(precision: str, parity: dict | None) -> str | None:
    """Why this model must not be built by TensorRT (None: it may)."""
    quant = (parity or {}).get("quantization") or {}
    if precision != "int8":
        return None
    if quant.get("activations") == "u8":
        return ("this INT8 model has uint8 activations (made for x86 CPUs); TensorRT takes symmetric int8 only: "
                "re-export with --int8-activations s8")
    if quant.get("bias", "int32") != "float":  # exports before the field existed quantized their biases
        return ("this INT8 model has int32-quantized biases, whose DequantizeLinear TensorRT's parser rejects: "
                "re-export it with --int8-activations s8 (biases then stay float)")
    return None


def engine_key(model_sha256: str, precision: str, profile: str, versions: dict, gpu: str) -> str:
    facts = {"model": model_sha256, "precision": precision, "profile": profile, "versions": versions, "gpu": gpu}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def engine_cache_dir(base: str | os.PathLike, key: str) -> Path:
    """``base/<key>``, created with its parents (the provider creates one level only)."""
    path = Path(base) / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_engines(folder: str | os.PathLike) -> list[Path]:
    """The serialized engines ONNX Runtime keeps in a model's cache folder (``*.engine``)."""
    try:
        return sorted(Path(folder).glob("*.engine"))
    except OSError:
        return []


def profile_shapes(input_name: str, input_shape: tuple, static_batch: int | None, max_batch: int = 1) -> dict:
    """The one optimisation profile; ``max_batch``: the largest batch the caller will run."""
    if static_batch:
        return {}
    dims = "x".join(str(d) for d in input_shape)
    lo, opt, hi = PROFILE_BATCHES
    hi = max(hi, max_batch)
    return {"trt_profile_min_shapes": f"{input_name}:{lo}x{dims}",
            "trt_profile_opt_shapes": f"{input_name}:{opt}x{dims}",
            "trt_profile_max_shapes": f"{input_name}:{hi}x{dims}"}


def options(*, cache_base: str | os.PathLike, model_sha256: str, precision: str, input_name: str,
            input_shape: tuple, static_batch: int | None, ort_version: str, trt_version: str = "unknown",
            gpu: str = "unknown", fp16: bool = True, max_batch: int = 1) -> dict:
    """The TensorRT provider options for one model on this device, running batches of up to
    ``max_batch``."""
    profile = profile_shapes(input_name, input_shape, static_batch, max_batch)
    key = engine_key(model_sha256, precision, json.dumps(profile, sort_keys=True) or "static",
                     {"onnxruntime": ort_version, "tensorrt": trt_version}, gpu)
    folder = str(engine_cache_dir(cache_base, key))
    opts = {
        "trt_fp16_enable": bool(fp16),  # FP16 kernels where faster; an FP16 or INT8 model wants them too
        "trt_int8_enable": precision == "int8",  # QDQ scales come from the model: no calibration table
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": folder,
        **profile,
    }
    if _version(ort_version) >= TIMING_CACHE_SINCE:
        opts["trt_timing_cache_enable"] = True
        opts["trt_timing_cache_path"] = folder
    return opts


def check_allowed(requested: str, precision: str, parity: dict | None) -> str | None:
    """``--provider tensorrt`` with a model TensorRT cannot build is an error; under ``auto``
    TensorRT is left out and the reason returned (for a warning)."""
    why = refuse_reason(precision, parity)
    if why and requested == "tensorrt":
        raise EdgeClassifyError(f"--provider tensorrt: {why}", exit_code=EXIT_MODEL)
    return why
