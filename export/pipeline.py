"""``export_model``: the export stages in order, with progress, timings and no partial files.

build model -> convert -> fp16 -> verify -> int8 -> bf16 -> choose -> write. Nothing is
written to the target paths until every model has passed its parity gate; writes are atomic.

BF16 writes no file of its own: it is a way to run the FP32 file (OpenVINO's bf16 hint on a
CPU with native BF16). ``bf16=True`` measures its fidelity against the FP32 model and
stores the figure in the FP32 model's contract (``parity["bf16"]``), which is what lets the
runtime run BF16 at all (``runtime/engines.compute_precision``).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import gc
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_classify.runtime import __version__, engines
from edge_classify.runtime.contract import LabelSet, ModelContract, ModelInfo, PreprocessSpec
from edge_classify.runtime.errors import EXIT_PARITY, EdgeClassifyError, first_line
from edge_classify.runtime.paths import variant_path

from . import convert, graph_passes, keras_model, partials, quantize, verify
from . import precision as choose_precision
from .precision import DEFAULT_AGREEMENT_BAR
from .weights import resolve


def onnx_load(data: bytes):
    import onnx

    return onnx.load_from_string(data)


def release_memory() -> None:
    """Free what was just dropped, and hand glibc's free heap pages back to the OS.

    Measured on ResNet50 (2-core AMD EPYC): RSS after conversion 2823 MiB -> 1270 MiB
    after ``gc.collect()`` (tf2onnx's last graph copies, 0.3 s) -> 918 MiB after
    ``malloc_trim(0)`` (glibc keeps freed heap resident, 30 ms). Without this, an
    ``--fp16 --int8`` export peaked at 3371 MiB in its INT8 stage, above the conversion's
    2851 (ONNX Runtime mostly did not reuse the freed heap); with it, verify and INT8
    stay under 2300 MiB. Elsewhere (musl, macOS) only the collection runs.
    """
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc
        pass


class Progress:
    """Stage lines on stderr: ``[2/5] convert to ONNX ... 31.2 s``."""

    def __init__(self, stages: list[str], stream=None, enabled: bool = True):
        self.stages, self.stream, self.enabled = stages, stream or sys.stderr, enabled
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, detail: str = ""):
        if self.enabled:
            i = self.stages.index(name) + 1
            print(f"[{i}/{len(self.stages)}] {name}" + (f": {detail}" if detail else "") + " ...",
                  file=self.stream, flush=True)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 2)
        if self.enabled:  # only reached when the stage succeeded
            print(f"      done in {self.timings[name]:.1f} s", file=self.stream, flush=True)


@dataclass
class ExportedFile:
    path: Path
    precision: str
    size_bytes: int
    parity: dict
    selection: dict | None = None


@dataclass
class ExportResult:
    files: list[ExportedFile] = field(default_factory=list)
    timings_s: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    bf16: dict | None = None  # the BF16 fidelity figure, when it was measured
    bf16_not_measured: str | None = None  # why not, when BF16 was asked for (or auto) but not measured


def _with_parity(contract: ModelContract, parity: dict) -> ModelContract:
    return replace(contract, parity=parity)


def _attached(model: bytes, contract: ModelContract) -> tuple[bytes, dict]:
    """(model bytes carrying ``contract``, its parity): the shape of ``blobs`` entries."""
    proto = onnx_load(model)
    convert.attach_contract(proto, contract)
    return proto.SerializeToString(), contract.parity


def tool_versions() -> dict:
    import importlib.metadata as md

    out = {"edge_classify": __version__, "python": platform.python_version()}
    for dist in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxconverter-common", "onnxruntime",
                 "onnxruntime-gpu", "numpy", "opencv-python-headless", "opencv-python"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def export_model(
    out: Path,
    arch: str = "resnet50",
    weights: str = "imagenet",
    seed: int | None = None,
    fp16: bool = False,
    opset: int = convert.DEFAULT_OPSET,
    static_batch: int | None = None,
    verify_images: list[Path] | None = None,
    progress: bool = True,
    int8: bool = False,
    calib: str | None = None,
    calib_method: str = "minmax",
    calib_max: int = 200,
    int8_activations: str = "auto",
    min_agreement: float | None = None,
    precision: str = "fixed",
    bf16: bool = False,
    hardware_bf16: bool | None = None,
    converted_out: str | os.PathLike | None = None,
) -> ExportResult:
    """Export ``arch``; FP32 always, FP16/INT8 on request; ``precision="auto"`` keeps one.

    With ``precision="auto"`` only the chosen model is written, at ``out``; BF16 is one of
    its candidates where it can be measured. ``bf16=True`` measures BF16's fidelity and
    records it in the FP32 model (no BF16 file). Where BF16 cannot be measured (no native
    BF16, no OpenVINO) nothing fails: ``ExportResult.bf16_not_measured`` says why and the
    model carries no BF16 figure. ``hardware_bf16`` overrides the CPU's answer (tests).
    ``converted_out`` also saves tf2onnx's output before any rewrite (no contract): the
    file a peer starts from in ``edge-bench``.
    """
    if arch not in keras_model.ARCHS:
        raise EdgeClassifyError(f"unknown architecture {arch!r}", hint=f"choose from {', '.join(keras_model.ARCHS)}", exit_code=2)
    auto = precision == "auto"
    fp16, int8 = fp16 or auto, int8 or auto
    # Fail fast (before importing TensorFlow) on weights and calibration images that cannot be had.
    wspec = resolve(weights, arch, seed)
    calib_set = None
    if int8 and not calib:
        raise EdgeClassifyError("INT8 needs calibration images: pass --calib DIR or --calib 'GLOB'", exit_code=2)
    if calib and (int8 or bf16):
        calib_set = quantize.split(calib, calib_max)
    bf16_ok, bf16_why = False, ""
    if bf16 or auto:
        bf16_ok, bf16_why = choose_precision.bf16_support(hardware_bf16)
    _, mode, input_size = keras_model.ARCHS[arch]
    precisions = ["fp32"] + (["fp16"] if fp16 else [])
    stages = (["build model", "convert to ONNX"] + (["convert to FP16"] if fp16 else []) + ["verify against Keras"]
              + (["quantize to INT8"] if int8 else []) + (["measure BF16"] if bf16_ok else [])
              + (["choose precision"] if auto else []) + ["write"])
    prog = Progress(stages, enabled=progress)
    images = [Path(p) for p in (verify_images or verify.sample_images())]
    unreadable = [str(p) for p in images if not p.is_file()]
    if unreadable:
        raise EdgeClassifyError(f"verification image(s) not found: {', '.join(unreadable)}", exit_code=2)
    # What earlier exports killed mid-way (kill -9, OOM) left: partial models beside the
    # output, INT8 work folders in the temp dir.
    partials.sweep_stale(Path(out).parent)
    partials.sweep_stale(tempfile.gettempdir())

    with prog.stage("build model", f"{arch}, weights {weights}"):
        model = keras_model.build(arch, wspec)
        provenance = {
            "weights": wspec.provenance(),
            "keras_application": f"keras.applications.{keras_model.ARCHS[arch][0]}",
            "opset": opset,
            "tools": tool_versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        reference = verify.keras_reference(model, images, mode, input_size)

    protos = {}
    with prog.stage("convert to ONNX", f"tf2onnx, opset {opset}, batch {static_batch or 'dynamic'}"):
        try:
            protos["fp32"] = convert.keras_to_onnx(model, input_size, static_batch, opset)
        except Exception as exc:  # tf2onnx raises assorted types (unsupported opset, ops)
            raise EdgeClassifyError(f"ONNX conversion failed: {first_line(exc)}",
                                    hint="try the default --opset 17") from None
        if converted_out is not None:  # as tf2onnx made it: what a peer would start from
            convert.atomic_write(Path(converted_out), protos["fp32"].SerializeToString())
        # Exact rewrites (bit-identical outputs) that both engines run faster (graph_passes.py);
        # the parity check below still judges the result against Keras.
        provenance["graph_rewrites"] = graph_passes.optimize(protos["fp32"])
        if progress:
            fired = ", ".join(f"{k} x{n}" for k, n in provenance["graph_rewrites"].items() if n) or "none applied"
            print(f"      exact graph rewrites: {fired}", file=sys.stderr, flush=True)
    # The Keras model has served its purpose (reference outputs and ONNX graph exist).
    # Dropping it and trimming the heap: RSS 2770-2830 MiB -> 890-900 MiB before FP16/verify.
    del model
    release_memory()
    if fp16:
        with prog.stage("convert to FP16", "float16 weights, float32 I/O"):
            protos["fp16"] = convert.onnx_to_fp16(protos["fp32"])

    preprocess = PreprocessSpec.keras(mode, input_size)
    labels = LabelSet.imagenet1k()
    blobs, reports, sessions, contracts = {}, {}, {}, {}
    fp32_verify = fp32_holdout = None  # the FP32 ONNX model's probabilities, the reference for BF16
    from edge_classify.runtime.classifier import Classifier

    with prog.stage("verify against Keras", f"{len(images)} real photos, {'/'.join(precisions)}"):
        for precision in precisions:
            info = ModelInfo(arch, precision, convert.INPUT_NAME, convert.OUTPUT_NAME, "probabilities",
                             len(labels), static_batch)
            contract = ModelContract(preprocess, labels, info, provenance)
            convert.attach_contract(protos[precision], contract, doc=f"{arch} {precision} exported by edge-classify")
            sessions[precision] = Classifier(protos[precision].SerializeToString(), providers="cpu")
            candidate = sessions[precision].predict(images)
            report = verify.check(reference, candidate, precision)
            if precision == "fp32":
                fp32_verify = candidate
            reports[precision] = report
            if progress:
                status = "ok" if report.passed else "FAILED"
                print(f"      {precision}: {report.summary()} [{status}]", file=sys.stderr, flush=True)
            parity = {
                "reference": "keras load_img + img_to_array + preprocess_input + predict",
                "image_files": [p.name for p in images],
                **report.to_dict(),
            }
            contracts[precision] = ModelContract(preprocess, labels, info, provenance, parity)
            convert.attach_contract(protos[precision], contracts[precision])
            blobs[precision] = (protos[precision].SerializeToString(), parity)
    # The blobs are what is written and quantized from here on. With the warm-up change
    # below: INT8 stage peak 2091-2107 vs 2163-2265 MiB (--fp16 --int8, ResNet50).
    del protos
    failed = {p: r for p, r in reports.items() if not r.passed}
    if failed:
        detail = "; ".join(f"{p}: {', '.join(r.failures)}" for p, r in failed.items())
        raise EdgeClassifyError(
            f"exported model disagrees with Keras ({detail}); nothing was written",
            hint="this is a conversion problem; try another --opset, and report it with the numbers above",
            exit_code=EXIT_PARITY,
        )

    fidelity: dict[str, dict] = {}
    selection = None
    bar = DEFAULT_AGREEMENT_BAR if min_agreement is None else min_agreement
    if int8:
        acts = choose_precision.int8_activations(int8_activations)
        with prog.stage("quantize to INT8", f"{len(calib_set.calibrate)} calibration + {len(calib_set.holdout)} "
                        f"held-out images of {calib_set.found}, {calib_method}, per-channel, {acts} activations"):
            # The INT8 file is quantized from the graph with every exact rewrite: OpenVINO runs
            # the QDQ file faster with the strided 1x1 convolutions rewritten, the FP32 file
            # slower (graph_passes.py).
            int8_source = onnx_load(blobs["fp32"][0])
            int8_rewrites = {**provenance["graph_rewrites"],
                             **graph_passes.optimize(int8_source, graph_passes.INT8_EXTRA)}
            int8_source = int8_source.SerializeToString()
            q = quantize.onnx_to_int8(int8_source, calib_set.calibrate, preprocess, convert.INPUT_NAME,
                                      calib_method, acts, progress)
            sessions["int8"] = Classifier(q, providers="cpu")
            fp32_holdout = sessions["fp32"].predict(calib_set.holdout)
            for p in precisions[1:] + ["int8"]:
                fidelity[p] = quantize.fidelity(fp32_holdout, sessions[p].predict(calib_set.holdout))
            f8 = fidelity["int8"]
            passed = min_agreement is None or f8["top1_agreement"] >= min_agreement
            # Engines quantize differently: the runtime's `auto` runs this file on OpenVINO
            # only with OpenVINO's own figure (runtime/engines.unverified).
            other_engines = {}
            if "openvino" in engines.installed():
                ov_int8 = Classifier(q, engine="openvino")
                other_engines["openvino"] = quantize.fidelity(fp32_holdout, ov_int8.predict(calib_set.holdout))
                ov_int8.runner.close()
                del ov_int8
            parity = {
                "reference": "fp32 ONNX on held-out calibration images",
                **f8,
                "engine": "onnxruntime",
                "engines": other_engines,
                "min_agreement": min_agreement,
                "passed": passed,
                "quantization": {"format": "QDQ", "weights": "int8 per-channel symmetric", "activations": acts,
                                 "method": calib_method, "calibration_images": len(calib_set.calibrate),
                                 "heldout_images": [p.name for p in calib_set.holdout]},
            }
            if progress:
                print(f"      int8 vs fp32 on {f8['images']} held-out images: top-1 agreement {f8['top1_agreement']:.1%}, "
                      f"top-5 overlap {f8['top5_overlap']:.1%}, max|dp| {f8['max_abs_diff']:.3g}, "
                      f"mean|dp| {f8['mean_abs_diff']:.3g}", file=sys.stderr, flush=True)
                for name, fe in other_engines.items():
                    print(f"      int8 on {name}: top-1 agreement {fe['top1_agreement']:.1%}, "
                          f"top-5 overlap {fe['top5_overlap']:.1%}, max|dp| {fe['max_abs_diff']:.3g}",
                          file=sys.stderr, flush=True)
            if not passed and not auto:
                raise EdgeClassifyError(
                    f"INT8 top-1 agreement with FP32 is {f8['top1_agreement']:.3f}, below --min-agreement "
                    f"{min_agreement}; nothing was written",
                    hint="try --calib-method entropy or percentile, more calibration images, or keep FP32/FP16",
                    exit_code=EXIT_PARITY,
                )
            info = ModelInfo(arch, "int8", convert.INPUT_NAME, convert.OUTPUT_NAME, "probabilities", len(labels), static_batch)
            proto = onnx_load(q)
            contracts["int8"] = ModelContract(preprocess, labels, info, {**provenance, "graph_rewrites": int8_rewrites},
                                              parity)
            convert.attach_contract(proto, contracts["int8"], doc=f"{arch} int8 exported by edge-classify")
            blobs["int8"] = (proto.SerializeToString(), parity)
            precisions.append("int8")

    bf16_figure = None
    if bf16_ok:
        bf16_images = images + (list(calib_set.holdout) if calib_set else [])
        with prog.stage("measure BF16", f"the FP32 model on OpenVINO with the bf16 hint, vs FP32 on "
                        f"{len(bf16_images)} photos ({len(images)} verification"
                        + (f" + {len(calib_set.holdout)} held-out)" if calib_set else ")")):
            if calib_set and fp32_holdout is None:
                fp32_holdout = sessions["fp32"].predict(calib_set.holdout)
            ref = np.concatenate([fp32_verify] + ([fp32_holdout] if calib_set else []))
            sessions["bf16"] = choose_precision.bf16_classifier(blobs["fp32"][0])
            bf16_figure = choose_precision.measure_bf16(
                sessions["bf16"], bf16_images, ref, bar, "fp32 ONNX (ONNX Runtime CPU) on the verification photos"
                + (" + held-out calibration photos" if calib_set else ""))
            fidelity["bf16"] = bf16_figure
            contracts["fp32"] = _with_parity(contracts["fp32"], {**contracts["fp32"].parity, "bf16": bf16_figure})
            blobs["fp32"] = _attached(blobs["fp32"][0], contracts["fp32"])
            if progress:
                print(f"      {choose_precision.describe_bf16(bf16_figure)}", file=sys.stderr, flush=True)
                ran = bf16_figure.get("openvino_precision")
                if ran and ran != "bf16":
                    print(f"      note: OpenVINO reports it computed {ran}, not bf16, on this CPU", file=sys.stderr,
                          flush=True)
            if not auto:  # its compiled model (a copy of the weights) is not needed for choosing
                sessions.pop("bf16").runner.close()
                release_memory()

    if auto:
        candidates = precisions + (["bf16"] if bf16_ok else [])
        detail = f"fastest candidate with top-1 agreement >= {bar}"
        if bf16_ok:
            detail += f" (bf16: >= {max(bar, engines.BF16_BAR)})"
        with prog.stage("choose precision", detail):
            latency = choose_precision.latency_p50_ms({p: sessions[p] for p in candidates})
            agreement = {"fp32": 1.0, **{p: fidelity[p]["top1_agreement"] for p in candidates[1:]}}
            floors = {"bf16": bf16_figure["bar"]} if bf16_figure else {}
            chosen, reason = choose_precision.choose(agreement, latency, bar, floors)
            if progress:
                for p in candidates:
                    name = choose_precision.BF16_LABEL if p == "bf16" else p
                    print(f"      {name}: {latency[p]:.1f} ms p50, top-1 agreement {agreement[p]:.3f}", file=sys.stderr)
                if not bf16_ok:
                    print(f"      bf16: not a candidate: {bf16_why}", file=sys.stderr)
                print(f"      chose {chosen}: {reason}", file=sys.stderr, flush=True)
            selection = {"chosen": chosen, "reason": reason, "agreement_bar": bar,
                         "candidates": {p: {"p50_ms_batch1": latency[p], "top1_agreement": agreement[p],
                                            **({"fidelity": fidelity[p]} if p in fidelity else {}),
                                            **({"runs": "the FP32 file with OpenVINO in BF16"} if p == "bf16" else {})}
                                        for p in candidates},
                         "measured_on": platform.processor() or platform.machine()}
            if not bf16_ok:
                selection["not_candidates"] = {"bf16": bf16_why}
            written = "fp32" if chosen == "bf16" else chosen  # BF16 runs the FP32 file
            c = contracts[written]
            parity = c.parity
            if written == "fp32" and chosen != "bf16" and not bf16 and bf16_figure and bf16_figure["passed"]:
                # BF16 passed but lost on speed: a passing figure would let the runtime run
                # the BF16 that this machine measured slower. Its numbers stay in the selection.
                parity = {k: v for k, v in parity.items() if k != "bf16"}
            if "bf16" not in (parity or {}):
                bf16_figure = None  # ExportResult.bf16: the figure the written model carries
            c = replace(c, provenance={**c.provenance, "selection": selection}, parity=parity)
            blobs = {written: _attached(blobs[written][0], c)}
            precisions = [written]

    result = ExportResult(weights=provenance["weights"], bf16=bf16_figure,
                          bf16_not_measured=None if bf16_ok or not (bf16 or auto) else bf16_why)
    with prog.stage("write", str(out)):
        for precision in precisions:
            path = out if precision == "fp32" or auto else variant_path(out, precision)
            data, parity = blobs[precision]
            convert.atomic_write(path, data)
            result.files.append(ExportedFile(path, precision, len(data), parity, selection if auto else None))
        del data
        # Warm the runtime's optimised-graph cache so the first edge-classify is a fast one,
        # once the models in memory are gone (the files are what it reads): write stage
        # peak 1987-2078 vs 2154-2187 MiB, RSS after it 1130 vs 2170 MiB (--fp16 --int8).
        blobs.clear()
        sessions.clear()
        release_memory()
        # Likewise the engine choice: where two engines are installed, `auto` measures the
        # first runs of a model on this machine (runtime/engines.py); do them now.
        for f in result.files:
            for _ in range(engines.SAMPLES):
                clf = Classifier(f.path)
                if not clf.engine_choice.fresh:
                    break
            if progress and len(engines.installed()) > 1:
                print(f"      {f.path.name}: edge-classify runs it on {clf.runner.engine} here "
                      f"({clf.engine_choice.reason.split(': ', 1)[-1]})", file=sys.stderr, flush=True)
            del clf
    result.timings_s = prog.timings
    return result
