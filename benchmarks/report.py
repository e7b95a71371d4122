"""Turn measurements into report.json, report.md and PNG plots, with within-run ratios."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from . import ratios
from .lineup import KERAS_PREDICT, OV_NNCF, OV_OUR_INT8, TF_FUNCTION, edge_name

SCHEMA = 2
TF_BASELINE = TF_FUNCTION
KERAS_BASELINE = KERAS_PREDICT


def assemble(*, mode, plan, environment, model, rows, throughput, isolation, engine_auto, preprocessing,
             cold_start, warm_bulk, peak_ops, notes, wall_s, skipped_rows=None, provider=None,
             int8_fidelity=None) -> dict:
    """report.json's content. ``rows``: latency rows by system name (kind, precision, the
    provider that ran it, the timing summary with per-round medians, create_s,
    first_inference_ms, agreement, info); ``skipped_rows``: name -> why, for rows left out
    (``--no-keras``, a peer that failed to build); ``provider``: what ``--provider`` asked of
    edge-classify's rows and of its other sections; ``int8_fidelity``: INT8 against FP32 on a
    trained classifier (run.int8_fidelity), or ``{"skipped": why}``."""
    r = ratios.compute(rows, throughput, cold_start, warm_bulk, isolation)
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "wall_s": wall_s,
        "method": {
            "isolation": "one worker process per system (python -m edge_classify.benchmarks.worker), "
                         "idle workers blocked on a pipe read; timing with perf_counter inside the worker",
            "rounds": "round robin, starting system rotating each round, an untimed pause before each call",
            "gap_s": plan["gap_s"], "latency_rounds_x_iterations": plan["latency"],
            "throughput_rounds_x_iterations": {str(b): v for b, v in plan["throughput"].items()},
        },
        "environment": environment,
        "provider": provider or {},
        "model": model,
        "latency_batch1": rows,
        "throughput": throughput,
        "isolation": isolation,
        "engine_auto": engine_auto,
        "preprocessing": preprocessing,
        "cold_start": dict(cold_start),
        "warm_bulk": warm_bulk,
        "peak_ops": peak_ops,
        "ratios": r,
        "targets": ratios.targets(r),
        "skipped_rows": skipped_rows or {},
        "int8_fidelity": int8_fidelity or {"skipped": "not measured"},
        "notes": notes,
    }


SPREAD = ("median", "p25", "p75", "min", "max")
REQUIRED = {
    "latency_batch1": ("min_ms", "p50_ms", "p90_ms", "p99_ms", "ratio_vs_tf_function", "ratio_vs_best_peer"),
    "ratios": ("ort_fp32_p50_over_tf_function_p50", "best_edge_p50_over_best_peer_p50",
               "best_edge_b8_throughput_over_best_peer", "best_fidelity_mode_p50_over_tf_function",
               "cold_wall_edge_over_keras", "cold_rss_edge_over_keras", "warm_bulk_over_pipeline_bound",
               "warm_bulk_over_pure_inference"),
    "ratio_spreads": ("best_edge_p50_over_best_peer_p50_per_round", "best_edge_b8_throughput_over_best_peer_per_round",
                      "best_fidelity_mode_p50_over_tf_function_per_round", "warm_bulk_over_pipeline_bound_per_round"),
    "warm_bulk": ("images_per_s", "decode_images_per_s", "inference_images_per_s", "pipeline_bound_images_per_s",
                  "ratio_vs_pipeline_bound"),
}
# Fields measured against Keras: required only in a run with Keras rows.
KERAS_FIELDS = ("ratio_vs_tf_function", "ort_fp32_p50_over_tf_function_p50", "best_fidelity_mode_p50_over_tf_function",
                "cold_wall_edge_over_keras", "cold_rss_edge_over_keras",
                "best_fidelity_mode_p50_over_tf_function_per_round")


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate(data: dict) -> list[str]:
    """Structural check of report.json (what CI runs on --quick output; no timing thresholds)."""
    problems = []
    for key in ("environment", "model", "latency_batch1", "throughput", "isolation", "preprocessing", "cold_start",
                "warm_bulk", "peak_ops", "ratios", "targets"):
        if key not in data:
            problems.append(f"missing section {key}")
    lat = data.get("latency_batch1", {})
    skipped = data.get("skipped_rows") or {}
    # A run without Keras (--no-keras: no TensorFlow, as on a Jetson) says so in skipped_rows;
    # everything judged against Keras is then absent, and required only when Keras ran.
    keras = not (KERAS_BASELINE in skipped and TF_BASELINE in skipped)
    if not keras and any(row.get("kind") == "keras" for row in lat.values()):
        problems.append("Keras rows listed as skipped, yet present")
    files = (data.get("model") or {}).get("files") or {"fp16": None}  # older reports: the default run's files
    wanted = [KERAS_BASELINE, TF_BASELINE] if keras else []
    wanted += [edge_name("onnxruntime", "fp32")] + ([edge_name("onnxruntime", "fp16")] if "fp16" in files else [])
    for name in wanted:
        if name not in lat and name not in skipped:
            problems.append(f"missing latency row {name}")
    kinds = {row.get("kind") for row in lat.values()}
    for kind in ("keras", "edge", "peer") if keras else ("edge", "peer"):
        if kind not in kinds:
            problems.append(f"no latency row of kind {kind}")
    for name, row in lat.items():
        for f in REQUIRED["latency_batch1"]:
            if not _num(row.get(f)) and (keras or f not in KERAS_FIELDS):
                problems.append(f"latency row {name}: {f} missing")
        rounds = row.get("round_p50_ms")
        if not isinstance(rounds, list) or not rounds or len(rounds) != row.get("rounds"):
            problems.append(f"latency row {name}: round_p50_ms missing or not one per round")
        if not isinstance(row.get("precision"), str):
            problems.append(f"latency row {name}: precision missing")
    r = data.get("ratios", {})
    for f in REQUIRED["ratios"]:
        if not _num(r.get(f)) and (keras or f not in KERAS_FIELDS):
            problems.append(f"ratio {f} missing")
    for f in REQUIRED["ratio_spreads"]:
        if (keras or f not in KERAS_FIELDS) and not all(_num((r.get(f) or {}).get(k)) for k in SPREAD):
            problems.append(f"ratio spread {f} missing")
    if not _num((r.get("isolation_check") or {}).get("solo_over_rotation")):
        problems.append("ratio isolation_check missing")
    for name, info in (r.get("peer_precisions") or {}).items():
        if not isinstance(info.get("precision"), str):
            problems.append(f"peer {name}: precision missing")
    for name, row in lat.items():
        if row.get("kind") in ("edge", "peer", "peer-extra") and name not in data.get("throughput", {}):
            problems.append(f"throughput row {name} missing")
    for name, by_batch in data.get("throughput", {}).items():
        if set(by_batch) != {"1", "8", "32"}:
            problems.append(f"throughput {name}: batches {sorted(by_batch)}")
        elif not all(_num(b.get("images_per_s")) for b in by_batch.values()):
            problems.append(f"throughput {name}: images_per_s missing")
    for f in REQUIRED["warm_bulk"]:
        if not _num(data.get("warm_bulk", {}).get(f)):
            problems.append(f"warm_bulk {f} missing")
    peak = data.get("peak_ops", {})
    if not _num(peak.get("achieved_ops_per_s")) or "fraction_of_peak" not in peak or not peak.get("formula"):
        problems.append("peak_ops incomplete")
    targets = data.get("targets")
    if not isinstance(targets, list) or not targets or not all({"ratio", "target", "met"} <= set(t) for t in targets):
        problems.append("targets incomplete")
    env = data.get("environment", {})
    if not env.get("cpu") or "cpu_flags" not in env or "versions" not in env or not isinstance(env.get("lscpu"), dict):
        problems.append("environment block incomplete")
    elif env["lscpu"] and not (env["lscpu"].get("Model name") and "Flags" in env["lscpu"]):
        problems.append("environment: lscpu without model name or flags")
    return problems


def _spread(s: dict | None) -> str:
    if not s:
        return "n/a"
    return f"{s['median']:.2f} [p25-p75 {s['p25']:.2f}-{s['p75']:.2f}, min-max {s['min']:.2f}-{s['max']:.2f}]"


def _precision(d: dict, name: str | None) -> str:
    return d["latency_batch1"].get(name, {}).get("precision", "?") if name else "?"


def _met(t: dict) -> str:
    if t.get("not_applicable"):
        return f"n/a ({t['not_applicable']})"
    text = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
    return text + (" (a tie: the bound is inside the per-round p25-p75)" if t.get("tie_within_spread") else "")


def headline(d: dict) -> str:
    r = d["ratios"]
    lines = ["headline ratios (this run): per-round median [spread over rounds]; ratio of medians; target"]
    rows = [
        (f"best edge mode ({r.get('best_edge_mode')}, {_precision(d, r.get('best_edge_mode'))}) / strongest peer "
         f"({r.get('best_peer')}, {_precision(d, r.get('best_peer'))}), batch-1 p50",
         "best_edge_p50_over_best_peer_p50"),
        ("the same two, batch-8 images/s", "best_edge_b8_throughput_over_best_peer"),
        (f"best fidelity mode ({r.get('best_fidelity_mode')}) / keras tf.function, batch-1 p50",
         "best_fidelity_mode_p50_over_tf_function"),
        ("warm bulk from JPEGs / pipeline bound", "warm_bulk_over_pipeline_bound"),
    ]
    by_key = {t["ratio"]: t for t in d["targets"]}
    for text, key in rows:
        t = by_key.get(key, {})
        if t.get("not_applicable"):
            lines.append(f"  {text}: {_met(t)}")
            continue
        lines.append(f"  {text}:\n      {_spread(r.get(f'{key}_per_round'))}; {r.get(key) or float('nan'):.2f}; "
                     f"target {t.get('target', '?')}: {_met(t) if t else '?'}")
    for key in ("cold_wall_edge_over_keras", "cold_rss_edge_over_keras"):
        t = by_key[key]
        lines.append(f"  {t['what']}: {_f(r.get(key), '.3f') or 'n/a'}; target {t['target']}: {_met(t)}")
    iso = r.get("isolation_check")
    if iso:
        t = by_key["isolation_check"]
        lines.append(f"  isolation: {iso['system']} alone {iso['solo_p50_ms']:.1f} ms / in rotation "
                     f"{iso['rotation_p50_ms']:.1f} ms = {iso['solo_over_rotation']:.2f}; target {t['target']}: {_met(t)}")
    p = d.get("peak_ops") or {}
    if p.get("fraction_of_peak") is not None:
        lines.append(f"  peak ops: {p['system']} at batch 8 reaches {p['achieved_ops_per_s'] / 1e9:.0f} Gops/s, "
                     f"{p['fraction_of_peak'] * 100:.0f}% of the {p['precision']} peak estimate "
                     f"({p['peak_ops_per_s'] / 1e9:.0f} Gops/s at the reported clock)"
                     + (f", at most {p['fraction_of_peak_at_implied_clock'] * 100:.0f}% at the clock FP32 GEMM implies"
                        if p.get("fraction_of_peak_at_implied_clock") is not None else "")
                     + (f", {p['fraction_of_measured_sgemm'] * 100:.0f}% of measured FP32 GEMM"
                        if p.get("fraction_of_measured_sgemm") is not None else ""))
    return "\n".join(lines)


def _md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _f(x, fmt=".2f") -> str:
    return format(x, fmt) if _num(x) else ""


def markdown(d: dict) -> str:
    env = d["environment"]
    ls = env.get("lscpu") or {}
    flags = ", ".join(f for f, on in env["cpu_flags"].items() if on) or "none of interest"
    lat, r = d["latency_batch1"], d["ratios"]
    peak = d.get("peak_ops") or {}
    m = d["method"]
    wb = d["warm_bulk"]
    cpu = env.get("cpu_for_peak") or {}
    parts = [
        "# edge-classify benchmark report",
        f"{d['created']} · mode `{d['mode']}` · {d['wall_s']:.0f} s · {_model_md(d['model'])}",
        f"**Machine:** {ls.get('Model name', env['cpu'])} (lscpu: {ls.get('CPU(s)', env['logical_cpus'])} CPUs, "
        f"{ls.get('Thread(s) per core', '?')} thread(s) per core, {env['usable_cpus']} usable; "
        f"{_f(cpu.get('mhz'), '.0f')} MHz from {cpu.get('mhz_source')}; flags of interest: {flags}); {env['os']}; "
        f"Python {env['python']}; load average (1, 5, 15 min) at start "
        f"{', '.join(f'{x:.2f}' for x in env.get('load_average_at_start') or [])}, at the end "
        f"{', '.join(f'{x:.2f}' for x in env.get('load_average_at_end') or [])} (above the CPU count means "
        "something else was running).",
        _gpu_md(env.get("gpu")),
        "**Versions:** " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        _provider_md(d.get("provider")),
        f"**Method:** every system runs in its own worker process and idles blocked on a pipe read while the "
        f"others are timed (timing is `perf_counter` inside the worker). Round robin, the starting system rotating "
        f"every round, an untimed {m['gap_s'] * 1e3:.0f} ms pause before each call. Batch 1: "
        f"{m['latency_rounds_x_iterations'][0]} rounds x {m['latency_rounds_x_iterations'][1]} calls. Each ratio "
        "between two systems is given as the median of per-round ratios (same round, seconds apart) with its "
        "spread, and as the ratio of whole-run medians; targets are judged on the per-round median.",
        "## Headline",
        _md_table(["ratio", "per-round median [p25-p75] (min-max)", "ratio of medians", "target", "this run"],
                  [[t["what"], _spread_md(r.get(f"{t['ratio']}_per_round")),
                    _f(t["value"] if t["ratio"] == "isolation_check" else r.get(t["ratio"]), ".3f"),
                    t["target"], f"**{_met(t)}**"] for t in d["targets"]]),
        "```\n" + headline(d) + "\n```",
        "## Inference latency, batch 1",
        "![latency](latency.png)",
        _md_table(
            ["system", "kind", "computes in", "ran on", "min ms", "p50 ms", "p90 ms", "p99 ms", "× tf.function",
             "× strongest peer: per-round median [p25-p75]", "create s", "first ms", "max \\|Δp\\| vs Keras",
             "INT8 vs FP32, trained model: top-1, mean \\|Δp\\|"],
            [[n, row["kind"], row["precision"], _ran_on(row), _f(row["min_ms"], ".1f"), _f(row["p50_ms"], ".1f"),
              _f(row["p90_ms"], ".1f"), _f(row["p99_ms"], ".1f"), _f(row["ratio_vs_tf_function"]),
              _spread_md(row.get("round_ratio_vs_best_peer"), short=True), _f(row["create_s"]),
              _f(row.get("first_inference_ms"), ".0f"), _f(row.get("max_abs_diff_vs_keras"), ".1e"),
              _int8_cell(n, row, d.get("int8_fidelity"))]
             for n, row in lat.items()]),
        f"{lat[next(iter(lat))]['n']} timed calls per system ({m['latency_rounds_x_iterations'][0]} rounds) after 3 "
        "warm-up calls. `computes in`: the precision that really ran (the edge runner's `precision`, OpenVINO's "
        "`INFERENCE_PRECISION_HINT`); `ran on`: the provider or device that really ran it (ONNX Runtime falls back "
        "silently; edge-classify's rows report the session's). `create s`: building the system in its worker "
        "(session creation, compile, tracing, a TensorRT engine build); `first ms`: its first inference."
        + _skipped_md(d.get("skipped_rows")),
        _isolation_md(d.get("isolation")),
        _int8_fidelity_md(d.get("int8_fidelity")),
        "### Peers",
        "\n".join(f"- **{n}** ({lat[n]['kind']}): computes in {lat[n]['precision']}"
                  + (f", INFERENCE_PRECISION_HINT {lat[n]['info'].get('inference_precision_hint')}"
                     if lat[n]["info"].get("inference_precision_hint") else "")
                  + f". {'; '.join(lat[n]['notes'])}" for n in lat if lat[n]["kind"] in ("peer", "peer-extra")),
        "### What `engine=\"auto\"` picks",
        _md_table(["file", "engine", "computes in", "runs that measured here", "why"],
                  [[pr, c.get("engine", ""), c.get("precision", ""), c.get("runs_measuring", ""),
                    c.get("reason") or c.get("error", "")]
                   for pr, c in (d.get("engine_auto") or {}).items()]) if d.get("engine_auto") else
        "Not measured in this run (see the notes).",
        "## Throughput vs batch size (images/s, p50)",
        "![throughput](throughput.png)",
        _md_table(["system", "computes in", "batch 1", "batch 8", "batch 32"],
                  [[n, lat.get(n, {}).get("precision", ""), *(f"{b[k]['images_per_s']:.1f}" for k in ("1", "8", "32"))]
                   for n, b in d["throughput"].items()]),
        f"Rounds x calls per batch size: {m['throughput_rounds_x_iterations']}. At batch 8, best edge mode "
        f"{r.get('best_edge_mode')} / strongest peer {r.get('best_peer')}: "
        f"{_spread(r.get('best_edge_b8_throughput_over_best_peer_per_round'))} per round "
        f"({_f(r.get('best_edge_b8_throughput_over_best_peer'))} as a ratio of medians)"
        + (f"; the batch-8 leaders are {r['batch8_leaders']['edge']} and {r['batch8_leaders']['peer']}, "
           f"{r['batch8_leaders']['edge_over_peer']:.2f}." if r.get("batch8_leaders") else "."),
        "### Share of the CPU's peak (batch 8)",
        _peak_md(peak),
        "## Preprocessing (ms per image, p50)",
        _md_table(["pipeline", "ms/image p50", "min"],
                  [[n, f"{row['p50_ms']:.2f}", f"{row['min_ms']:.2f}"] for n, row in d["preprocessing"].items()
                   if isinstance(row, dict) and "p50_ms" in row]),
        _preprocessing_md(d["preprocessing"]),
        "## End to end, cold (fresh process, one image)",
        "![cold start](cold_start.png)",
        _md_table(["command", "median wall s", "median peak RSS MiB", "runs"],
                  [[n, f"{d['cold_start'][n]['wall_s_median']:.2f}", f"{d['cold_start'][n]['peak_rss_mib_median']:.0f}",
                    len(d["cold_start"][n]["runs"])] for n in COLD_COMMANDS if n in d["cold_start"]]),
        (f"Ratio edge/keras: wall {r['cold_wall_edge_over_keras']:.3f}, peak RSS {r['cold_rss_edge_over_keras']:.3f}. "
         if _num(r.get("cold_wall_edge_over_keras")) else "No Keras script to compare with in this run. ")
        + "The CLI runs with its defaults"
        + (f" and `--provider {d['cold_start']['edge-classify']['provider_request']}`"
           if not str(d["cold_start"]["edge-classify"].get("provider_request", "auto")).startswith("auto") else "")
        + ", so with the engine `auto` picks for a one-image run"
        + (f" ({(d['cold_start']['edge-classify'].get('ran_on') or {}).get('engine')}, computing in "
           f"{(d['cold_start']['edge-classify'].get('ran_on') or {}).get('precision')})"
           if (d["cold_start"]["edge-classify"].get("ran_on") or {}).get("engine") else "")
        + "; its caches (optimised graph, compiled blobs, engine choice) are warm, as after `export-model`.",
        "Cold `edge-classify` per precision (same image):" if d["cold_start"].get("by_precision") else "",
        _md_table(["precision", "model MiB", "median wall s", "median peak RSS MiB"],
                  [[p, f"{row['size_mib']:.1f}", f"{row['wall_s_median']:.2f}", f"{row['peak_rss_mib_median']:.0f}"]
                   for p, row in d["cold_start"]["by_precision"].items()]) if d["cold_start"].get("by_precision") else "",
        "## End to end, warm bulk",
        f"{wb['images']} JPEGs, batch {wb['batch_size']}, `{Path(wb['model']).name}` with engine "
        f"{wb['engine']} ({wb['engine_request']})"
        + (f" on {wb['provider']} (provider {wb.get('provider_request')})" if wb.get("provider") else "")
        + f", median of {wb['rounds']} alternating rounds. Each stage alone, all cores:",
        _md_table(["stage", "images/s"],
                  [["decode + resize (the Classifier's decode pool)", f"{wb['decode_images_per_s']:.1f}"],
                   [f"inference at batch {wb['batch_size']} (`clf.run`)", f"{wb['inference_images_per_s']:.1f}"],
                   ["pipeline bound 1/(1/inference + 1/decode)", f"{wb['pipeline_bound_images_per_s']:.1f}"],
                   ["**`clf.classify(paths)`**", f"**{wb['images_per_s']:.1f}**"]]),
        f"Bulk / bound: **{wb['ratio_vs_pipeline_bound']:.2f}** (per round "
        f"{_spread(wb.get('ratio_vs_pipeline_bound_per_round'))}); bulk / pure inference "
        f"{wb['ratio_vs_pure_inference']:.2f}.",
        "## Model files",
        _md_table(["precision", "size MiB"], [[p, f"{f['size_mib']:.1f}"] for p, f in d["model"]["files"].items()]),
        "## Notes", "\n".join(f"- {n}" for n in d["notes"]) or "-",
    ]
    return "\n\n".join(x for x in parts if x) + "\n"


def _model_name(model: dict) -> str:
    return model.get("name") or "ResNet50"  # reports before the model was read from its contract


def _model_md(model: dict) -> str:
    """The model line: name, input size, classes, where it came from, weights."""
    if not model.get("label"):
        return f"{_model_name(model)}, weights {model['weights']}"
    return (f"{model['label']}, {model['head']} head, preprocessing `{model['preprocess']}` (resize "
            f"{model['resize']}), {model['source']}, weights {model['weights']}")


COLD_COMMANDS = ("edge-classify", "keras-script")


def _ran_on(row: dict) -> str:
    """The provider short name (cpu, cuda, tensorrt) or the engine's device."""
    from edge_classify.runtime.engines.providers import SHORT

    p = row.get("provider") or (row.get("info") or {}).get("provider")
    if p:
        return SHORT.get(p, p)
    return " ".join(str(x) for x in (row.get("engine"), row.get("device")) if x)


