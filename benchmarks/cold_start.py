"""Cold start, end to end: ``edge-classify img.jpg`` vs the equivalent Keras script.

Each run is a fresh process; the two systems alternate (A B A B ...) so machine drift
hits both. Wall time is measured around the process, peak RSS comes from ``wait4``'s
rusage of that very child. Prints medians and ratios; ``--json`` writes them too.

    python benchmarks/cold_start.py --model m.onnx --weights w.weights.h5 --image cat.jpg --runs 5
    python benchmarks/cold_start.py --model m.onnx --keras-model my.keras --image cat.jpg

The Keras script is what users run today: import TensorFlow, load the model
(``keras.models.load_model(path, compile=False)`` for their own model; for a
keras.applications export, its constructor, e.g. ResNet50, and the weights), ``load_img``
-> ``img_to_array`` -> the mode's ``preprocess_input`` (``export.verify.keras_inputs``, at
the model's input size, resize and mode) -> ``predict``, print the top-3. Labels, input
size and preprocessing come from the ONNX file's contract (for ImageNet models, the
package's copy of Keras' class index, since ``decode_predictions`` would download it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path

KERAS_SCRIPT = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import json
import numpy as np
import keras
from edge_classify.export.verify import keras_inputs
from edge_classify.runtime.model.contract import ModelContract
from edge_classify.runtime.model.heads import probabilities
from edge_classify.runtime.model.onnx_meta import metadata
source, onnx_path, image = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
contract = ModelContract.from_metadata(metadata(onnx_path))
path = source.get("keras_model")
if path and os.path.isdir(path):  # a SavedModel folder
    model = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
elif path:
    model = keras.models.load_model(path, compile=False)
else:
    model = getattr(keras.applications, source["application"])(weights=None)
    model.load_weights(source["weights"])
x = keras_inputs([image], contract.preprocess)
y = model.predict(x, verbose=0) if hasattr(model, "predict") else model(x)
y = next(iter(y.values())) if isinstance(y, dict) else y
p = probabilities(np.asarray(y), contract.model.head, contract.model.output)[0]
names = contract.labels.names
for i, k in enumerate(np.argsort(-p)[:3], 1):
    print(f"{i}. {names[k]}: {p[k] * 100:.2f}%")
"""


# The measured command is started from a small helper interpreter, not from this
# process: on Linux a child's ru_maxrss starts at its parent's RSS at fork time and
# survives exec, so forking from a benchmark process holding TensorFlow (GBs) would
# report that instead of the command's own peak.
_LAUNCHER = r"""
import json, os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "maxrss_kib": usage.ru_maxrss, "rc": os.waitstatus_to_exitcode(status)}),
      file=sys.stderr)
"""


