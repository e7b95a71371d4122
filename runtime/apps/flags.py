"""Flags that several command lines share, defined once: the engine's (``--engine``,
``--provider``, ``--device``, ``--precision``, ``--threads``, ``--trt-cache``, ``--trt-fp32``),
the decoder's (``--decode``, ``--exif-orientation``, ``--16bit``, ``--max-pixels``,
``--max-file-size``, ``--allow-corrupt``) and the number types their values are checked with. ``edge-classify``
and ``edge-serve`` take them with the same meanings; each turns them into its options
object here (``engine_options``, ``decode_options``).

Imports only the standard library: ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SUFFIX = {"K": 10**3, "M": 10**6, "G": 10**9}
BYTE_SUFFIX = {"K": 2**10, "M": 2**20, "G": 2**30}


def number(cast, kind: str, ok, bound: str):
    """An argparse type: ``cast`` the text, refuse what ``ok`` refuses (saying ``bound``)."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text} {bound}")
        return value

    return parse


probability = number(float, "a number", lambda v: 0.0 <= v <= 1.0, "is not between 0 and 1")
positive_int = number(int, "an integer", lambda v: v >= 1, "must be at least 1")
non_negative = number(float, "a number", lambda v: v >= 0, "must not be negative")
positive = number(float, "a number", lambda v: v > 0, "must be positive")


def count(suffixes: dict):
    """``100M``, ``1.5G``, ``89478485``, ``256MB`` -> int (suffix multipliers from ``suffixes``)."""

    def parse(text: str) -> int:
        t = text.strip().upper()
        if len(t) > 1 and t.endswith("B") and t[-2] in "KMG":
            t = t[:-1]
        unit = t[-1:] if t[-1:] in suffixes else ""
        try:
            value = int(float(t[: len(t) - len(unit)]) * suffixes.get(unit, 1))
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 100M)") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    return parse


def add_engine_flags(p: argparse.ArgumentParser, threads_default: int | None = None,
                     threads_help: str = "intra-op threads (default: the engine's)") -> None:
    """The engine flags. ``--threads`` is the one whose unit differs: a process's threads for
    edge-classify and edge-serve, each actor's for edge-classify-bulk (which also decodes on them)."""
    from ..engines.providers import default_trt_cache_dir

    p.add_argument("--engine", default="auto", choices=["auto", "onnxruntime", "openvino"],
                   help="inference engine; auto: ONNX Runtime on a GPU, else whichever installed engine was "
                        "measured faster for this model on this CPU (its first runs measure; remembered); runs of up to "
                        "16 images take ONNX Runtime, which starts leaner (default: auto)")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda", "tensorrt", "openvino"],
                   help="ONNX Runtime execution provider (implies --engine onnxruntime when not auto); auto "
                        "prefers tensorrt, then cuda, then cpu; openvino (the EP) only when named (default: auto)")
    p.add_argument("--device", default=None, metavar="NAME",
                   help="OpenVINO device: CPU, GPU, NPU or AUTO (implies --engine openvino; default: CPU)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="arithmetic for an FP32 model: bf16 runs on the openvino engine on CPUs with native BF16; "
                        "auto uses BF16 only when the model's export measured its fidelity and it passed; "
                        "fp32 never lowers (default: auto)")
    p.add_argument("--threads", type=positive_int, default=threads_default, help=threads_help)
    p.add_argument("--trt-cache", type=Path, default=None,
                   help=f"TensorRT engine cache directory (default: {default_trt_cache_dir()})")
    p.add_argument("--trt-fp32", action="store_true", help="keep TensorRT in FP32 (default: FP16 enabled)")


def engine_options(args, images_hint: int | None = None, spinning: bool = True):
    from ..engines.options import EngineOptions, TensorRTOptions

    return EngineOptions(engine=args.engine, providers=args.provider, device=args.device, precision=args.precision,
                         threads=args.threads, images_hint=images_hint, spinning=spinning,
                         tensorrt=TensorRTOptions(cache_dir=args.trt_cache, fp16=not args.trt_fp32))


def add_decode_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decode", default="auto", choices=["auto", "exact", "fast"],
                   help="JPEG decoding: exact decodes every image as Keras does (bit-exact); fast decodes a JPEG at "
                        "least twice the model's input size at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling: the "
                        "largest that keeps it at least the input size), which changes pixels; auto is fast only "
                        "when the model carries export-time evidence (top-1 agreement with exact decoding >= 0.99, "
                        "mean |dp| <= 0.01), else exact. Rows say which ran (default: auto)")
    p.add_argument("--exif-orientation", action="store_true",
                   help="rotate photos by their EXIF orientation tag (Keras ignores it; so do we by default)")
    p.add_argument("--16bit", dest="sixteen_bit", choices=["scale", "clip"], default="scale",
                   help="16-bit grayscale images: scale to 8 bits (default) or clip at 255 like Keras/PIL")
    p.add_argument("--max-pixels", type=count(SUFFIX), default=None, metavar="N",
                   help="refuse images whose header declares more pixels (default: 89.5M, Pillow's bomb limit; "
                        "K/M/G suffixes)")
    p.add_argument("--max-file-size", type=count(BYTE_SUFFIX), default=None, metavar="SIZE",
                   help="refuse larger files (default: 256M; K/M/G suffixes are binary)")
    p.add_argument("--allow-corrupt", action="store_true",
                   help="classify images the decoder reports as corrupt (partly decoded), with a warning, "
                        "instead of refusing them")


def decode_options(args):
    from ..images.preprocess import DecodeOptions

    limits = {k: v for k, v in (("max_pixels", args.max_pixels), ("max_file_bytes", args.max_file_size)) if v}
    return DecodeOptions(exif_orientation=args.exif_orientation, sixteen_bit=args.sixteen_bit,
                         allow_corrupt=args.allow_corrupt, decode=args.decode, **limits)