def _gpu_md(gpu: dict | None) -> str:
    if not gpu:
        return ""
    jetson = gpu.get("jetson") or {}
    parts = [gpu.get("name"), f"TensorRT {gpu['tensorrt']}" if gpu.get("tensorrt") else None,
             f"L4T {jetson['l4t']}" if jetson.get("l4t") else None,
             f"JetPack {jetson['jetpack']}" if jetson.get("jetpack") else None]
    return "**GPU:** " + "; ".join(p for p in parts if p) + "."


def _provider_md(p: dict | None) -> str:
    if not p:
        return ""
    return (f"**Provider:** edge-classify's timed rows asked ONNX Runtime for `{p.get('rows')}` (each row's `ran on` "
            f"says what ran); its engine-choice, cold-start and warm-bulk sections for `{p.get('sections')}`.")


def _skipped_md(skipped: dict | None) -> str:
    if not skipped:
        return ""
    return " Left out: " + "; ".join(f"{n} ({why})" for n, why in skipped.items()) + "."


def _preprocessing_md(p: dict) -> str:
    head = f"{p.get('photos', '')} photos, each pipeline in its own worker, alternating. "
    if p.get("identical_outputs") is None:
        return head + "The OpenCV path alone: no Keras pipeline to compare with in this run."
    return (head + f"Outputs identical: **{p['identical_outputs']}**"
            + (f" (max |difference| {p['max_abs_diff']:.2g})"
               if not p["identical_outputs"] and _num(p.get("max_abs_diff")) else "")
            + f"; the OpenCV path is {p['speedup']:.2f}x as fast (per round: {_spread(p.get('speedup_per_round'))}).")