def measure(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one fresh process running ``cmd``."""
    p = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], capture_output=True, text=True)
    try:
        info = json.loads(p.stderr.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SystemExit(f"launcher failed: {p.stderr[-500:]}") from None
    if info["rc"] != 0:
        raise SystemExit(f"command failed ({info['rc']}): {' '.join(cmd)}")
    return info["wall_s"], info["maxrss_kib"] / 1024.0, p.stdout  # Linux: ru_maxrss in KiB


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def installed_script(name: str) -> str | None:
    """A console script as users run it: beside this interpreter (even with the venv not
    activated), else on PATH; None when it is not installed."""
    beside = Path(sysconfig.get_path("scripts")) / name
    return str(beside) if beside.is_file() else shutil.which(name)


def edge_command(model: str, image: str, threads: int | None = None, provider: str | None = None) -> list[str]:
    """``provider``: the CLI's ``--provider`` (None: its default, auto)."""
    script = installed_script("edge-classify")
    cmd = ([script] if script else [sys.executable, "-m", "edge_classify.runtime.apps.classify"]) + ["--model", model, "-q"]
    return (cmd + (["--threads", str(threads)] if threads else []) + (["--provider", provider] if provider else [])
            + [image])


def keras_command(source: dict, model: str, image: str) -> list[str]:
    """The Keras script for ``source`` (model_files.keras_source), the contract read from ``model``."""
    return [sys.executable, "-c", KERAS_SCRIPT, json.dumps(source), model, image]


def run(model: str, source: dict | None, image: str, runs: int, threads: int | None = None, log=_stderr,
        provider: str | None = None) -> dict:
    """``source``: what the Keras script loads (model_files.keras_source); None: edge-classify
    alone (no TensorFlow here), and the ratios are None. ``provider``: edge-classify's."""
    edge = edge_command(model, image, threads, provider)
    commands = [("edge-classify", edge)]
    if source is not None:
        commands.append(("keras-script", keras_command(source, model, image)))
    results = {name: [] for name, _ in commands}
    outputs = {}
    for i in range(runs):
        for name, cmd in commands:
            wall, rss, out = measure(cmd)
            results[name].append({"wall_s": wall, "peak_rss_mib": rss})
            outputs[name] = out
            log(f"run {i + 1}/{runs} {name:14s} {wall:6.2f} s  {rss:7.1f} MiB")
    summary = {}
    # Which engine the CLI's defaults ran (`auto` decides per run: a one-image run may take
    # another engine than a bulk run): one more, untimed run, with JSON rows.
    probe = subprocess.run(edge + ["--json"], capture_output=True, text=True)
    try:
        row = json.loads(probe.stdout.splitlines()[0])
        used = {"engine": row.get("engine"), "precision": row.get("precision"), "provider": row.get("provider")}
    except (IndexError, ValueError):
        used = {}
    for name, rows in results.items():
        summary[name] = {
            "wall_s_median": statistics.median(r["wall_s"] for r in rows),
            "peak_rss_mib_median": statistics.median(r["peak_rss_mib"] for r in rows),
            "runs": rows,
            "stdout": outputs[name],
        }
    e, k = summary["edge-classify"], summary.get("keras-script")
    e["ran_on"] = used
    e["provider_request"] = provider or "auto (the CLI's default)"
    summary["ratios"] = {
        "wall_edge_over_keras": e["wall_s_median"] / k["wall_s_median"] if k else None,
        "rss_edge_over_keras": e["peak_rss_mib_median"] / k["peak_rss_mib_median"] if k else None,
    }
    return summary


def by_precision(models: dict, image: str, runs: int, log=_stderr, provider: str | None = None) -> dict:
    """Cold ``edge-classify`` per exported file (precision -> path): medians of wall and peak RSS."""
    out = {}
    for pr, path in models.items():
        rows = [measure(edge_command(str(path), image, provider=provider)) for _ in range(runs)]
        out[pr] = {"wall_s_median": statistics.median(r[0] for r in rows),
                   "peak_rss_mib_median": statistics.median(r[1] for r in rows), "runs": len(rows),
                   "size_mib": Path(path).stat().st_size / 2**20}
        log(f"cold {pr}: {out[pr]['wall_s_median']:.2f} s, {out[pr]['peak_rss_mib_median']:.0f} MiB")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="exported .onnx")
    p.add_argument("--weights", type=Path, default=None, help="the Keras weights a keras.applications model "
                   "was exported from")
    p.add_argument("--keras-model", type=Path, default=None, help="your Keras model file the model was exported from")
    p.add_argument("--image", required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    from edge_classify.benchmarks.model_files import keras_source, read_contract

    source = keras_source(read_contract(Path(args.model)), args.weights, args.keras_model)
    s = run(args.model, source, args.image, args.runs, args.threads)
    for name in ("edge-classify", "keras-script"):
        print(f"{name:14s} median wall {s[name]['wall_s_median']:.2f} s, "
              f"median peak RSS {s[name]['peak_rss_mib_median']:.0f} MiB")
    r = s["ratios"]
    print(f"edge/keras: wall {r['wall_edge_over_keras']:.3f} (1/{1 / r['wall_edge_over_keras']:.1f}), "
          f"peak RSS {r['rss_edge_over_keras']:.3f}")
    print("same top-3:", s["edge-classify"]["stdout"] == s["keras-script"]["stdout"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
