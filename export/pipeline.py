"""``export_model``: an ``ExportRequest`` (request.py) through its stages, with progress,
timings and no partial files.

build model -> convert to ONNX -> (each Keras-gated format: FP16) -> verify against Keras ->
(each FP32-gated format: INT8, BF16) -> choose precision (auto) -> write. The model comes
from a source (sources.py: a keras.applications arch, or the user's own file), its contract
is settled from the source's defaults and the user's flags (settle.py), and the stages
between come from the format table (formats.py: one row each, its stage in ``_STAGES``).
Nothing is written to the target paths until every model has passed its gate; writes are
atomic. Progress goes to the reporter the caller passes (apps/shell.py's ``Progress``);
without one the export is silent.

BF16 writes no file of its own: it is a way to run the FP32 file (OpenVINO's bf16 hint on a
CPU with native BF16). ``bf16=True`` measures its fidelity against the FP32 model and
stores the figure in the FP32 model's contract (``parity["bf16"]``), which is what lets the
runtime run BF16 at all (``runtime/policy.compute_precision``).

Fast decode (big JPEGs decoded at 1/2-1/8 scale) is measured in the verify stage on the FP32
model, against exact decoding on camera-size versions of the photos (fast_decode.py); every
file written carries the figure as ``parity["fast_decode"]``, which is what lets the
runtime's ``--decode auto`` use it.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import gc
import platform
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_classify.runtime import __version__
from edge_classify.runtime.apps.shell import Progress
from edge_classify.runtime.cache.paths import variant_path
from edge_classify.runtime.engines import policy
from edge_classify.runtime.engines.options import EngineOptions
from edge_classify.runtime.engines.runners import BF16_EMULATED
from edge_classify.runtime.errors import EXIT_PARITY, EXIT_USAGE, EdgeClassifyError, first_line
from edge_classify.runtime.host.facts import MachineFacts
from edge_classify.runtime.images.files import images_in
from edge_classify.runtime.model.compare import compare
from edge_classify.runtime.model.contract import LabelSet, ModelContract, ModelInfo

from . import convert, fast_decode, graph_passes, keras_model, partials, quantize, sources, user_model, verify
from . import labels as label_files
from . import precision as choose_precision
from .formats import FORMATS, TargetFormat
from .precision import DEFAULT_AGREEMENT_BAR
from .request import ExportRequest
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


def export_model(request: ExportRequest, progress: Progress | None = None,
                 facts: MachineFacts | None = None) -> ExportResult:
    """Export a Keras classifier as ``request`` says: FP32 always, FP16 / INT8 / BF16 on request;
    with ``precision="auto"`` only the chosen model is written, at ``request.output``.

    The model is ``request.keras_model`` (the user's .keras / .h5 / SavedModel, with
    ``custom_objects`` Python files for its custom layers) or else keras.applications'
    ``arch`` with ``weights``. The contract's preprocessing, resize, input size, head and
    labels come from the model where it shows them, and from the request where it does not
    or the user says otherwise (settle.py). BF16 writes no file: ``bf16`` measures it and
    records the figure in the FP32 model; where it cannot be measured nothing fails and
    ``ExportResult.bf16_not_measured`` says why. ``progress``: the reporter of the stages
    (default: silent). ``facts``: the machine, when not this one (tests).
    """
    return _Export(request, progress, facts).run()


class _Export:
    """One export's state, stage by stage."""

    def __init__(self, request: ExportRequest, progress: Progress | None, facts: MachineFacts | None):
        req = self.req = request
        self.facts = facts or MachineFacts()
        self.prog = progress or Progress("export-model", enabled=False)
        self.result = ExportResult()
        # Fail fast, before importing TensorFlow, on what cannot work.
        if req.labels is not None and req.labels_from_dir is not None:
            raise EdgeClassifyError("give --labels or --labels-from-dir, not both", exit_code=EXIT_USAGE)
        self.user_path = user_model.check_path(req.keras_model) if req.keras_model is not None else None
        if self.user_path is None and req.arch not in keras_model.ARCHS:
            raise EdgeClassifyError(f"unknown architecture {req.arch!r}",
                                    hint=f"choose from {', '.join(keras_model.ARCHS)}", exit_code=EXIT_USAGE)
        self.label_set, self.labels_flag = None, "--labels"
        if req.labels is not None:
            self.label_set = label_files.from_file(req.labels)
        elif req.labels_from_dir is not None:
            self.label_set = label_files.from_dir(req.labels_from_dir)
            self.labels_flag = f"--labels-from-dir {req.labels_from_dir}"
        self.wspec = resolve(req.weights, req.arch, req.seed) if self.user_path is None else None
        wants_int8, wants_bf16 = req.wants(FORMATS["int8"]), req.wants(FORMATS["bf16"])
        uncalibrated = [f.name.upper() for f in FORMATS.values() if f.needs_calibration and req.wants(f)]
        if uncalibrated and not req.calib:
            raise EdgeClassifyError(f"{' and '.join(uncalibrated)} needs calibration images: pass --calib DIR or "
                                    "--calib 'GLOB'", exit_code=EXIT_USAGE)
        self.calib_set = quantize.split(req.calib, req.calib_max) if req.calib and (wants_int8 or req.bf16) else None
        self.bf16_ok, self.bf16_why = choose_precision.bf16_support(self.facts) if wants_bf16 else (False, "")
        # --bf16 without native BF16: OpenVINO may still emulate it (AVX-512); measured and
        # recorded as emulated, never a candidate (_bf16).
        measure_bf16 = self.bf16_ok or (req.bf16 and "openvino" in self.facts.installed_engines())
        self.keras_formats = req.targets("keras")
        self.fp32_formats = [f for f in req.targets("fp32") if f.name != "bf16" or measure_bf16]
        self.prog.plan(["build model"] + [f.stage for f in self.keras_formats] + ["verify against Keras"]
                       + [f.stage for f in self.fp32_formats] + (["choose precision"] if req.auto else []) + ["write"])
        self.images = _verification_images(req.verify_images, req.labels_from_dir)
        self.bar = DEFAULT_AGREEMENT_BAR if req.min_agreement is None else req.min_agreement
        self.fidelity: dict[str, dict] = {}
        self.fp32_holdout = None
        self.bf16_figure = None
        self.selection = None
        self.fast_decode_figure = None

    def run(self) -> ExportResult:
        req, prog = self.req, self.prog
        # What earlier exports killed mid-way (kill -9, OOM) left: partial models beside the
        # output, INT8 work folders in the temp dir.
        partials.sweep_stale(Path(req.output).parent)
        partials.sweep_stale(tempfile.gettempdir())
        what = self.user_path.name if self.user_path is not None else f"{req.arch}, weights {req.weights}"
        with prog.stage("build model", what):
            self._build()
        fp32 = FORMATS["fp32"]
        with prog.stage(fp32.stage, f"tf2onnx, opset {req.opset}, batch {req.static_batch or 'dynamic'}"):
            self._convert()
        # The Keras model has served its purpose (reference outputs and ONNX graph exist).
        # Dropping it and trimming the heap: RSS 2770-2830 MiB -> 890-900 MiB before FP16/verify.
        del self.source
        release_memory()
        for fmt in self.keras_formats[1:]:
            with prog.stage(fmt.stage, fmt.what):
                _STAGES[fmt.name](self)
        with prog.stage("verify against Keras",
                        f"{len(self.images)} real photos, {'/'.join(f.name for f in self.keras_formats)}; "
                        "fast decode on camera-size versions"):
            self._verify()
        for fmt in self.fp32_formats:
            with prog.stage(fmt.stage, self._detail(fmt)):
                _STAGES[fmt.name](self)
        if req.auto:
            self._choose()
        self.result.weights, self.result.bf16 = self.provenance["weights"], self.bf16_figure
        wanted_bf16 = req.bf16 or req.auto
        self.result.bf16_not_measured = None if self.bf16_figure is not None or not wanted_bf16 else self.bf16_why
        with prog.stage("write", str(req.output)):
            self._write()
        self.result.timings_s = prog.timings
        return self.result

    def _detail(self, fmt: TargetFormat) -> str:
        c = self.calib_set
        if fmt.name == "int8":
            return (f"{len(c.calibrate)} calibration + {len(c.holdout)} held-out images of {c.found}, "
                    f"{self.req.calib_method}, per-channel, {self._activations()} activations")
        n = len(self.images) + (len(c.holdout) if c else 0)
        return (f"the FP32 model on OpenVINO with the bf16 hint, vs FP32 on {n} photos ({len(self.images)} "
                "verification" + (f" + {len(c.holdout)} held-out)" if c else ")"))

    def _activations(self) -> str:
        return choose_precision.int8_activations(self.req.int8_activations)

    # --- the stages ------------------------------------------------------------------
    def _build(self) -> None:
        req, prog = self.req, self.prog
        self.source = (sources.from_file(self.user_path, req.custom_objects, req.allow_lambda)
                       if self.user_path is not None else sources.from_application(req.arch, self.wspec))
        for change in self.source.changes:
            prog.say(change)
        settled = self.settled = settle(
            self.source, self.images, preprocess=req.preprocess, resize=req.resize, input_size=req.input_size,
            head=req.head, multi_label=req.multi_label, threshold=req.threshold, labels=self.label_set,
            labels_flag=self.labels_flag)
        for line in settled.lines:
            prog.say(line)
        for line in settled.warnings:
            print(f"export-model: warning: {line}", file=sys.stderr, flush=True)
        self.result.decisions, self.result.warnings, self.result.name = settled.lines, settled.warnings, self.source.name
        self.provenance = {
            **self.source.provenance,
            "opset": req.opset,
            "tools": tool_versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        self.original_check = None
        if self.source.original is not None:  # augmentation stripped / rebuilt in float32: same predictions?
            self.original_check = self._check_original()

    def _convert(self) -> None:
        req = self.req
        try:
            fp32 = convert.keras_to_onnx(self.source.model, self.settled.preprocess.input_size, req.static_batch,
                                         req.opset)
        except Exception as exc:  # tf2onnx raises assorted types (unsupported opset, ops)
            raise EdgeClassifyError(f"ONNX conversion failed: {first_line(exc)}",
                                    hint="try the default --opset 17") from None
        if req.converted_out is not None:  # as tf2onnx made it: what a peer would start from
            convert.atomic_write(Path(req.converted_out), fp32.SerializeToString())
        # Exact rewrites (bit-identical outputs) that both engines run faster (graph_passes.py);
        # the parity check below still judges the result against Keras.
        self.provenance["graph_rewrites"] = graph_passes.optimize(fp32)
        fired = ", ".join(f"{k} x{n}" for k, n in self.provenance["graph_rewrites"].items() if n) or "none applied"
        self.prog.say(f"exact graph rewrites: {fired}")
        self.protos = {"fp32": fp32}

    def _fp16(self) -> None:
        self.protos["fp16"] = convert.onnx_to_fp16(self.protos["fp32"])

    def _contract(self, precision: str, parity: dict | None, prov: dict | None = None) -> ModelContract:
        s = self.settled
        info = ModelInfo(self.result.name, precision, convert.INPUT_NAME, convert.OUTPUT_NAME, s.output,
                         len(s.labels), self.req.static_batch, s.head, s.threshold)
        if parity is not None and self.fast_decode_figure is not None:
            parity = {**parity, "fast_decode": self.fast_decode_figure}
        return ModelContract(s.preprocess, s.labels, info, prov or self.provenance, parity)

    def _verify(self) -> None:
        """Each Keras-gated format, run end to end by the runtime, against Keras' reference."""
        from edge_classify.runtime.classifier import Classifier

        s, images = self.settled, self.images
        self.cands: dict[str, Candidate] = {}
        for fmt in self.keras_formats:
            proto = self.protos.pop(fmt.name)
            contract = self._contract(fmt.name, None)
            convert.attach_contract(proto, contract, doc=f"{contract.model.arch} {fmt.name} exported by edge-classify")
            clf = Classifier(proto.SerializeToString(), ON_CPU)
            report = verify.check(s.reference, clf.predict(images), fmt.name)
            self.prog.say(f"{fmt.name}: {report.summary()} [{'ok' if report.passed else 'FAILED'}]")
            if fmt.name == "fp32" and report.passed:
                self._fast_decode(clf)
            parity = {"reference": "keras load_img + img_to_array + preprocessing + predict"
                                   + (" (tf.image.resize bilinear)" if s.preprocess.resize == "bilinear" else ""),
                      "image_files": [p.name for p in images], **report.to_dict(),
                      **({"original": self.original_check} if self.original_check else {})}
            contract = self._contract(fmt.name, parity)
            convert.attach_contract(proto, contract)
            self.cands[fmt.name] = Candidate(fmt.name, proto.SerializeToString(), contract, clf)
            del proto
        del self.protos
        # The candidates' bytes are what is written and quantized from here on. With the warm-up
        # change below: INT8 stage peak 2091-2107 vs 2163-2265 MiB (--fp16 --int8, ResNet50).
        failed = {p: c.parity for p, c in self.cands.items() if not c.parity["passed"]}
        if failed:
            detail = "; ".join(f"{p}: {', '.join(r['failures'])}" for p, r in failed.items())
            raise EdgeClassifyError(
                f"exported model disagrees with Keras ({detail}); nothing was written",
                hint="this is a conversion problem; try another --opset, and report it with the numbers above",
                exit_code=EXIT_PARITY,
            )

    def _fast_decode(self, clf) -> None:
        """Fast decode's figure (fast_decode.py), measured on the FP32 model; later contracts
        carry it (``_contract``). A failure to measure only leaves the figure out."""
        # Calibration photos count too: INT8 is calibrated on them, decoding is not.
        photos = list(self.images) + (list(self.calib_set.holdout) + list(self.calib_set.calibrate)
                                      if self.calib_set else [])
        try:
            figure = fast_decode.measure(clf.run, self.settled.preprocess, photos)
        except Exception as exc:  # never an export failure: without a figure, auto decodes exactly
            self.prog.say(f"fast decode: not measured ({type(exc).__name__}: {first_line(exc)}); "
                          "--decode auto will decode exactly")
            return
        if figure is None:
            self.prog.say("fast decode: no camera size fits this input size; --decode auto will decode exactly")
            return
        self.fast_decode_figure = {**figure, "model": "fp32"}
        self.prog.say(fast_decode.describe(figure) + f" ({figure['seconds']:.1f} s)")

    def _int8(self) -> None:
        """The INT8 candidate, gated on top-1 agreement with FP32 on held-out photos."""
        from edge_classify.runtime.classifier import Classifier

        req, cands, calib_set, acts = self.req, self.cands, self.calib_set, self._activations()
        fp32 = cands["fp32"]
        # The INT8 file is quantized from the graph with every exact rewrite: OpenVINO runs
        # the QDQ file faster with the strided 1x1 convolutions rewritten, the FP32 file
        # slower (graph_passes.py).
        source = onnx_load(fp32.data)
        rewrites = {**self.provenance["graph_rewrites"], **graph_passes.optimize(source, graph_passes.INT8_EXTRA)}
        # BatchNorm folded and the head kept float (quantize.prepare: measured more faithful).
        prepared = quantize.prepare(source)
        q = quantize.onnx_to_int8(source.SerializeToString(), calib_set.calibrate, fp32.contract.preprocess,
                                  convert.INPUT_NAME, req.calib_method, acts, self.prog, prepared["exclude"])
        del source
        int8_clf = Classifier(q, ON_CPU)
        holdout = calib_set.holdout
        self.fp32_holdout = fp32_holdout = fp32.classifier.predict(holdout)
        for name, c in list(cands.items()) + [("int8", Candidate("int8", q, fp32.contract, int8_clf))]:
            if name != "fp32":
                self.fidelity[name] = compare(fp32_holdout, c.classifier.predict(holdout)).fidelity()
        f8 = self.fidelity["int8"]
        passed = req.min_agreement is None or f8["top1_agreement"] >= req.min_agreement
        # Engines quantize differently: the runtime's `auto` runs this file on OpenVINO only
        # with OpenVINO's own figure (runtime/engines/policy.unverified).
        other_engines = {}
        if "openvino" in self.facts.installed_engines():
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
            "min_agreement": req.min_agreement,
            "passed": passed,
            "quantization": {"format": "QDQ", "weights": "int8 per-channel symmetric", "activations": acts,
                             "bias": quantize.bias_kind(acts), "method": req.calib_method,
                             "batchnorm_folded": prepared["batchnorm_folded"], "float_ops": prepared["float_ops"],
                             "calibration_images": len(calib_set.calibrate),
                             "heldout_images": [p.name for p in holdout]},
        }
        say = self.prog.say
        say(f"int8 vs fp32 on {f8['images']} held-out images: top-1 agreement {f8['top1_agreement']:.1%}, "
            f"top-5 overlap {f8['top5_overlap']:.1%}, max|dp| {f8['max_abs_diff']:.3g}, "
            f"mean|dp| {f8['mean_abs_diff']:.3g}")
        if accuracy:
            say(f"accuracy on those images: fp32 {accuracy['fp32']:.1%}, int8 {accuracy['int8']:.1%}")
        for name, fe in other_engines.items():
            say(f"int8 on {name}: top-1 agreement {fe['top1_agreement']:.1%}, "
                f"top-5 overlap {fe['top5_overlap']:.1%}, max|dp| {fe['max_abs_diff']:.3g}")
        if not passed and not req.auto:
            raise EdgeClassifyError(
                f"INT8 top-1 agreement with FP32 is {f8['top1_agreement']:.3f}, below --min-agreement "
                f"{req.min_agreement}; nothing was written",
                hint="try --calib-method entropy or percentile, more calibration images, or keep FP32/FP16",
                exit_code=EXIT_PARITY,
            )
        contract = self._contract("int8", parity, {**self.provenance, "graph_rewrites": rewrites})
        proto = onnx_load(q)
        convert.attach_contract(proto, contract, doc=f"{contract.model.arch} int8 exported by edge-classify")
        cands["int8"] = Candidate("int8", proto.SerializeToString(), contract, int8_clf)

    def _bf16(self) -> None:
        """BF16's figure, recorded in the FP32 candidate's contract. Native bf16 is also an
        ``auto`` candidate of its own (it runs the FP32 file); emulated bf16 is recorded with its
        speed and never a candidate; where OpenVINO computes f32 when told bf16 there is
        nothing to record, and the reason says so."""
        cands, calib_set, images = self.cands, self.calib_set, self.images
        fp32 = cands["fp32"]
        bf16_clf = choose_precision.bf16_classifier(fp32.data)
        ran = bf16_clf.runner.precision
        if ran not in ("bf16", BF16_EMULATED):
            bf16_clf.runner.close()
            self.prog.say(f"OpenVINO computes {ran} on this CPU when told bf16: nothing to measure")
            self._not_bf16(f"OpenVINO computes {ran} here when told bf16")
            return
        if calib_set and self.fp32_holdout is None:
            self.fp32_holdout = fp32.classifier.predict(calib_set.holdout)
        ref = np.concatenate([fp32.classifier.predict(images)] + ([self.fp32_holdout] if calib_set else []))
        figure = choose_precision.measure_bf16(
            bf16_clf, images + (list(calib_set.holdout) if calib_set else []), ref, self.bar,
            "fp32 ONNX (ONNX Runtime CPU) on the verification photos"
            + (" + held-out calibration photos" if calib_set else ""))
        if ran == BF16_EMULATED:
            e = figure["emulated"] = choose_precision.emulated_speed(bf16_clf, fp32.data)
            self._not_bf16(f"OpenVINO emulates bf16 here, {e['p50_ms_batch1']:.1f} ms p50 batch 1 against "
                           f"{e['fp32_p50_ms_batch1']:.1f} ms in f32")
        cands["fp32"] = _with(fp32, replace(fp32.contract, parity={**fp32.parity, "bf16": figure}))
        self.prog.say(choose_precision.describe_bf16(figure))
        self.fidelity["bf16"] = self.bf16_figure = figure
        if self.req.auto and ran == "bf16":
            cands["bf16"] = Candidate("bf16", b"", cands["fp32"].contract, bf16_clf)
        else:  # its compiled model (a copy of the weights) is not needed for choosing
            bf16_clf.runner.close()
            del bf16_clf
            release_memory()

    def _not_bf16(self, why: str) -> None:
        self.bf16_why = "; ".join(w for w in (self.bf16_why, why) if w)

    def _choose(self) -> None:
        """--precision auto: keep the fastest candidate that clears the bar (precision.py)."""
        cands, fidelity, bar, say = self.cands, self.fidelity, self.bar, self.prog.say
        names = list(cands)
        detail = f"fastest candidate with top-1 agreement >= {bar}"
        if "bf16" in cands:
            detail += f" (bf16: >= {max(bar, policy.BF16_BAR)})"
        with self.prog.stage("choose precision", detail):
            latency = choose_precision.latency_p50_ms({p: c.classifier for p, c in cands.items()})
            agreement = {"fp32": 1.0, **{p: fidelity[p]["top1_agreement"] for p in names[1:]}}
            floors = {"bf16": self.bf16_figure["bar"]} if self.bf16_figure else {}
            chosen, reason = choose_precision.choose(agreement, latency, bar, floors)
            for p in names:
                label = choose_precision.BF16_LABEL if p == "bf16" else p
                say(f"{label}: {latency[p]:.1f} ms p50, top-1 agreement {agreement[p]:.3f}")
            if "bf16" not in cands:
                say(f"bf16: not a candidate: {self.bf16_why}")
            say(f"chose {chosen}: {reason}")
            selection = {"chosen": chosen, "reason": reason, "agreement_bar": bar,
                         "candidates": {p: {"p50_ms_batch1": latency[p], "top1_agreement": agreement[p],
                                            **({"fidelity": fidelity[p]} if p in fidelity else {}),
                                            **({"runs": "the FP32 file with OpenVINO in BF16"} if p == "bf16" else {})}
                                        for p in names},
                         "measured_on": platform.processor() or platform.machine()}
            if "bf16" not in cands:
                selection["not_candidates"] = {"bf16": self.bf16_why}
            written = "fp32" if chosen == "bf16" else chosen  # BF16 runs the FP32 file
            c = cands[written]
            parity = c.parity
            if written == "fp32" and chosen != "bf16" and not self.req.bf16 and self.bf16_figure \
                    and self.bf16_figure["passed"]:
                # BF16 passed but lost on speed: a passing figure would let the runtime run
                # the BF16 that this machine measured slower. Its numbers stay in the selection.
                parity = {k: v for k, v in parity.items() if k != "bf16"}
            if "bf16" not in (parity or {}):
                self.bf16_figure = None  # ExportResult.bf16: the figure the written model carries
            kept = _with(c, replace(c.contract, provenance={**c.contract.provenance, "selection": selection},
                                    parity=parity))
            if "bf16" in cands:
                cands["bf16"].classifier.runner.close()
        self.cands, self.selection = {written: kept}, selection

    def _write(self) -> None:
        from edge_classify.runtime.classifier import Classifier

        req, result, auto = self.req, self.result, self.req.auto
        written = [(c.precision, c.data, c.parity) for c in self.cands.values() if FORMATS[c.precision].writes_file]
        # Warm the runtime's optimised-graph cache so the first edge-classify is a fast one,
        # once the models in memory are gone (the files are what it reads): write stage
        # peak 1987-2078 vs 2154-2187 MiB, RSS after it 1130 vs 2170 MiB (--fp16 --int8).
        self.cands.clear()
        release_memory()
        for precision_name, data, parity in written:
            path = req.output if precision_name == "fp32" or auto else variant_path(req.output, precision_name)
            convert.atomic_write(path, data)
            result.files.append(ExportedFile(path, precision_name, len(data), parity, self.selection if auto else None))
        del written, data
        release_memory()
        # Likewise the engine choice: where two engines are installed, `auto` measures the
        # first runs of a model on this machine (runtime/engines/policy.py); do them now, on
        # the CPU engines (CPU_ONLY: never a TensorRT build during an export).
        for f in result.files:
            for _ in range(policy.SAMPLES):
                clf = Classifier(f.path, facts=CPU_ONLY)
                if not clf.report.engine_choice.fresh:
                    break
            if len(CPU_ONLY.installed_engines()) > 1:
                self.prog.say(f"{f.path.name}: edge-classify runs it on {clf.runner.engine} on this CPU "
                              f"({clf.report.engine_choice.reason.split(': ', 1)[-1]})")
            del clf

    def _check_original(self) -> dict:
        """The model as given vs the copy that is converted (augmentation stripped, float32):
        stripping must not change predictions; float32 vs mixed precision moves them by about
        FP16's rounding, so that comparison uses FP16's gate."""
        from edge_classify.runtime.model import heads

        source, settled = self.source, self.settled
        raw = verify.keras_reference(source.original, self.images, settled.preprocess)
        gate = FORMATS["fp16"] if any("float32" in c for c in source.changes) else FORMATS["fp32"]
        report = compare(heads.probabilities(raw, settled.head, settled.output), settled.reference,
                         atol=gate.atol, require=gate.require)
        self.prog.say(f"the converted copy vs the model as given: {report.summary()} "
                      f"[{'ok' if report.passed else 'FAILED'}]")
        if not report.passed:
            raise EdgeClassifyError(
                f"the model prepared for conversion ({'; '.join(source.changes)}) disagrees with the model as given "
                f"({', '.join(report.failures)}); nothing was written", exit_code=EXIT_PARITY)
        return {"reference": "the Keras model as given", "changes": source.changes, **report.to_dict()}


# Each format's stage beyond the FP32 conversion (formats.py names it): a new row, a new entry.
_STAGES = {"fp16": _Export._fp16, "int8": _Export._int8, "bf16": _Export._bf16}


def _with(c: Candidate, contract: ModelContract) -> Candidate:
    """``c`` carrying ``contract`` (its bytes re-serialized with it)."""
    proto = onnx_load(c.data)
    convert.attach_contract(proto, contract)
    return Candidate(c.precision, proto.SerializeToString(), contract, c.classifier)