def _spread_md(s: dict | None, short: bool = False) -> str:
    if not s:
        return "-"
    if short:
        return f"{s['median']:.2f} [{s['p25']:.2f}-{s['p75']:.2f}]"
    return f"{s['median']:.3f} [{s['p25']:.3f}-{s['p75']:.3f}] ({s['min']:.3f}-{s['max']:.3f})"


def _isolation_md(iso: dict | None) -> str:
    if not iso:
        return ""
    return (f"**Isolation check:** after the rounds, {iso['system']} was timed again the same way with every other "
            f"worker shut down: p50 {iso['solo_p50_ms']:.1f} ms alone vs {iso['rotation_p50_ms']:.1f} ms in rotation "
            f"(ratio {iso['solo_over_rotation']:.2f}; near 1.0 means the idle workers did not slow it).")


def _peak_md(p: dict) -> str:
    if not p:
        return ""
    head = (f"{p['system']} ({p['precision']}): {p['images_per_s']:.1f} images/s x {p['ops_per_image'] / 1e9:.2f} "
            f"Gops/image ({p['ops_source']}) = **{p['achieved_ops_per_s'] / 1e9:.0f} Gops/s**. ")
    if p.get("peak_ops_per_s"):
        head += (f"Peak estimate: 2 x {p['macs_per_core_cycle']} MACs/core/cycle ({p['unit']}) x {p['cores']} cores x "
                 f"{p['mhz']:.0f} MHz ({p['clock_source']}) = {p['peak_ops_per_s'] / 1e9:.0f} Gops/s, so "
                 f"**{p['fraction_of_peak'] * 100:.0f}%** of peak. ")
        if p.get("fraction_of_peak_at_implied_clock") is not None:
            head += (f"At the clock the FP32 GEMM below implies (at least {p['implied_mhz_from_sgemm']:.0f} MHz), "
                     f"at most **{p['fraction_of_peak_at_implied_clock'] * 100:.0f}%**. ")
    else:
        head += f"No peak estimate: {p.get('why_none')}. "
    if p.get("caveat"):
        head += f"*{p['caveat'][0].upper() + p['caveat'][1:]}.* "
    g = p.get("measured_sgemm")
    if g:
        head += (f"For reference, {g['blas']} multiplies FP32 matrices ({g['n']}x{g['n']}, all cores) at "
                 f"{g['sgemm_ops_per_s'] / 1e9:.0f} Gflop/s, which implies a clock of at least "
                 f"{_f(p.get('implied_mhz_from_sgemm'), '.0f')} MHz")
        head += (f"; this mode reaches {p['fraction_of_measured_sgemm'] * 100:.0f}% of that rate. "
                 if p.get("fraction_of_measured_sgemm") is not None else
                 " (an FP32 rate, not comparable with this mode's precision). ")
    return head + "Formula: " + p["formula"] + "."


