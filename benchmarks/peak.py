"""How close to the CPU's arithmetic peak the best edge mode runs (an upper-bound estimate).

    achieved ops/s = images/s (batch 8) x ops per image          (1 multiply-accumulate = 2 ops)
    peak ops/s     = 2 x MACs per core per cycle x cores x clock
    fraction       = achieved / peak

Ops per image are counted from the FP32 ONNX graph (Conv and MatMul/Gemm with constant
weights, shapes from ONNX shape inference at batch 1); without the ``onnx`` package, the
published figure for ResNet50 at 224x224 is used instead. MACs per core per cycle are the
vector units' nominal widths for the precision that really ran, read from the CPU flags.
The clock is lscpu's max MHz when it reports one, else /proc/cpuinfo's current "cpu MHz";
cores are usable logical CPUs / threads per core. Nominal peaks ignore memory bandwidth,
turbo limits and instruction mix, so the fraction is an estimate and the peak an upper
bound: it answers "is there headroom left", not "what should it reach". A VM may report
its base clock while the cores boost; numpy's FP32 matrix multiply on all cores then
implies a higher clock, and the fraction is also given at that clock.
"""

from __future__ import annotations

from pathlib import Path

# The commonly quoted ResNet50 figure at 224x224 (v1.5, stride on the 3x3 convolutions);
# He et al. 2016, Table 1, give 3.8e9 "FLOPs" that are multiply-adds, and Keras' v1 graph
# counts 3.86e9 here. Used only when the graph cannot be counted.
RESNET50_MACS = 4.1e9
RESNET50_MACS_SOURCE = "published ResNet50 figure (4.1e9 MACs at 224x224), the onnx package not being installed"

# (flags that must all be present, MACs per core per cycle), best first.
MACS_PER_CYCLE = {
    "fp32": [(("avx512f",), 32, "AVX-512 FMA, 2 x 16 lanes"), (("avx2", "fma"), 16, "AVX2 FMA, 2 x 8 lanes")],
    "int8": [(("amx_int8",), 1024, "AMX-INT8"), (("avx512_vnni",), 128, "AVX-512 VNNI"),
             (("avx_vnni",), 64, "AVX-VNNI"), (("avx2",), 32, "AVX2 vpmaddubsw + vpmaddwd (estimate)")],
    "bf16": [(("amx_bf16",), 512, "AMX-BF16"), (("avx512_bf16",), 64, "AVX-512 BF16")],
}


def macs_per_image(onnx_path: Path) -> tuple[float, str]:
    """(multiply-accumulates for one image, where the figure comes from)."""
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        return RESNET50_MACS, RESNET50_MACS_SOURCE
    try:
        model = onnx.load(str(onnx_path))
        dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
        dim0.Clear()
        dim0.dim_value = 1
        model = shape_inference.infer_shapes(model)
        shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                  for v in list(model.graph.value_info) + list(model.graph.output)}
        weights = {t.name: list(t.dims) for t in model.graph.initializer}
        macs = 0
        for node in model.graph.node:
            if node.op_type == "Conv" and node.input[1] in weights:
                cout, cin_per_group, *kernel = weights[node.input[1]]
                out = shapes[node.output[0]]
                macs += cout * cin_per_group * _prod(kernel) * _prod(out[2:])
            elif node.op_type in ("MatMul", "Gemm") and node.input[1] in weights:
                k, n = weights[node.input[1]][-2:]
                rows = _prod(shapes[node.output[0]][:-1]) or 1
                macs += rows * k * n
        if macs <= 0:
            raise ValueError("no Conv/MatMul with constant weights")
        return float(macs), f"counted from {Path(onnx_path).name} (Conv + MatMul weights x output sizes, batch 1)"
    except Exception as exc:  # an unusual graph: the published figure, saying why
        return RESNET50_MACS, f"published ResNet50 figure (4.1e9 MACs); counting the graph failed: {exc}"


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def peak_ops(precision: str, flags: set[str], cores: int, mhz: float | None) -> dict:
    """The CPU's nominal peak for ``precision`` (fp16 on a CPU computes as fp32)."""
    table = MACS_PER_CYCLE.get("fp32" if precision == "fp16" else precision, [])
    for needs, macs, unit in table:
        if all(f in flags for f in needs):
            if not mhz:
                return {"macs_per_core_cycle": macs, "unit": unit, "peak_ops_per_s": None,
                        "why_none": "no CPU clock reported"}
            return {"macs_per_core_cycle": macs, "unit": unit, "cores": cores, "mhz": mhz,
                    "peak_ops_per_s": 2 * macs * cores * mhz * 1e6}
    return {"peak_ops_per_s": None, "why_none": f"no {precision} vector unit in this table for these CPU flags"}


