"""``export-model``: a thin command line over ``export_model``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_classify.runtime import __version__
from edge_classify.runtime.errors import EXIT_INTERRUPTED, EXIT_OK, EdgeClassifyError
from edge_classify.runtime.paths import default_model_path

EPILOG = """\
examples:
  export-model                                   ResNet50, ImageNet weights, default location
  export-model --fp16 -o models/r50.onnx         also writes models/r50.fp16.onnx
  export-model --arch resnet101 --static-batch 1 -o r101.onnx   fixed batch for TensorRT
  export-model --weights ~/resnet50_weights_tf_dim_ordering_tf_kernels.h5   offline
  export-model --weights random -o smoke.onnx    smoke test, meaningless predictions

Then: edge-classify IMG (reads the default location unless --model is given).
exit codes: 0 written, 2 usage, 3 weights/model error, 4 parity check failed (nothing written)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export-model",
        description="Export a Keras ResNet to a self-describing ONNX model, checked against Keras.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--arch", default="resnet50", choices=["resnet50", "resnet101", "resnet152"],
                   help="Keras application to export (default: resnet50)")
    p.add_argument("--weights", default="imagenet", metavar="imagenet|random|PATH",
                   help="imagenet (Keras' download and cache, default), random (smoke test), "
                        "or a local Keras weights file (.h5 / .weights.h5)")
    p.add_argument("--seed", type=int, default=None, help="seed for --weights random (default: 0)")
    p.add_argument("--fp16", action="store_true", help="also write an FP16 model (<out>.fp16.onnx, float32 I/O)")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.static_batch is not None and args.static_batch < 1:
        parser.error("--static-batch must be at least 1")
    if args.seed is not None and args.weights != "random":
        parser.error("--seed only applies to --weights random")
    out = args.output or default_model_path()
    try:
        from .pipeline import export_model

        result = export_model(
            out, arch=args.arch, weights=args.weights, seed=args.seed, fp16=args.fp16, opset=args.opset,
            static_batch=args.static_batch, verify_images=args.verify_images, progress=not args.quiet,
        )
    except EdgeClassifyError as exc:
        print(f"export-model: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("export-model: interrupted; nothing partial was left at the output path", file=sys.stderr)
        return EXIT_INTERRUPTED

    print(f"exported {args.arch} (weights: {args.weights}) in {sum(result.timings_s.values()):.1f} s")
    for f in result.files:
        p = f.parity
        print(
            f"  {f.path}  {f.size_bytes / 2**20:.1f} MiB  {f.precision}  "
            f"vs Keras on {p['images']} photos: max|dp| {p['max_abs_diff']:.2e}, "
            f"top-1 {p['top1_agreement']:.0%}, top-5 {p['topk_identical']:.0%}"
        )
    if args.weights == "random":
        print("  note: random weights: for smoke tests only, predictions are meaningless")
    if args.output is None:
        print("classify with: edge-classify IMG")
    else:
        print(f"classify with: edge-classify --model {result.files[0].path} IMG")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