def plots(d: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    lat = d["latency_batch1"]
    names = list(lat)
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.4 * len(names)))
    # The provider where it is not the CPU, so that a GPU row cannot pass for a CPU one.
    labels = [n + (f" [{_ran_on(lat[n])}]" if _ran_on(lat[n]) in ("cuda", "tensorrt") else "") for n in names]
    p50 = [lat[n]["p50_ms"] for n in names]
    lo = [lat[n]["p50_ms"] - lat[n]["min_ms"] for n in names]
    hi = [lat[n]["p99_ms"] - lat[n]["p50_ms"] for n in names]
    palette = {"keras": "#9e9e9e", "edge": "#1f77b4", "peer": "#ff7f0e", "peer-extra": "#ffbb78"}
    colors = [palette.get(lat[n]["kind"], "#ff7f0e") for n in names]
    ax.barh(labels, p50, xerr=[lo, hi], color=colors, capsize=4)
    for i, (v, n) in enumerate(zip(p50, names)):
        ax.text(lat[n]["p99_ms"], i, f"  p50 {v:.1f} ms", va="center", ha="left", fontsize=9)
    ax.set_xlim(0, max(lat[n]["p99_ms"] for n in names) * 1.25)
    ax.invert_yaxis()
    ax.set_xlabel("latency per image, ms (bar: p50; whiskers: min to p99)")
    ax.set_title(f"{_model_name(d['model'])} inference latency, batch 1 (lower is better)")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#9e9e9e", label="Keras / TensorFlow"), Patch(color="#1f77b4", label="edge-classify"),
                       Patch(color="#ff7f0e", label="peer"), Patch(color="#ffbb78", label="peer, extra")],
              loc="lower right")
    fig.tight_layout()
    files.append(out / "latency.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    for n, by_batch in d["throughput"].items():
        bs = sorted(by_batch, key=int)
        ax.plot([int(b) for b in bs], [by_batch[b]["images_per_s"] for b in bs], marker="o", label=n)
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 8, 32], ["1", "8", "32"])
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput, images/s (p50)")
    ax.set_title("Throughput vs batch size (higher is better)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    files.append(out / "throughput.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4))
    cs = d["cold_start"]
    cmds = [c for c in COLD_COMMANDS if c in cs]
    col = ["#1f77b4", "#9e9e9e"][:len(cmds)]
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


