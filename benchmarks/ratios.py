"""The headline ratios of a run, each with its per-round spread, and the targets they meet.

Every ratio between two inference systems is given twice: as the ratio of their medians
over the whole run, and as the median of per-round ratios (both timed in the same round,
seconds apart) with its p25-p75 and min-max. Targets are judged on the per-round median,
the one a slow minute of the machine cannot move.
"""

from __future__ import annotations

from .lineup import KERAS_PREDICT, TF_FUNCTION, edge_name
from .stats import round_ratios

FIDELITY_PRECISIONS = ("fp32", "fp16", "bf16")

# key in ratios -> (what it is, comparison, bound)
TARGETS = {
    "best_edge_p50_over_best_peer_p50": ("best edge mode / strongest peer, batch-1 p50", "<=", 1.0),
    "best_edge_b8_throughput_over_best_peer": ("best edge mode / strongest peer, batch-8 images/s", ">=", 1.0),
    "best_fidelity_mode_p50_over_tf_function": ("best fp32/fp16/bf16 edge mode / Keras tf.function, batch-1 p50",
                                                "<=", 0.5),
    "warm_bulk_over_pipeline_bound": ("warm bulk from JPEGs / pipeline bound", ">=", 0.9),
    "cold_wall_edge_over_keras": ("cold one-image run, wall: edge-classify / Keras script", "<=", 1 / 12),
    "cold_rss_edge_over_keras": ("cold one-image run, peak RSS: edge-classify / Keras script", "<=", 1 / 3),
    "isolation_check": ("best edge mode alone / in rotation, batch-1 p50 (isolation worked)", "within", (0.9, 1.1)),
}


def _best(names, key, highest=False):
    return (max if highest else min)(names, key=key) if names else None


# Judged against Keras rows or the Keras script: "n/a (no Keras)" in a run without them.
KERAS_TARGETS = ("best_fidelity_mode_p50_over_tf_function", "cold_wall_edge_over_keras", "cold_rss_edge_over_keras")


def add_row_ratios(rows: dict, best_peer: str | None) -> None:
    """Per latency row: ratios of medians to tf.function, predict and the strongest peer,
    and the per-round ratio to the strongest peer (None for what did not run)."""
    tf, kp = rows.get(TF_FUNCTION), rows.get(KERAS_PREDICT)
    for r in rows.values():
        r["ratio_vs_tf_function"] = r["p50_ms"] / tf["p50_ms"] if tf else None
        r["ratio_vs_keras_predict"] = r["p50_ms"] / kp["p50_ms"] if kp else None
        r["round_ratio_vs_tf_function"] = round_ratios(r["round_p50_ms"], tf["round_p50_ms"]) if tf else None
        if best_peer is not None:
            r["ratio_vs_best_peer"] = r["p50_ms"] / rows[best_peer]["p50_ms"]
            r["round_ratio_vs_best_peer"] = round_ratios(r["round_p50_ms"], rows[best_peer]["round_p50_ms"])