def measured_sgemm(n: int = 2048, calls: int = 5) -> dict:
    """FP32 matrix multiply rate of numpy's BLAS on all cores: what dense FP32 arithmetic
    reaches here in practice. It checks the nominal peak: a VM's /proc/cpuinfo often shows
    the base clock while the cores boost above it."""
    import statistics
    import time

    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy: no dict form; the name is only informative
        blas = "numpy's BLAS"
    return {"sgemm_ops_per_s": 2 * n**3 / statistics.median(times), "n": n, "blas": blas}


def report(images_per_s: float, precision: str, system: str, onnx_path: Path, cpu: dict, flags: set[str],
           sgemm: dict | None = None, gpu: str | None = None) -> dict:
    """The peak_ops section: achieved, peak and fraction for one system at batch 8. ``gpu``:
    the GPU provider the system ran on, if it did: the CPU's peak and GEMM rate do not apply."""
    macs, source = macs_per_image(onnx_path)
    achieved = images_per_s * 2 * macs
    if gpu:
        return {"system": system, "precision": precision, "batch": 8, "images_per_s": images_per_s,
                "macs_per_image": macs, "ops_per_image": 2 * macs, "ops_source": source,
                "achieved_ops_per_s": achieved, "peak_ops_per_s": None, "fraction_of_peak": None,
                "why_none": f"it ran on {gpu}; this section estimates CPU peaks only",
                "formula": "achieved = images/s x 2 x MACs/image"}
    peak = peak_ops(precision, flags, cpu.get("cores") or 1, cpu.get("mhz"))
    fraction = achieved / peak["peak_ops_per_s"] if peak.get("peak_ops_per_s") else None
    out = {"system": system, "precision": precision, "batch": 8, "images_per_s": images_per_s,
           "macs_per_image": macs, "ops_per_image": 2 * macs, "ops_source": source,
           "achieved_ops_per_s": achieved, **peak, "clock_source": cpu.get("mhz_source"),
           "fraction_of_peak": fraction,
           "formula": "fraction = images/s x 2 x MACs/image / (2 x MACs/core/cycle x cores x MHz x 1e6); "
                      "an upper-bound estimate of the peak (nominal vector width, no memory limits)"}
    if sgemm:
        out["measured_sgemm"] = sgemm
        fp32 = peak_ops("fp32", flags, cpu.get("cores") or 1, None)
        if fp32.get("macs_per_core_cycle"):
            # The clock the cores at least ran at while multiplying matrices.
            mhz = sgemm["sgemm_ops_per_s"] / (2 * fp32["macs_per_core_cycle"] * (cpu.get("cores") or 1)) / 1e6
            out["implied_mhz_from_sgemm"] = mhz
            if peak.get("peak_ops_per_s") and mhz > (cpu.get("mhz") or 0):
                out["fraction_of_peak_at_implied_clock"] = fraction * cpu["mhz"] / mhz
        if precision in ("fp32", "fp16"):
            out["fraction_of_measured_sgemm"] = achieved / sgemm["sgemm_ops_per_s"]
    if fraction is not None and fraction > 1:
        out["caveat"] = ("above 1: the cores ran faster than the reported clock (turbo; a VM often reports the base "
                         "clock), so this nominal peak underestimates the real one")
    return out