def _int8_figure(name: str, row: dict, f8: dict | None) -> dict | None:
    """The trained model's INT8 figure for a latency row: ours (the activations this run's
    INT8 file has) on the row's engine, or NNCF's on OpenVINO for the NNCF peer."""
    if not f8 or "fidelity" not in f8:
        return None
    fid = f8["fidelity"]
    if name == OV_NNCF:
        return (fid.get("nncf IR") or {}).get("openvino")
    ours = fid.get(f"ours {f8.get('activations')}") or {}
    if name == OV_OUR_INT8:
        return ours.get("openvino")
    if row.get("kind") == "edge" and (row.get("info") or {}).get("file_precision") == "int8":
        return ours.get(row.get("engine"))
    return None


def _int8_cell(name: str, row: dict, f8: dict | None) -> str:
    f = _int8_figure(name, row, f8)
    return f"{f['top1_agreement']:.3f}, {f['mean_abs_diff']:.4f}" if f else ""


def _int8_fidelity_md(f8: dict | None) -> str:
    if not f8 or "fidelity" not in f8:
        return "### INT8 fidelity on a trained model\n\nNot measured: " + ((f8 or {}).get("skipped") or "?") + "."
    rows = [[q, e, f"{v['top1_agreement']:.3f}", f"{v['mean_abs_diff']:.4f}", f"{v['max_abs_diff']:.3f}",
             f"{v['accuracy']:.3f}"] for q, per in f8["fidelity"].items() for e, v in per.items()]
    m = f8["model"]
    return "\n\n".join([
        "### INT8 fidelity on a trained model",
        (f"The timed ResNet50 has random weights, so its `max |Δp| vs Keras` on noise says nothing about what "
        f"INT8 does to a real model's predictions. The last column comes from {m['arch']} "
        f"({len(m['classes'])} classes of crops of scikit-image's photos, FP32 held-out accuracy "
        f"{m['fp32_heldout_accuracy']:.3f}), exported with export-model and quantized on "
        f"{f8['calibration_images']} calibration crops by each quantizer; compared with {f8['reference']} "
        f"({f8['heldout_images']} crops). Ours: this run's INT8 file has {f8.get('activations')} activations. "
        "`python -m edge_classify.benchmarks.int8_fidelity` times the files too."),
        _md_table(["quantizer", "engine", "top-1 agreement", "mean \\|Δp\\|", "max \\|Δp\\|", "accuracy"], rows),
        "; ".join(f"{q}: {d_}" for q, d_ in f8["quantizers"].items()) + "."])


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
