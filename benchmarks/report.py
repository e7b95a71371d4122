"""Turn measurements into report.json, report.md and PNG plots, with within-run ratios."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

SCHEMA = 1
TF_BASELINE = "keras tf.function"
KERAS_BASELINE = "keras predict"


def assemble(*, mode, environment, model, systems, agreement, latency, throughput, preprocessing,
             cold_start, warm_bulk, notes, wall_s) -> dict:
    rows = {}
    for s in systems:
        rows[s.name] = {
            "kind": s.kind, "precision": s.precision, **latency[s.name],
            "create_s": s.create_s, "first_inference_ms": s.first_inference_ms,
            "max_abs_diff_vs_keras": agreement.get(s.name), "notes": s.notes,
        }
    peers = [n for n, r in rows.items() if r["kind"] == "peer"]
    ours = [n for n, r in rows.items() if r["kind"] == "edge"]
    best_peer = min(peers, key=lambda n: rows[n]["p50_ms"]) if peers else TF_BASELINE
    best_ours = min(ours, key=lambda n: rows[n]["p50_ms"]) if ours else None
    for r in rows.values():
        r["ratio_vs_tf_function"] = r["p50_ms"] / rows[TF_BASELINE]["p50_ms"]
        r["ratio_vs_keras_predict"] = r["p50_ms"] / rows[KERAS_BASELINE]["p50_ms"]
        r["ratio_vs_best_peer"] = r["p50_ms"] / rows[best_peer]["p50_ms"]
    ratios = {
        "best_peer": best_peer,
        "best_edge_mode": best_ours,
        "ort_fp32_p50_over_tf_function_p50": rows.get("edge-classify ORT fp32", {}).get("ratio_vs_tf_function"),
        "best_edge_p50_over_best_peer_p50": rows[best_ours]["ratio_vs_best_peer"] if best_ours else None,
        "cold_wall_edge_over_keras": cold_start["ratios"]["wall_edge_over_keras"],
        "cold_rss_edge_over_keras": cold_start["ratios"]["rss_edge_over_keras"],
        "warm_bulk_over_pure_inference": warm_bulk["ratio_vs_pure_inference"],
    }
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "wall_s": wall_s,
        "environment": environment,
        "model": model,
        "latency_batch1": rows,
        "throughput": throughput,
        "preprocessing": preprocessing,
        "cold_start": {k: v for k, v in cold_start.items()},
        "warm_bulk": warm_bulk,
        "ratios": ratios,
        "notes": notes,
    }


REQUIRED = {
    "latency_batch1": ("min_ms", "p50_ms", "p90_ms", "p99_ms", "ratio_vs_tf_function", "ratio_vs_best_peer"),
    "ratios": ("ort_fp32_p50_over_tf_function_p50", "cold_wall_edge_over_keras", "cold_rss_edge_over_keras",
               "warm_bulk_over_pure_inference"),
}


def validate(data: dict) -> list[str]:
    """Structural check of report.json (what CI runs on --quick output; no timing thresholds)."""
    problems = []
    for key in ("environment", "model", "latency_batch1", "throughput", "preprocessing", "cold_start",
                "warm_bulk", "ratios"):
        if key not in data:
            problems.append(f"missing section {key}")
    for name in (KERAS_BASELINE, TF_BASELINE, "edge-classify ORT fp32", "edge-classify ORT fp16"):
        if name not in data.get("latency_batch1", {}):
            problems.append(f"missing latency row {name}")
    for name, row in data.get("latency_batch1", {}).items():
        for f in REQUIRED["latency_batch1"]:
            if not isinstance(row.get(f), (int, float)):
                problems.append(f"latency row {name}: {f} missing")
    for f in REQUIRED["ratios"]:
        if not isinstance(data.get("ratios", {}).get(f), (int, float)):
            problems.append(f"ratio {f} missing")
    for name, by_batch in data.get("throughput", {}).items():
        if set(by_batch) != {"1", "8", "32"}:
            problems.append(f"throughput {name}: batches {sorted(by_batch)}")
    env = data.get("environment", {})
    if not env.get("cpu") or "cpu_flags" not in env or "versions" not in env:
        problems.append("environment block incomplete")
    return problems


def headline(d: dict) -> str:
    r = d["ratios"]
    lines = ["headline ratios (p50, this run):",
             f"  ORT FP32 vs tf.function, batch 1:   {r['ort_fp32_p50_over_tf_function_p50']:.2f}x the time",
             f"  best edge mode vs best peer ({r['best_peer']}): {r['best_edge_p50_over_best_peer_p50']:.2f}x"
             if r.get("best_edge_p50_over_best_peer_p50") else "",
             f"  cold edge-classify vs Keras script: wall {r['cold_wall_edge_over_keras']:.3f}x, "
             f"peak RSS {r['cold_rss_edge_over_keras']:.3f}x",
             f"  warm bulk vs pure inference:        {r['warm_bulk_over_pure_inference']:.2f}x"
             if r.get("warm_bulk_over_pure_inference") else ""]
    return "\n".join(x for x in lines if x)


def _md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def markdown(d: dict) -> str:
    env = d["environment"]
    flags = ", ".join(f for f, on in env["cpu_flags"].items() if on) or "none of interest"
    lat = d["latency_batch1"]
    parts = [
        "# edge-classify benchmark report",
        f"{d['created']} · mode `{d['mode']}` · {d['wall_s']:.0f} s · ResNet50, weights {d['model']['weights']}",
        f"**Machine:** {env['cpu']} ({env['usable_cpus']} usable CPUs; flags: {flags}); {env['os']}; "
        f"Python {env['python']}.",
        "**Versions:** " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        "Systems alternate within each measurement (A B C A B C ...); ratios are computed within this run.",
        "## Headline", "```\n" + headline(d) + "\n```",
        "## Inference latency, batch 1",
        "![latency](latency.png)",
        _md_table(
            ["system", "min ms", "p50 ms", "p90 ms", "p99 ms", "× tf.function", "× keras predict", "× best peer",
             "create s", "first ms", "max |Δp| vs Keras"],
            [[n, f"{r['min_ms']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p90_ms']:.1f}", f"{r['p99_ms']:.1f}",
              f"{r['ratio_vs_tf_function']:.2f}", f"{r['ratio_vs_keras_predict']:.2f}", f"{r['ratio_vs_best_peer']:.2f}",
              f"{r['create_s']:.2f}", f"{r['first_inference_ms']:.0f}" if r["first_inference_ms"] else "",
              f"{r['max_abs_diff_vs_keras']:.1e}" if r["max_abs_diff_vs_keras"] is not None else ""]
             for n, r in lat.items()],
        ),
        f"{lat[next(iter(lat))]['n']} timed iterations per system after 3 warm-up runs. "
        "`create s`: session creation / compile / tracing time; `first ms`: first inference.",
        "## Throughput vs batch size (images/s, p50)",
        "![throughput](throughput.png)",
        _md_table(["system", "batch 1", "batch 8", "batch 32"],
                  [[n, *(f"{b[k]['images_per_s']:.1f}" for k in ("1", "8", "32"))] for n, b in d["throughput"].items()]),
        "## Preprocessing (ms per image, p50)",
        _md_table(["pipeline", "ms/image p50", "min"],
                  [[n, f"{r['p50_ms']:.2f}", f"{r['min_ms']:.2f}"] for n, r in d["preprocessing"].items()
                   if isinstance(r, dict)]),
        f"Outputs identical: **{d['preprocessing']['identical_outputs']}**; "
        f"OpenCV path is {d['preprocessing']['speedup']:.1f}x faster.",
        "## End to end, cold (fresh process, one image)",
        "![cold start](cold_start.png)",
        _md_table(["command", "median wall s", "median peak RSS MiB", "runs"],
                  [[n, f"{d['cold_start'][n]['wall_s_median']:.2f}", f"{d['cold_start'][n]['peak_rss_mib_median']:.0f}",
                    len(d["cold_start"][n]["runs"])] for n in ("edge-classify", "keras-script")]),
        f"Ratio edge/keras: wall {d['ratios']['cold_wall_edge_over_keras']:.3f}, "
        f"peak RSS {d['ratios']['cold_rss_edge_over_keras']:.3f}.",
        "Cold `edge-classify` per precision (same image):",
        _md_table(["precision", "model MiB", "median wall s", "median peak RSS MiB"],
                  [[p, f"{r['size_mib']:.1f}", f"{r['wall_s_median']:.2f}", f"{r['peak_rss_mib_median']:.0f}"]
                   for p, r in d["cold_start"].get("by_precision", {}).items()]),
        "## End to end, warm bulk",
        f"{d['warm_bulk']['images']} JPEGs, batch {d['warm_bulk']['batch_size']}, median of "
        f"{d['warm_bulk']['rounds']} alternating rounds: {d['warm_bulk']['images_per_s']:.1f} images/s classified "
        f"from files vs {d['warm_bulk']['pure_inference_images_per_s']:.1f} images/s pure inference on "
        f"preprocessed tensors (ratio {d['warm_bulk']['ratio_vs_pure_inference']:.2f}).",
        "## Model files",
        _md_table(["precision", "size MiB"], [[p, f"{f['size_mib']:.1f}"] for p, f in d["model"]["files"].items()]),
        "## Notes", "\n".join(f"- {n}" for n in d["notes"]) or "-",
    ]
    return "\n\n".join(parts) + "\n"


def plots(d: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    lat = d["latency_batch1"]
    names = list(lat)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    p50 = [lat[n]["p50_ms"] for n in names]
    lo = [lat[n]["p50_ms"] - lat[n]["min_ms"] for n in names]
    hi = [lat[n]["p99_ms"] - lat[n]["p50_ms"] for n in names]
    colors = ["#9e9e9e" if lat[n]["kind"] == "keras" else "#1f77b4" if lat[n]["kind"] == "edge" else "#ff7f0e"
              for n in names]
    ax.barh(names, p50, xerr=[lo, hi], color=colors, capsize=4)
    for i, (v, n) in enumerate(zip(p50, names)):
        ax.text(lat[n]["p99_ms"], i, f"  p50 {v:.1f} ms", va="center", ha="left", fontsize=9)
    ax.set_xlim(0, max(lat[n]["p99_ms"] for n in names) * 1.25)
    ax.invert_yaxis()
    ax.set_xlabel("latency per image, ms (bar: p50; whiskers: min to p99)")
    ax.set_title("ResNet50 inference latency, batch 1 (lower is better)")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#9e9e9e", label="Keras / TensorFlow"), Patch(color="#1f77b4", label="edge-classify"),
                       Patch(color="#ff7f0e", label="peer")], loc="lower right")
    fig.tight_layout()
    files.append(out / "latency.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, by_batch in d["throughput"].items():
        bs = sorted(by_batch, key=int)
        ax.plot([int(b) for b in bs], [by_batch[b]["images_per_s"] for b in bs], marker="o", label=n)
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 8, 32], ["1", "8", "32"])
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput, images/s (p50)")
    ax.set_title("Throughput vs batch size (higher is better)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    files.append(out / "throughput.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4))
    cs = d["cold_start"]
    cmds = ["edge-classify", "keras-script"]
    col = ["#1f77b4", "#9e9e9e"]
    for ax, key, unit, title in ((a1, "wall_s_median", "s", "wall time"), (a2, "peak_rss_mib_median", "MiB", "peak RSS")):
        vals = [cs[c][key] for c in cmds]
        ax.bar(cmds, vals, color=col)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.2f}" if unit == "s" else f"{v:.0f}", ha="center", va="bottom")
        ax.set_ylabel(f"{title}, {unit} (median)")
        ax.set_title(f"cold start: {title}")
    fig.suptitle("One image from a fresh process (lower is better)")
    fig.tight_layout()
    files.append(out / "cold_start.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files


def write(out: Path, d: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(d, indent=2, default=str))
    (out / "report.md").write_text(markdown(d))
    plots(d, out)


def _validate_main(argv=None) -> int:
    import sys

    path = Path((argv or sys.argv[1:] or ["bench-out/report.json"])[0])
    problems = validate(json.loads(path.read_text()))
    for p in problems:
        print(f"report problem: {p}")
    print(f"{path}: {'well formed' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(_validate_main())
