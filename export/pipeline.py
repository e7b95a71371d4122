"""``export_model``: the export stages in order, with progress, timings and no partial files.

load model -> convert -> fp16 -> verify -> int8 -> bf16 -> choose -> write. The model comes
from a source (sources.py: a keras.applications arch, or the user's own file), its contract
is settled from the source's defaults and the user's flags (settle.py), and each target
format (formats.py: one row each) is built, gated and written. Nothing is written to the
target paths until every model has passed its gate; writes are atomic.

BF16 writes no file of its own: it is a way to run the FP32 file (OpenVINO's bf16 hint on a
CPU with native BF16). ``bf16=True`` measures its fidelity against the FP32 model and
stores the figure in the FP32 model's contract (``parity["bf16"]``), which is what lets the
runtime run BF16 at all (``runtime/policy.compute_precision``).
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

from edge_classify.runtime import __version__
from edge_classify.runtime.cache.paths import variant_path
from edge_classify.runtime.engines import policy
from edge_classify.runtime.engines.options import EngineOptions
from edge_classify.runtime.engines.runners import BF16_EMULATED
from edge_classify.runtime.errors import EXIT_PARITY, EXIT_USAGE, EdgeClassifyError, first_line
from edge_classify.runtime.host.facts import MachineFacts
from edge_classify.runtime.images.files import images_in
from edge_classify.runtime.model.compare import compare
from edge_classify.runtime.model.contract import LabelSet, ModelContract, ModelInfo

from . import convert, graph_passes, keras_model, partials, quantize, sources, user_model, verify
from . import labels as label_files
from . import precision as choose_precision
from .formats import FORMATS
from .precision import DEFAULT_AGREEMENT_BAR
from .settle import settle
from .weights import resolve


def onnx_load(data: bytes):
    import onnx

    return onnx.load_from_string(data)


# The runtime as export runs it: ONNX Runtime on the CPU, whatever GPU the machine has. Its
# warm-up measures the engine choice among the CPU engines only, so an export on a GPU host
# never builds a TensorRT engine.
ON_CPU = EngineOptions(engine="onnxruntime", providers="cpu")
CPU_ONLY = MachineFacts(ort_providers=("CPUExecutionProvider",))


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
    name: str = ""  # what was exported: the arch, or the user's model name
    decisions: list[str] = field(default_factory=list)  # the contract's choices and why
    warnings: list[str] = field(default_factory=list)
    bf16: dict | None = None  # the BF16 fidelity figure, when it was measured
    bf16_not_measured: str | None = None  # why not, when BF16 was asked for (or auto) but not measured


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


@dataclass
class Candidate:
    """One target format's model in memory: bytes with its contract, and a runtime on it."""
    precision: str
    data: bytes
    contract: ModelContract
    classifier: object = None  # runtime.classifier.Classifier

    @property
    def parity(self) -> dict:
        return self.contract.parity


def _say(progress: bool, line: str) -> None:
    if progress:
        print(f"      {line}", file=sys.stderr, flush=True)


def _warn(line: str) -> None:
    print(f"export-model: warning: {line}", file=sys.stderr, flush=True)


def _verification_images(verify_images, labels_from_dir) -> list[Path]:
    """The photos the Keras gate runs on: the user's, else a few of each class of their
    training folder (their own domain), else the package's sample photos."""
    if verify_images:
        images = [Path(p) for p in verify_images]
    elif labels_from_dir:
        per_class = [images_in(d)[:3] for d in sorted(Path(labels_from_dir).iterdir())
                     if d.is_dir() and not d.name.startswith(".")]
        images = [p for group in per_class for p in group][:32] or verify.sample_images()
    else:
        images = verify.sample_images()
    unreadable = [str(p) for p in images if not p.is_file()]
    if unreadable:
        raise EdgeClassifyError(f"verification image(s) not found: {', '.join(unreadable)}", exit_code=EXIT_USAGE)
    return images


def _truth(paths, labels: LabelSet) -> np.ndarray | None:
    """Class indices of photos filed in class folders named like the labels (else None)."""
    index = {n: i for i, n in enumerate(labels.names)}
    found = [index.get(Path(p).parent.name) for p in paths]
    return None if any(i is None for i in found) else np.asarray(found)