def compute(rows: dict, throughput: dict, cold: dict, bulk: dict, isolation: dict | None) -> dict:
    kind = {n: r["kind"] for n, r in rows.items()}
    peers = [n for n in rows if kind[n] == "peer"]
    edges = [n for n in rows if kind[n] == "edge"]
    best_peer = _best(peers, lambda n: rows[n]["p50_ms"])
    best_edge = _best(edges, lambda n: rows[n]["p50_ms"])
    add_row_ratios(rows, best_peer)
    out: dict = {"best_peer": best_peer, "best_edge_mode": best_edge, "keras_rows": TF_FUNCTION in rows,
                 "peer_precisions": {n: {"precision": rows[n]["precision"],
                                         "inference_precision_hint": rows[n]["info"].get("inference_precision_hint")}
                                     for n in peers + [n for n in rows if kind[n] == "peer-extra"]}}
    if best_edge and best_peer:
        out["best_edge_p50_over_best_peer_p50"] = rows[best_edge]["p50_ms"] / rows[best_peer]["p50_ms"]
        out["best_edge_p50_over_best_peer_p50_per_round"] = rows[best_edge]["round_ratio_vs_best_peer"]

    def ips8(n):
        return throughput[n]["8"]["images_per_s"]

    # The headline pair at batch 8 is the batch-1 pair (best edge mode, strongest peer); the
    # leaders at batch 8 alone are given beside it, in case another row wins there.
    if best_edge and best_peer and "8" in throughput.get(best_edge, {}) and "8" in throughput.get(best_peer, {}):
        out["best_edge_b8_throughput_over_best_peer"] = ips8(best_edge) / ips8(best_peer)
        out["best_edge_b8_throughput_over_best_peer_per_round"] = round_ratios(
            throughput[best_edge]["8"]["round_images_per_s"], throughput[best_peer]["8"]["round_images_per_s"])
    be8 = _best([n for n in edges if "8" in throughput.get(n, {})], ips8, highest=True)
    bp8 = _best([n for n in peers if "8" in throughput.get(n, {})], ips8, highest=True)
    if be8 and bp8:
        out["batch8_leaders"] = {"edge": be8, "peer": bp8, "edge_over_peer": ips8(be8) / ips8(bp8)}

    fidelity = [n for n in edges if rows[n]["precision"] in FIDELITY_PRECISIONS]
    bf = _best(fidelity, lambda n: rows[n]["p50_ms"])
    out["best_fidelity_mode"] = bf
    if bf and out["keras_rows"]:
        out["best_fidelity_mode_p50_over_tf_function"] = rows[bf]["ratio_vs_tf_function"]
        out["best_fidelity_mode_p50_over_tf_function_per_round"] = rows[bf]["round_ratio_vs_tf_function"]
    ort_fp32 = rows.get(edge_name("onnxruntime", "fp32"))
    out["ort_fp32_p50_over_tf_function_p50"] = ort_fp32["ratio_vs_tf_function"] if ort_fp32 else None
    out["cold_wall_edge_over_keras"] = cold["ratios"]["wall_edge_over_keras"]
    out["cold_rss_edge_over_keras"] = cold["ratios"]["rss_edge_over_keras"]
    out["warm_bulk_over_pipeline_bound"] = bulk["ratio_vs_pipeline_bound"]
    out["warm_bulk_over_pipeline_bound_per_round"] = bulk["ratio_vs_pipeline_bound_per_round"]
    out["warm_bulk_over_pure_inference"] = bulk["ratio_vs_pure_inference"]
    if isolation:
        out["isolation_check"] = {k: v for k, v in isolation.items() if k != "solo"}
    return out


def targets(r: dict) -> list[dict]:
    """Each target, the value judged (the per-round median where there is one) and whether it was met."""
    rows = []
    for key, (what, op, bound) in TARGETS.items():
        if key == "isolation_check":
            value = (r.get(key) or {}).get("solo_over_rotation")
        else:
            value = (r.get(f"{key}_per_round") or {}).get("median", r.get(key))
        na = "no Keras" if key in KERAS_TARGETS and r.get("keras_rows") is False else None
        if value is None:
            met = None
        elif op == "<=":
            met = value <= bound
        elif op == ">=":
            met = value >= bound
        else:
            met = bound[0] <= value <= bound[1]
        target = f"{bound[0]}-{bound[1]}" if op == "within" else f"{op} {bound:.3g}"
        spread_ = r.get(f"{key}_per_round")
        # A miss whose bound lies inside the middle half of the per-round ratios is a tie
        # within this run's noise, not a measured loss.
        tie = bool(met is False and spread_ and op in ("<=", ">=") and spread_["p25"] <= bound <= spread_["p75"])
        judged = ("per-round median" if f"{key}_per_round" in r else
                  "solo p50 / in-rotation p50" if key == "isolation_check" else "ratio of medians")
        rows.append({"ratio": key, "what": what, "value": value, "target": target, "met": met,
                     "tie_within_spread": tie, "judged_on": judged, **({"not_applicable": na} if na else {})})
    return rows
