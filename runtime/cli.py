"""``edge-classify``: a thin command line over ``Classifier``.

Imports only the standard library until it has to classify, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import EXIT_INPUTS_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EdgeClassifyError
from .files import images_in
from .paths import default_model_path

EPILOG = """\
examples:
  edge-classify elephant.jpg                 top-3 with the default model
  edge-classify photos/ --top-k 5 --json     every image in a folder, JSON Lines
  edge-classify 'shots/*.png' --batch-size 16 --threads 2
  edge-classify img.jpg --model resnet101.onnx --provider tensorrt

exit codes: 0 all classified, 1 some inputs failed, 2 usage, 3 model/provider error
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-classify",
        description="Classify images with a model exported by `export-model` (no TensorFlow needed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="IMG", help="image files, directories or glob patterns")
    p.add_argument("--model", "-m", type=Path, default=None,
                   help=f"exported .onnx model (default: {default_model_path()}; EDGE_CLASSIFY_HOME moves it)")
    p.add_argument("--top-k", "-k", type=_positive_int, default=3, help="predictions per image (default: 3)")
    p.add_argument("--json", action="store_true", help="one JSON object per image (JSON Lines) on stdout")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda", "tensorrt", "openvino"],
                   help="execution provider; auto prefers tensorrt, then cuda, then cpu; openvino only when named "
                        "(default: auto)")
    p.add_argument("--threads", type=_positive_int, default=None, help="intra-op threads (default: onnxruntime's)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="images per inference batch (default: 8)")
    p.add_argument("--exif-orientation", action="store_true",
                   help="rotate photos by their EXIF orientation tag (Keras ignores it; so do we by default)")
    p.add_argument("--16bit", dest="sixteen_bit", choices=["scale", "clip"], default="scale",
                   help="16-bit grayscale images: scale to 8 bits (default) or clip at 255 like Keras/PIL")
    p.add_argument("--trt-cache", type=Path, default=None, help="TensorRT engine cache directory")
    p.add_argument("--trt-fp32", action="store_true", help="keep TensorRT in FP32 (default: FP16 enabled)")
    p.add_argument("--quiet", "-q", action="store_true", help="no informational lines on stderr")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def expand_inputs(args: list[str]) -> list[str]:
    """Files as given; directories -> their image files (recursive, sorted); globs expanded.

    A name that matches nothing is kept, so that it is reported as missing.
    """
    out: list[str] = []
    for arg in args:
        if os.path.isdir(arg):
            found = [str(p) for p in images_in(arg)]
            out.extend(found)
            if not found:
                print(f"edge-classify: warning: no images in directory {arg}", file=sys.stderr)
        elif not os.path.exists(arg) and glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            out.extend(matches if matches else [arg])
        else:
            out.append(arg)
    return out


def format_predictions(predictions) -> list[str]:
    return [f"{i}. {p.label}: {p.probability * 100:.2f}%" for i, p in enumerate(predictions, 1)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except EdgeClassifyError as exc:
        print(f"edge-classify: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edge-classify: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args) -> int:
    from .classifier import Classifier  # heavy imports only past argument parsing
    from .preprocess import DecodeOptions

    def info(msg: str) -> None:
        if not args.quiet:
            print(f"edge-classify: {msg}", file=sys.stderr)

    model = args.model or default_model_path()
    clf = Classifier(
        model,
        providers=args.provider,
        threads=args.threads,
        batch_size=args.batch_size,
        decode=DecodeOptions(exif_orientation=args.exif_orientation, sixteen_bit=args.sixteen_bit),
        trt_cache_dir=args.trt_cache,
        trt_fp16=not args.trt_fp32,
    )
    m = clf.contract.model
    info(f"model {model} ({m.arch} {m.precision}) on {clf.provider}")
    if clf.cache_status == "stored":
        info("saved the optimised graph for this CPU; later runs start faster")
    if clf.provider_warning:
        print(f"edge-classify: warning: {clf.provider_warning}", file=sys.stderr)
    quant = (clf.contract.parity or {}).get("quantization") or {}
    if quant.get("activations") == "u8" and clf.provider == "TensorrtExecutionProvider":
        print("edge-classify: warning: this INT8 model has uint8 activations (made for x86 CPUs); TensorRT needs "
              "symmetric int8: re-export with --int8-activations s8", file=sys.stderr)
    if clf.contract.weights_origin == "random":
        print(
            "edge-classify: warning: this model was exported with --weights random (smoke test): "
            "its predictions are meaningless",
            file=sys.stderr,
        )

    inputs = expand_inputs(args.inputs)
    if not inputs:
        print("edge-classify: error: no images to classify", file=sys.stderr)
        return EXIT_USAGE
    failed = 0
    several = len(inputs) > 1
    first = True
    for res in clf.iter_classify(inputs, top_k=args.top_k, errors="collect"):
        if res.error:
            failed += 1
            print(f"edge-classify: {res.source}: {res.error}", file=sys.stderr)
        if args.json:
            obj = {"path": res.source, "provider": clf.provider}
            if res.error:
                obj["error"] = res.error
            else:
                obj["predictions"] = [
                    {"rank": r, "index": p.index, "wnid": p.wnid, "label": p.label, "probability": p.probability}
                    for r, p in enumerate(res.predictions, 1)
                ]
                obj["timings_ms"] = res.timings_ms
            print(json.dumps(obj), flush=True)
        elif not res.error:
            if several:
                print(("" if first else "\n") + res.source)
            print("\n".join(format_predictions(res.predictions)), flush=True)
            first = False
    if failed:
        info(f"{failed} of {len(inputs)} input(s) could not be classified")
        return EXIT_INPUTS_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