def _accuracy(probs: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == truth))


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
    facts=None,
    converted_out: str | os.PathLike | None = None,
    keras_model_path: str | os.PathLike | None = None,
    custom_objects: list[str] | None = None,
    allow_lambda: bool = False,
    labels: str | os.PathLike | None = None,
    labels_from_dir: str | os.PathLike | None = None,
    preprocess: str | None = None,
    resize: str | None = None,
    input_size: tuple[int, int] | None = None,
    head: str | None = None,
    multi_label: bool = False,
    threshold: float | None = None,
) -> ExportResult:
    """Export a Keras classifier; FP32 always, FP16/INT8 on request; ``precision="auto"`` keeps one.

    The model is ``keras_model_path`` (the user's .keras / .h5 / SavedModel, with
    ``custom_objects`` Python files for its custom layers) or else keras.applications'
    ``arch`` with ``weights``. The contract's preprocessing, resize, input size, head and
    labels come from the model where it shows them, and from these arguments (the CLI's
    flags of the same names) where it does not or the user says otherwise (settle.py).

    With ``precision="auto"`` only the chosen model is written, at ``out``; BF16 is one of
    its candidates where it can be measured. ``bf16=True`` measures BF16's fidelity and
    records it in the FP32 model (no BF16 file). Where BF16 cannot be measured (no native
    BF16, no OpenVINO) nothing fails: ``ExportResult.bf16_not_measured`` says why and the
    model carries no BF16 figure. ``facts`` (``MachineFacts``) describe another machine (tests).
    ``converted_out`` also saves tf2onnx's output before any rewrite (no contract): the
    file a peer starts from in ``edge-bench``.
    """
    # Fail fast, before importing TensorFlow, on what cannot work.
    if labels is not None and labels_from_dir is not None:
        raise EdgeClassifyError("give --labels or --labels-from-dir, not both", exit_code=EXIT_USAGE)
    user_path = user_model.check_path(keras_model_path) if keras_model_path is not None else None
    if user_path is None and arch not in keras_model.ARCHS:
        raise EdgeClassifyError(f"unknown architecture {arch!r}", hint=f"choose from {', '.join(keras_model.ARCHS)}",
                                exit_code=EXIT_USAGE)
    label_set, labels_flag = None, "--labels"
    if labels is not None:
        label_set = label_files.from_file(labels)
    elif labels_from_dir is not None:
        label_set, labels_flag = label_files.from_dir(labels_from_dir), f"--labels-from-dir {labels_from_dir}"
    auto = precision == "auto"
    fp16, int8 = fp16 or auto, int8 or auto
    wspec = resolve(weights, arch, seed) if user_path is None else None
    calib_set = None
    if int8 and not calib:
        raise EdgeClassifyError("INT8 needs calibration images: pass --calib DIR or --calib 'GLOB'", exit_code=2)
    if calib and (int8 or bf16):
        calib_set = quantize.split(calib, calib_max)
    bf16_ok, bf16_why = False, ""
    if bf16 or auto:
        bf16_ok, bf16_why = choose_precision.bf16_support(facts)
    # --bf16 without native BF16: OpenVINO may still emulate it (AVX-512); measured and
    # recorded as emulated, never a candidate (_measure_bf16).
    bf16_measure = bf16_ok or (bf16 and "openvino" in (facts or MachineFacts()).installed_engines())
    file_formats = [FORMATS["fp32"]] + ([FORMATS["fp16"]] if fp16 else [])
    stages = (["build model", "convert to ONNX"] + (["convert to FP16"] if fp16 else []) + ["verify against Keras"]
              + (["quantize to INT8"] if int8 else []) + (["measure BF16"] if bf16_measure else [])
              + (["choose precision"] if auto else []) + ["write"])
    prog = Progress(stages, enabled=progress)
    images = _verification_images(verify_images, labels_from_dir)
    # What earlier exports killed mid-way (kill -9, OOM) left: partial models beside the
    # output, INT8 work folders in the temp dir.
    partials.sweep_stale(Path(out).parent)
    partials.sweep_stale(tempfile.gettempdir())

    result = ExportResult()
    what = user_path.name if user_path is not None else f"{arch}, weights {weights}"
    with prog.stage("build model", what):
        source = (sources.from_file(user_path, custom_objects, allow_lambda) if user_path is not None
                  else sources.from_application(arch, wspec))
        for change in source.changes:
            _say(progress, change)
        settled = settle(source, images, preprocess=preprocess, resize=resize, input_size=input_size, head=head,
                         multi_label=multi_label, threshold=threshold, labels=label_set, labels_flag=labels_flag)
        for line in settled.lines:
            _say(progress, line)
        for line in settled.warnings:
            _warn(line)
        result.decisions, result.warnings, result.name = settled.lines, settled.warnings, source.name
        provenance = {
            **source.provenance,
            "opset": opset,
            "tools": tool_versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        original_check = None
        if source.original is not None:  # augmentation stripped / rebuilt in float32: same predictions?
            original_check = _check_original(source, images, settled, progress)

    protos = {}
    with prog.stage("convert to ONNX", f"tf2onnx, opset {opset}, batch {static_batch or 'dynamic'}"):
        try:
            protos["fp32"] = convert.keras_to_onnx(source.model, settled.preprocess.input_size, static_batch, opset)
        except Exception as exc:  # tf2onnx raises assorted types (unsupported opset, ops)
            raise EdgeClassifyError(f"ONNX conversion failed: {first_line(exc)}",
                                    hint="try the default --opset 17") from None
        if converted_out is not None:  # as tf2onnx made it: what a peer would start from
            convert.atomic_write(Path(converted_out), protos["fp32"].SerializeToString())
        # Exact rewrites (bit-identical outputs) that both engines run faster (graph_passes.py);
        # the parity check below still judges the result against Keras.
        provenance["graph_rewrites"] = graph_passes.optimize(protos["fp32"])
        fired = ", ".join(f"{k} x{n}" for k, n in provenance["graph_rewrites"].items() if n) or "none applied"
        _say(progress, f"exact graph rewrites: {fired}")
    # The Keras model has served its purpose (reference outputs and ONNX graph exist).
    # Dropping it and trimming the heap: RSS 2770-2830 MiB -> 890-900 MiB before FP16/verify.
    del source
    release_memory()
    if fp16:
        with prog.stage("convert to FP16", FORMATS["fp16"].what):
            protos["fp16"] = convert.onnx_to_fp16(protos["fp32"])

    def contract_for(precision: str, parity: dict | None, prov: dict | None = None) -> ModelContract:
        info = ModelInfo(result.name, precision, convert.INPUT_NAME, convert.OUTPUT_NAME, settled.output,
                         len(settled.labels), static_batch, settled.head, settled.threshold)
        return ModelContract(settled.preprocess, settled.labels, info, prov or provenance, parity)

    with prog.stage("verify against Keras", f"{len(images)} real photos, {'/'.join(f.name for f in file_formats)}"):
        cands = _verify_against_keras(file_formats, protos, images, settled, contract_for, original_check, progress)
    del protos
    # The candidates' bytes are what is written and quantized from here on. With the warm-up
    # change below: INT8 stage peak 2091-2107 vs 2163-2265 MiB (--fp16 --int8, ResNet50).
    failed = {p: c.parity for p, c in cands.items() if not c.parity["passed"]}
    if failed:
        detail = "; ".join(f"{p}: {', '.join(r['failures'])}" for p, r in failed.items())
        raise EdgeClassifyError(
            f"exported model disagrees with Keras ({detail}); nothing was written",
            hint="this is a conversion problem; try another --opset, and report it with the numbers above",
            exit_code=EXIT_PARITY,
        )

    fidelity: dict[str, dict] = {}
    selection = None
    bar = DEFAULT_AGREEMENT_BAR if min_agreement is None else min_agreement
    fp32_holdout = None
    if int8:
        acts = choose_precision.int8_activations(int8_activations)
        with prog.stage("quantize to INT8", f"{len(calib_set.calibrate)} calibration + {len(calib_set.holdout)} "
                        f"held-out images of {calib_set.found}, {calib_method}, per-channel, {acts} activations"):
            cands["int8"], fp32_holdout = _int8(cands, calib_set, calib_method, acts, min_agreement, auto,
                                                contract_for, provenance, fidelity, progress)

    bf16_figure = None
    if bf16_measure:
        bf16_images = images + (list(calib_set.holdout) if calib_set else [])
        with prog.stage("measure BF16", f"the FP32 model on OpenVINO with the bf16 hint, vs FP32 on "
                        f"{len(bf16_images)} photos ({len(images)} verification"
                        + (f" + {len(calib_set.holdout)} held-out)" if calib_set else ")")):
            bf16_figure, note = _measure_bf16(cands, images, calib_set, fp32_holdout, bar, auto, progress)
            if bf16_figure is not None:
                fidelity["bf16"] = bf16_figure
            bf16_why = "; ".join(w for w in (bf16_why, note) if w)

    if auto:
        cands, selection, bf16_figure = _choose(cands, fidelity, bar, bf16, bf16_why, bf16_figure,
                                                prog, progress)

    result.weights, result.bf16 = provenance["weights"], bf16_figure
    result.bf16_not_measured = None if bf16_figure is not None or not (bf16 or auto) else bf16_why
    with prog.stage("write", str(out)):
        written = [(c.precision, c.data, c.parity) for c in cands.values() if FORMATS[c.precision].writes_file]
        # Warm the runtime's optimised-graph cache so the first edge-classify is a fast one,
        # once the models in memory are gone (the files are what it reads): write stage
        # peak 1987-2078 vs 2154-2187 MiB, RSS after it 1130 vs 2170 MiB (--fp16 --int8).
        cands.clear()
        release_memory()
        for precision_name, data, parity in written:
            path = out if precision_name == "fp32" or auto else variant_path(out, precision_name)
            convert.atomic_write(path, data)
            result.files.append(ExportedFile(path, precision_name, len(data), parity, selection if auto else None))
        del written, data
        release_memory()
        # Likewise the engine choice: where two engines are installed, `auto` measures the
        # first runs of a model on this machine (runtime/policy.py); do them now.
        from edge_classify.runtime.classifier import Classifier

        for f in result.files:
            for _ in range(policy.SAMPLES):
                clf = Classifier(f.path, facts=CPU_ONLY)
                if not clf.report.engine_choice.fresh:
                    break
            if len(CPU_ONLY.installed_engines()) > 1:
                _say(progress, f"{f.path.name}: edge-classify runs it on {clf.runner.engine} on this CPU "
                               f"({clf.report.engine_choice.reason.split(': ', 1)[-1]})")
            del clf
    result.timings_s = prog.timings
    return result


def _verify_against_keras(file_formats, protos, images, settled, contract_for, original_check, progress):
    """Each Keras-gated format, run end to end by the runtime, against Keras' reference."""
    from edge_classify.runtime.classifier import Classifier

    cands: dict[str, Candidate] = {}
    for fmt in file_formats:
        proto = protos.pop(fmt.name)
        contract = contract_for(fmt.name, None)
        convert.attach_contract(proto, contract, doc=f"{contract.model.arch} {fmt.name} exported by edge-classify")
        clf = Classifier(proto.SerializeToString(), ON_CPU)
        report = verify.check(settled.reference, clf.predict(images), fmt.name)
        _say(progress, f"{fmt.name}: {report.summary()} [{'ok' if report.passed else 'FAILED'}]")
        parity = {"reference": "keras load_img + img_to_array + preprocessing + predict"
                               + (" (tf.image.resize bilinear)" if settled.preprocess.resize == "bilinear" else ""),
                  "image_files": [p.name for p in images], **report.to_dict(),
                  **({"original": original_check} if original_check else {})}
        contract = contract_for(fmt.name, parity)
        convert.attach_contract(proto, contract)
        cands[fmt.name] = Candidate(fmt.name, proto.SerializeToString(), contract, clf)
        del proto
    return cands


def _measure_bf16(cands, images, calib_set, fp32_holdout, bar, auto, progress) -> tuple[dict | None, str]:
    """(BF16's figure, recorded in the FP32 candidate's contract, or None; why nothing was
    measured). Native bf16 is also an ``auto`` candidate of its own (it runs the FP32 file);
    emulated bf16 is recorded with its speed and never a candidate; where OpenVINO computes
    f32 when told bf16 there is nothing to record."""
    fp32 = cands["fp32"]
    bf16_clf = choose_precision.bf16_classifier(fp32.data)
    ran = bf16_clf.runner.precision
    if ran not in ("bf16", BF16_EMULATED):
        bf16_clf.runner.close()
        _say(progress, f"OpenVINO computes {ran} on this CPU when told bf16: nothing to measure")
        return None, f"OpenVINO computes {ran} here when told bf16"
    if calib_set and fp32_holdout is None:
        fp32_holdout = fp32.classifier.predict(calib_set.holdout)
    ref = np.concatenate([fp32.classifier.predict(images)] + ([fp32_holdout] if calib_set else []))
    figure = choose_precision.measure_bf16(
        bf16_clf, images + (list(calib_set.holdout) if calib_set else []), ref, bar,
        "fp32 ONNX (ONNX Runtime CPU) on the verification photos" + (" + held-out calibration photos" if calib_set else ""))
    note = ""
    if ran == BF16_EMULATED:
        e = figure["emulated"] = choose_precision.emulated_speed(bf16_clf, fp32.data)
        note = (f"OpenVINO emulates bf16 here, {e['p50_ms_batch1']:.1f} ms p50 batch 1 against "
                f"{e['fp32_p50_ms_batch1']:.1f} ms in f32")
    cands["fp32"] = _with(fp32, replace(fp32.contract, parity={**fp32.parity, "bf16": figure}))
    _say(progress, choose_precision.describe_bf16(figure))
    if auto and ran == "bf16":
        cands["bf16"] = Candidate("bf16", b"", cands["fp32"].contract, bf16_clf)
    else:  # its compiled model (a copy of the weights) is not needed for choosing
        bf16_clf.runner.close()
        del bf16_clf
        release_memory()
    return figure, note


def _with(c: Candidate, contract: ModelContract) -> Candidate:
    """``c`` carrying ``contract`` (its bytes re-serialized with it)."""
    proto = onnx_load(c.data)
    convert.attach_contract(proto, contract)
    return Candidate(c.precision, proto.SerializeToString(), contract, c.classifier)


def _check_original(source, images, settled, progress) -> dict:
    """The model as given vs the copy that is converted (augmentation stripped, float32):
    stripping must not change predictions; float32 vs mixed precision moves them by about
    FP16's rounding, so that comparison uses FP16's gate."""
    from edge_classify.runtime.model import heads

    raw = verify.keras_reference(source.original, images, settled.preprocess)
    gate = FORMATS["fp16"] if any("float32" in c for c in source.changes) else FORMATS["fp32"]
    report = compare(heads.probabilities(raw, settled.head, settled.output), settled.reference,
                     atol=gate.atol, require=gate.require)
    _say(progress, f"the converted copy vs the model as given: {report.summary()} [{'ok' if report.passed else 'FAILED'}]")
    if not report.passed:
        raise EdgeClassifyError(
            f"the model prepared for conversion ({'; '.join(source.changes)}) disagrees with the model as given "
            f"({', '.join(report.failures)}); nothing was written", exit_code=EXIT_PARITY)
    return {"reference": "the Keras model as given", "changes": source.changes, **report.to_dict()}


def _int8(cands, calib_set, method, acts, min_agreement, auto, contract_for, provenance, fidelity, progress):
    """The INT8 candidate, gated on top-1 agreement with FP32 on held-out photos."""
    from edge_classify.runtime.classifier import Classifier

    fp32 = cands["fp32"]
    # The INT8 file is quantized from the graph with every exact rewrite: OpenVINO runs
    # the QDQ file faster with the strided 1x1 convolutions rewritten, the FP32 file
    # slower (graph_passes.py).
    source = onnx_load(fp32.data)
    rewrites = {**provenance["graph_rewrites"], **graph_passes.optimize(source, graph_passes.INT8_EXTRA)}
    q = quantize.onnx_to_int8(source.SerializeToString(), calib_set.calibrate, fp32.contract.preprocess,
                              convert.INPUT_NAME, method, acts, progress)
    del source
    int8_clf = Classifier(q, ON_CPU)
    holdout = calib_set.holdout
    fp32_holdout = fp32.classifier.predict(holdout)
    for name, c in list(cands.items()) + [("int8", Candidate("int8", q, fp32.contract, int8_clf))]:
        if name != "fp32":
            fidelity[name] = compare(fp32_holdout, c.classifier.predict(holdout)).fidelity()
    f8 = fidelity["int8"]
    passed = min_agreement is None or f8["top1_agreement"] >= min_agreement
    # Engines quantize differently: the runtime's `auto` runs this file on OpenVINO only
    # with OpenVINO's own figure (runtime/policy.unverified).
    other_engines = {}
    if "openvino" in MachineFacts().installed_engines():
        ov_int8 = Classifier(q, EngineOptions(engine="openvino"))
        other_engines["openvino"] = compare(fp32_holdout, ov_int8.predict(holdout)).fidelity()
        ov_int8.runner.close()
        del ov_int8
    truth = _truth(holdout, fp32.contract.labels)
    accuracy = None
    if truth is not None:  # held-out photos filed by class: accuracy, not only agreement
        accuracy = {"fp32": _accuracy(fp32_holdout, truth), "int8": _accuracy(int8_clf.predict(holdout), truth),
                    "images": len(truth), "truth": "the class folder each held-out photo is in"}
    parity = {
        "reference": "fp32 ONNX on held-out calibration images",
        **f8,
        **({"accuracy": accuracy} if accuracy else {}),
        "engine": "onnxruntime",
        "engines": other_engines,
        "min_agreement": min_agreement,
        "passed": passed,
        "quantization": {"format": "QDQ", "weights": "int8 per-channel symmetric", "activations": acts,
                         "bias": quantize.bias_kind(acts), "method": method, "calibration_images": len(calib_set.calibrate),
                         "heldout_images": [p.name for p in holdout]},
    }
    _say(progress, f"int8 vs fp32 on {f8['images']} held-out images: top-1 agreement {f8['top1_agreement']:.1%}, "
                   f"top-5 overlap {f8['top5_overlap']:.1%}, max|dp| {f8['max_abs_diff']:.3g}, "
                   f"mean|dp| {f8['mean_abs_diff']:.3g}")
    if accuracy:
        _say(progress, f"accuracy on those images: fp32 {accuracy['fp32']:.1%}, int8 {accuracy['int8']:.1%}")
    for name, fe in other_engines.items():
        _say(progress, f"int8 on {name}: top-1 agreement {fe['top1_agreement']:.1%}, "
                       f"top-5 overlap {fe['top5_overlap']:.1%}, max|dp| {fe['max_abs_diff']:.3g}")
    if not passed and not auto:
        raise EdgeClassifyError(
            f"INT8 top-1 agreement with FP32 is {f8['top1_agreement']:.3f}, below --min-agreement "
            f"{min_agreement}; nothing was written",
            hint="try --calib-method entropy or percentile, more calibration images, or keep FP32/FP16",
            exit_code=EXIT_PARITY,
        )
    contract = contract_for("int8", parity, {**provenance, "graph_rewrites": rewrites})
    proto = onnx_load(q)
    convert.attach_contract(proto, contract, doc=f"{contract.model.arch} int8 exported by edge-classify")
    return Candidate("int8", proto.SerializeToString(), contract, int8_clf), fp32_holdout


def _choose(cands, fidelity, bar, bf16, bf16_why, bf16_figure, prog, progress):
    """--precision auto: keep the fastest candidate that clears the bar (precision.py)."""
    names = list(cands)
    detail = f"fastest candidate with top-1 agreement >= {bar}"
    if "bf16" in cands:
        detail += f" (bf16: >= {max(bar, policy.BF16_BAR)})"
    with prog.stage("choose precision", detail):
        latency = choose_precision.latency_p50_ms({p: c.classifier for p, c in cands.items()})
        agreement = {"fp32": 1.0, **{p: fidelity[p]["top1_agreement"] for p in names[1:]}}
        floors = {"bf16": bf16_figure["bar"]} if bf16_figure else {}
        chosen, reason = choose_precision.choose(agreement, latency, bar, floors)
        for p in names:
            label = choose_precision.BF16_LABEL if p == "bf16" else p
            _say(progress, f"{label}: {latency[p]:.1f} ms p50, top-1 agreement {agreement[p]:.3f}")
        if "bf16" not in cands:
            _say(progress, f"bf16: not a candidate: {bf16_why}")
        _say(progress, f"chose {chosen}: {reason}")
        selection = {"chosen": chosen, "reason": reason, "agreement_bar": bar,
                     "candidates": {p: {"p50_ms_batch1": latency[p], "top1_agreement": agreement[p],
                                        **({"fidelity": fidelity[p]} if p in fidelity else {}),
                                        **({"runs": "the FP32 file with OpenVINO in BF16"} if p == "bf16" else {})}
                                    for p in names},
                     "measured_on": platform.processor() or platform.machine()}
        if "bf16" not in cands:
            selection["not_candidates"] = {"bf16": bf16_why}
        written = "fp32" if chosen == "bf16" else chosen  # BF16 runs the FP32 file
        c = cands[written]
        parity = c.parity
        if written == "fp32" and chosen != "bf16" and not bf16 and bf16_figure and bf16_figure["passed"]:
            # BF16 passed but lost on speed: a passing figure would let the runtime run
            # the BF16 that this machine measured slower. Its numbers stay in the selection.
            parity = {k: v for k, v in parity.items() if k != "bf16"}
        if "bf16" not in (parity or {}):
            bf16_figure = None  # ExportResult.bf16: the figure the written model carries
        kept = _with(c, replace(c.contract, provenance={**c.contract.provenance, "selection": selection},
                                parity=parity))
        if "bf16" in cands:
            cands["bf16"].classifier.runner.close()
    return {written: kept}, selection, bf16_figure
