"""``export-model``: a thin command line over ``export_model``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_classify.runtime import __version__
from edge_classify.runtime.cache.paths import default_model_path
from edge_classify.runtime.apps import shell
from edge_classify.runtime.errors import EXIT_OK, exit_codes_help

from .keras_head import HEAD_CHOICES
from .keras_model import ARCHS

EPILOG = """\
examples:
  export-model                                   ResNet50, ImageNet weights, default location
  export-model --keras-model my.keras --labels-from-dir data/train -o my.onnx   your own fine-tuned model
  export-model --keras-model my.keras --labels labels.txt --resize bilinear -o my.onnx
                                                 trained with image_dataset_from_directory (bilinear resize)
  export-model --keras-model tags.keras --multi-label --threshold 0.4 --labels tags.txt -o tags.onnx
  export-model --arch mobilenetv2 --weights imagenet -o mnv2.onnx   another keras.applications model
  export-model --fp16 -o models/r50.onnx         also writes models/r50.fp16.onnx
  export-model --arch resnet101 --static-batch 1 -o r101.onnx   fixed batch for TensorRT
  export-model --weights ~/resnet50_weights_tf_dim_ordering_tf_kernels.h5   offline
  export-model --weights random -o smoke.onnx    smoke test, meaningless predictions
  export-model --int8 --calib photos/ --min-agreement 0.98   INT8 too, gated on fidelity
  export-model --precision auto --calib 'photos/*.jpg'       fastest precision that keeps top-1
  export-model --bf16 --calib photos/            measure BF16 (OpenVINO) and record it in the FP32 model

BF16 is a precision of its own, never a silent substitute: there is no BF16 file, BF16 runs the
FP32 file with OpenVINO on a CPU with native BF16 (AMX-BF16 / AVX512-BF16), and edge-classify does
so only for a model whose export measured BF16's top-1 agreement with FP32 and found it >= the bar
(--bf16, or --precision auto where BF16 was chosen). Without OpenVINO, or on a CPU where OpenVINO
computes f32 when told bf16 (AVX2), --bf16 says so and records nothing (not an error). On an AVX-512
CPU without native BF16 OpenVINO emulates bf16: --bf16 measures that, with its speed against f32,
and records it as emulated, a figure that never passes. The runtime then runs the model in FP32.

Your own model: --keras-model takes a .keras file, a full-model .h5 or a SavedModel folder. What the
file shows is read from it: the input size, the final activation (softmax, sigmoid, none = logits),
in-model normalization (Rescaling/Normalization: preprocessing defaults to raw) and a
keras.applications backbone (its preprocess_input is the default). Say the rest with --preprocess,
--resize, --head and --labels / --labels-from-dir; the export says what it decided and why.

Then: edge-classify IMG (reads the default location unless --model is given).

""" + exit_codes_help("export-model") + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export-model",
        description="Export a Keras image classifier (keras.applications or your own fine-tuned model) to a "
                    "self-describing ONNX model, checked against Keras.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arch", default=None, choices=list(ARCHS), metavar="ARCH",
                   help=f"keras.applications model to export: {', '.join(ARCHS)} (default: resnet50)")
    own = p.add_argument_group("your own model")
    own.add_argument("--keras-model", metavar="PATH", default=None,
                     help="export this Keras model (.keras, full-model .h5, or a SavedModel folder) instead of --arch")
    own.add_argument("--custom-objects", metavar="FILE.py", action="append", default=None,
                     help="Python file defining the model's custom layers/functions (or a CUSTOM_OBJECTS dict); "
                          "repeatable")
    own.add_argument("--allow-lambda", action="store_true",
                     help="load Lambda layers (Keras runs Python code stored in the file: only for files you trust)")
    own.add_argument("--labels", metavar="FILE", default=None,
                     help="class names in output order: one per line, or a JSON list")
    own.add_argument("--labels-from-dir", metavar="DIR", default=None,
                     help="class names = DIR's sorted subfolder names (the order image_dataset_from_directory "
                          "assigns); also the default verification photos")
    own.add_argument("--preprocess", metavar="MODE", default=None,
                     help="how pixels were normalized in training: caffe | tf | torch (keras preprocess_input "
                          "modes) | raw (pixels 0..255: the model normalizes inside) | mean=R,G,B:std=R,G,B (RGB, "
                          "0..255 scale); default: the model's own (raw when it has Rescaling/Normalization, else "
                          "its keras.applications backbone's mode)")
    own.add_argument("--resize", choices=["nearest", "bilinear"], default=None,
                     help="nearest = keras.utils.load_img's default (bit-exact with PIL); bilinear = "
                          "tf.image.resize, what image_dataset_from_directory uses (default: nearest)")
    own.add_argument("--input-size", metavar="HxW", type=_size, default=None,
                     help="the input size, needed only when the model's input shape leaves it open")
    own.add_argument("--head", choices=list(HEAD_CHOICES), default=None,
                     help="what the output holds when the last layer does not show it: softmax, logits (no "
                          "activation; softmax applied at run time), sigmoid (multi-label), sigmoid-logits")
    own.add_argument("--multi-label", action="store_true",
                     help="classes are independent (sigmoid per label): edge-classify lists every label above "
                          "--threshold; detected by itself from a sigmoid final layer")
    own.add_argument("--threshold", type=float, default=None, metavar="P",
                     help="multi-label: the default score above which a label is reported (default 0.5)")
    p.add_argument("--weights", default=None, metavar="imagenet|random|PATH",
                   help="imagenet (Keras' download and cache, default), random (smoke test), "
                        "or a local Keras weights file (.h5 / .weights.h5)")
    p.add_argument("--seed", type=int, default=None, help="seed for --weights random (default: 0)")
    p.add_argument("--fp16", action="store_true", help="also write an FP16 model (<out>.fp16.onnx, float32 I/O)")
    p.add_argument("--int8", action="store_true",
                   help="also write a static INT8 model (<out>.int8.onnx, QDQ) calibrated on --calib images")
    p.add_argument("--calib", metavar="DIR|GLOB", default=None,
                   help="real photos for INT8 calibration; 20%% are held out to measure fidelity")
    p.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default="minmax",
                   help="INT8 calibration method (default: minmax)")
    p.add_argument("--calib-max", type=int, default=200, metavar="N",
                   help="use at most N calibration images, sampled with a fixed seed (default: 200)")
    p.add_argument("--int8-activations", choices=["auto", "s8", "u8"], default="auto",
                   help="INT8 activation type: u8 is fastest on x86 CPUs, s8 (symmetric) is what TensorRT "
                        "needs; auto = u8 on x86-64, s8 elsewhere")
    p.add_argument("--min-agreement", type=float, default=None, metavar="X",
                   help="fail (writing nothing) if INT8 top-1 agreement with FP32 on held-out images is below X; "
                        "with --precision auto, the bar candidates must clear (default 0.99)")
    p.add_argument("--precision", choices=["fixed", "auto"], default="fixed",
                   help="auto: build FP16 and INT8 candidates (and BF16 where the CPU has native BF16 and "
                        "OpenVINO is installed), measure fidelity and latency here, and write only the fastest one "
                        "that clears --min-agreement (needs --calib); a BF16 win writes the FP32 file with its "
                        "passing BF16 figure")
    p.add_argument("--bf16", action="store_true",
                   help="measure BF16 (the FP32 model run by OpenVINO in bf16) against FP32 on the verification "
                        "photos (+ held-out --calib photos if given) and record the figure in the FP32 model; where "
                        "it passes (>= --min-agreement, at least 0.99) edge-classify may run that model in BF16 with "
                        "OpenVINO on CPUs with native BF16. No BF16 file is written. Needs OpenVINO; on a CPU without "
                        "native BF16 it says so, and records emulated bf16 only as emulated (never passing)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--static-batch", type=int, default=None, metavar="N",
                   help="fix the batch dimension to N (TensorRT-friendly); default: dynamic")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help=f"output .onnx path (default: {default_model_path()}, which edge-classify reads)")
    p.add_argument("--verify-images", type=Path, nargs="+", default=None, metavar="IMG",
                   help="photos for the parity check (default: the package's sample photos)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    try:
        size = (int(h), int(w)) if sep else (int(h), int(h))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW (e.g. 224x224)") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive")
    return size


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.static_batch is not None and args.static_batch < 1:
        parser.error("--static-batch must be at least 1")
    if args.keras_model is not None and (args.arch or args.weights):
        parser.error("--keras-model brings its own architecture and weights: drop --arch/--weights")
    args.arch, args.weights = args.arch or "resnet50", args.weights or "imagenet"
    if args.seed is not None and args.weights != "random":
        parser.error("--seed only applies to --weights random")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be between 0 and 1")
    if args.labels and args.labels_from_dir:
        parser.error("give --labels or --labels-from-dir, not both")
    if args.min_agreement is not None and not 0.0 <= args.min_agreement <= 1.0:
        parser.error("--min-agreement must be between 0 and 1")
    if (args.int8 or args.precision == "auto") and not args.calib:
        parser.error("--int8 and --precision auto need --calib DIR|GLOB (real photos for calibration)")
    if args.calib_max < 10:
        parser.error("--calib-max must be at least 10")
    out = args.output or default_model_path()
    return shell.run("export-model", lambda: _run(args, out),
                     interrupted="interrupted; nothing partial was left at the output path")


def _run(args, out) -> int:
    from .pipeline import export_model
    from .request import ExportRequest

    progress = shell.Progress("export-model", enabled=not args.quiet)
    result = export_model(ExportRequest.from_args(args, out), progress)
    from .precision import BF16_LABEL, describe_bf16

    what = args.keras_model if args.keras_model else f"{args.arch} (weights: {args.weights})"
    print(f"exported {what} in {sum(result.timings_s.values()):.1f} s")
    if args.quiet:  # otherwise the progress lines said it already
        for line in result.decisions:
            print(f"  {line}")
    for f in result.files:
        p = f.parity
        if "topk_identical" in p:
            check = f"vs Keras on {p['images']} photos: max|dp| {p['max_abs_diff']:.2e}, " \
                    f"top-1 {p['top1_agreement']:.0%}, top-5 {p['topk_identical']:.0%}"
        else:
            check = f"vs FP32 on {p['images']} held-out photos: top-1 agreement {p['top1_agreement']:.1%}, " \
                    f"top-5 overlap {p['top5_overlap']:.1%}, max|dp| {p['max_abs_diff']:.2e}"
        runs = BF16_LABEL if f.selection and f.selection["chosen"] == "bf16" else f.precision
        print(f"  {f.path}  {f.size_bytes / 2**20:.1f} MiB  {runs}  {check}")
        if isinstance(p.get("bf16"), dict):
            print(f"  {describe_bf16(p['bf16'])}")
        if f.selection:
            print(f"  precision auto: {f.selection['reason']}")
            print("  candidates: " + "; ".join(
                f"{BF16_LABEL if name == 'bf16' else name} {c['p50_ms_batch1']:.1f} ms p50, "
                f"top-1 agreement {c['top1_agreement']:.3f}" for name, c in f.selection["candidates"].items()))
            for name, why in f.selection.get("not_candidates", {}).items():
                print(f"  {name.upper()} not a --precision auto candidate: {why}")
    if result.bf16_not_measured and args.precision != "auto":
        print(f"  BF16 not measured: {result.bf16_not_measured}; the model carries no BF16 figure, so edge-classify "
              "runs it in FP32")
    for line in result.warnings:
        print(f"  warning: {line}")
    if args.weights == "random" and not args.keras_model:
        print("  note: random weights: for smoke tests only, predictions are meaningless")
    if args.output is None:
        print("classify with: edge-classify IMG")
    else:
        print(f"classify with: edge-classify --model {result.files[0].path} IMG")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
