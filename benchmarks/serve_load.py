"""edge-serve under load against its in-process bound and a KServe peer, on the same photos and cores.

    python -m edge_classify.benchmarks.serve_load --out bench-serve [--model m.onnx] [--quick]
        [--kserve-python /work/kserve-venv/bin/python] [--requests N] [--concurrency 1,4,16]

Systems, each timed once per round with the starting one rotating every round, one at a time
(medians and min-max over rounds; ratios per round, as stats.round_ratios does):

* ``in-process`` (the bound), in this process: ``Classifier(model, onnxruntime on the CPU,
  batch_size=8)``. Throughput: ``clf.classify(jpegs)`` over as many images as the highest
  concurrency level sends (decode pool + batches of 8), and ``clf.run`` on preprocessed
  batches of 8. Latency: one image per call, ``clf.classify(jpeg)`` and ``clf.run(x[i:i+1])``.
* ``edge-serve``: the console script (``--engine onnxruntime --provider cpu --no-access-log -q``,
  defaults otherwise) on loopback, driven by a bounded load generator: a fixed request count
  per concurrency level C, sent by C threads with one persistent ``http.client.HTTPConnection``
  each (one untimed warm-up request per connection first). One image per request: as
  ``image_bytes`` (BYTES, binary extension: the JPEG), as the FP32 tensor (binary extension;
  both ask for binary output), and as the FP32 tensor in JSON.
* ``kserve``: benchmarks/kserve_peer.py (kserve, in its own venv) with the same JSON FP32
  bodies (``Content-Type: application/json``): it cannot take tritonclient's BYTES images or
  binary tensors reliably, so JSON tensors are its one input. The tensors are preprocessed
  client-side with the runtime's own ``preprocess.preprocess``, before timing.

Every request body is built before timing. Before the rounds each server answers one request
of each kind (checked against the in-process probabilities) and a warm-up load, and its HTTP
floor is taken: the median round trip of GET /v2/models/NAME (a small JSON answer, no
inference). Both servers start once and stay up, idle while the others are timed; both use
ONNX Runtime's default intra-op threads. The load generator runs in this process, on the
server's cores. Peak RSS: VmHWM of the server process. Photos: model_files.sample_photos()
re-encoded as JPEG quality 90 in memory (PIL), native sizes.

Writes DIR/serve.json (every sample, the environment with lscpu) and DIR/serve.md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .cold_start import installed_script
from .env import environment
from .stats import round_ratios, spread, summarize_rounds

NAME, PATH = "resnet50", "/v2/models/resnet50/infer"
KINDS = ("jpeg-binary", "tensor-binary", "tensor-json")  # edge-serve's inputs; the peer gets tensor-json
SERVED = {"edge-serve": KINDS, "kserve": ("tensor-json",)}


def say(msg: str) -> None:
    print(f"serve_load: {msg}", file=sys.stderr, flush=True)


# --- requests ---------------------------------------------------------------------------
def request_bodies(jpegs: list[bytes], xs: list[np.ndarray], input_name: str) -> dict[str, list[tuple]]:
    """{kind: [(body, headers) per photo]}, built once, before anything is timed."""
    import tritonclient.http as th

    def binary(name: str, a: np.ndarray, datatype: str) -> tuple[bytes, dict]:
        i = th.InferInput(name, list(a.shape), datatype)
        i.set_data_from_numpy(a, binary_data=True)
        out = th.InferRequestedOutput("probabilities", binary_data=True)
        body, n = th.InferenceServerClient.generate_request_body([i], outputs=[out])
        return body, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(n)}

    def as_json(x: np.ndarray) -> tuple[bytes, dict]:
        doc = {"inputs": [{"name": input_name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
        return json.dumps(doc).encode(), {"Content-Type": "application/json"}

    return {"jpeg-binary": [binary("image_bytes", np.array([b], dtype=object), "BYTES") for b in jpegs],
            "tensor-binary": [binary(input_name, x, "FP32") for x in xs], "tensor-json": [as_json(x) for x in xs]}


def _connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _post(conn, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    conn.request("POST", PATH, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def load(port: int, bodies: list[tuple], n: int, conc: int) -> dict:
    """``n`` requests from ``conc`` threads, one persistent connection each (request i sends
    photo i % photos): {"images_per_s", "lat_s" (each request's), "status" (counts)}."""
    counter, lock, lat, status = itertools.count(), threading.Lock(), [0.0] * n, Counter()
    barrier = threading.Barrier(conc + 1, timeout=300)

    def worker(k: int) -> None:
        conn = None
        for i in itertools.chain([-1 - k], counter):  # first an untimed warm-up (a negative index)
            if i >= n:
                break
            t0 = time.perf_counter()
            try:
                conn = conn or _connect(port)
                code = str(_post(conn, *bodies[i % len(bodies)])[0])
            except (OSError, http.client.HTTPException) as exc:
                code = type(exc).__name__
                conn = conn.close() if conn else None
            if i < 0:
                barrier.wait()
                continue
            lat[i] = time.perf_counter() - t0
            with lock:
                status[code] += 1
        if conn:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(conc)]
    for t in threads:
        t.start()
    barrier.wait()  # every connection open and warmed
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return {"images_per_s": n / (time.perf_counter() - t0), "lat_s": lat, "status": dict(status)}


def floor_ms(port: int, n: int = 20) -> float:
    """Median round trip of GET /v2/models/NAME on one connection: what HTTP alone costs."""
    conn, lat = _connect(port), []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", f"/v2/models/{NAME}")
        conn.getresponse().read()
        lat.append(time.perf_counter() - t0)
    conn.close()
    return float(np.median(lat)) * 1e3


def check(port: int, bodies: list[tuple], kind: str, want: np.ndarray) -> float:
    """One request (the first photo): 200 and probabilities of ``want``'s shape; returns the
    largest absolute difference from ``want`` (the in-process probabilities)."""
    import tritonclient.http as th

    conn = _connect(port)
    try:
        code, hdr, raw = _post(conn, *bodies[0])
    finally:
        conn.close()
    if code != 200:
        raise SystemExit(f"serve_load: {kind} answered {code}: {raw[:300]!r}")
    if "inference-header-content-length" in hdr:
        n = int(hdr["inference-header-content-length"])
        got = th.InferenceServerClient.parse_response_body(raw, header_length=n).as_numpy("probabilities")
    else:
        out = json.loads(raw)["outputs"][0]
        got = np.asarray(out["data"], np.float32).reshape(out["shape"])
    if got.shape != want.shape:
        raise SystemExit(f"serve_load: {kind}: probabilities of shape {got.shape}, expected {want.shape}")
    return float(np.abs(got - want).max())


# --- servers ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, log: Path, procs: list, timeout: float = 300.0) -> subprocess.Popen:
    """Start a server (output to ``log``; appended to ``procs`` at once, for the caller's finally)
    and wait until /v2/health/ready answers 200."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    procs.append(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready in {timeout:.0f} s"
    raise RuntimeError(f"{why}:\n{log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen, grace: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def peak_rss_mib(pid: int) -> float:
    """VmHWM, the process's peak resident set (both servers are one process: no workers forked)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


# --- in-process -------------------------------------------------------------------------
def in_process(clf, jpegs: list[bytes], xs: list[np.ndarray], n_thr: int, n_lat: int) -> dict:
    def timed(fn, *args) -> float:
        t0 = time.perf_counter()
        fn(*args)
        return time.perf_counter() - t0

    batches = [np.concatenate([xs[(8 * b + j) % len(xs)] for j in range(8)]) for b in range(len(xs))]
    n_b = max(1, n_thr // 8)
    t_jpeg = timed(clf.classify, [jpegs[i % len(jpegs)] for i in range(n_thr)])
    t_tensor = timed(lambda: [clf.run(batches[b % len(batches)]) for b in range(n_b)])
    return {"jpeg throughput": {"images_per_s": n_thr / t_jpeg}, "tensor throughput": {"images_per_s": 8 * n_b / t_tensor},
            "jpeg latency": {"lat_s": [timed(clf.classify, jpegs[i % len(jpegs)]) for i in range(n_lat)]},
            "tensor latency": {"lat_s": [timed(clf.run, xs[i % len(xs)]) for i in range(n_lat)]}}


# --- the run ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_classify.benchmarks.serve_load",
                                description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  python -m edge_classify.benchmarks.serve_load --out bench-serve "
                                       "--model resnet50.onnx --kserve-python kserve-venv/bin/python\n\n"
                                       "the peer's venv (its own: kserve pins its own FastAPI and uvicorn):\n"
                                       "  python3 -m venv kserve-venv && kserve-venv/bin/pip install kserve onnxruntime "
                                       "pillow numpy")
    p.add_argument("--out", type=Path, required=True, help="output folder (serve.json, serve.md)")
    p.add_argument("--model", type=Path, help="exported FP32 .onnx (default: export a random-weight ResNet50 "
                   "into OUT/model, or reuse the one there)")
    p.add_argument("--quick", action="store_true", help="far fewer requests, 2 rounds: proves it runs")
    p.add_argument("--kserve-python", type=Path, default=os.environ.get("EDGE_BENCH_KSERVE_PYTHON"),
                   help="the KServe venv's python (default: $EDGE_BENCH_KSERVE_PYTHON; without either, the peer is "
                        "skipped and the report says so)")
    p.add_argument("--requests", type=int, help="requests per concurrency level (default: 200 at c1, 400 above; "
                   "--quick: 16 / 32)")
    p.add_argument("--concurrency", default="1,4,16", help="client threads per level (default: 1,4,16)")
    p.add_argument("--rounds", type=int, help="rounds (default 3; --quick: 2)")
    args = p.parse_args(argv)
    conc = sorted({int(c) for c in args.concurrency.split(",")})
    lo, hi, rounds = conc[0], conc[-1], args.rounds or (2 if args.quick else 3)
    base = (16, 32) if args.quick else (200, 400)
    n_req = {c: args.requests or (base[0] if c == 1 else base[1]) for c in conc}
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EDGE_CLASSIFY_HOME", str((args.out / "home").resolve()))  # caches stay with the report
    t_start, env = time.perf_counter(), environment()

    model, origin = args.model, "given"
    if model is not None and not model.is_file():
        raise SystemExit(f"serve_load: --model {model}: not a file")
    if model is None:
        model, origin = args.out / "model" / "resnet50.onnx", "ResNet50, random weights (seed 0)"
        if not model.is_file():
            from . import model_files
            model = model_files.prepare(args.out, None, None, say, quick=True)["fp32"]

    from edge_classify.runtime import Classifier, EngineOptions
    from edge_classify.runtime.images.preprocess import preprocess
    from PIL import Image

    from .model_files import sample_photos

    jpegs = []
    for photo in sample_photos():
        buf = io.BytesIO()
        Image.open(photo).convert("RGB").save(buf, "JPEG", quality=90)
        jpegs.append(buf.getvalue())
    clf = Classifier(model, EngineOptions(engine="onnxruntime", providers="cpu"), batch_size=8)
    xs = [preprocess([b], clf.contract.preprocess) for b in jpegs]  # client-side decoding, before timing
    bodies = request_bodies(jpegs, xs, clf.contract.model.input_name)
    want = clf.run(xs[0])
    clf.warmup()
    clf.classify(jpegs * 2, top_k=1)

    kpy = Path(args.kserve_python) if args.kserve_python else None
    skipped = (None if kpy is not None and kpy.is_file() else
               f"--kserve-python {kpy} not found" if kpy is not None else "no --kserve-python given")
    exe = installed_script("edge-serve")
    if exe is None:
        raise SystemExit("serve_load: edge-serve is not installed (pip install -e '.[serve]')")
    ports = {"edge-serve": free_port(), "kserve": free_port()}
    cmds = {"edge-serve": [exe, "--model", f"{NAME}={model}", "--host", "127.0.0.1", "--port", str(ports["edge-serve"]),
                           "--engine", "onnxruntime", "--provider", "cpu", "--no-access-log", "-q"],
            "kserve": [str(kpy), str(Path(__file__).with_name("kserve_peer.py")), "--model", str(model),
                       "--name", NAME, "--port", str(ports["kserve"])]}
    notes, servers, procs, checks, samples, floor = [], {}, [], {}, {}, {}
    tmp = Path(tempfile.mkdtemp(prefix="edge-bench-serve-"))
    try:
        for name in ("edge-serve", "kserve") if skipped is None else ("edge-serve",):
            say(f"starting {name} on port {ports[name]}")
            try:
                servers[name] = start(cmds[name], ports[name], tmp / f"{name}.log", procs)
            except RuntimeError as exc:
                if name == "edge-serve":
                    raise SystemExit(f"serve_load: edge-serve {exc}") from None
                skipped = f"the KServe peer did not start: {exc}"
        if skipped:
            notes.append(f"KServe peer skipped: {skipped}")
            say(notes[-1])
        for name in servers:
            floor[name] = floor_ms(ports[name])
            if floor[name] > 5:
                notes.append(f"{name}: a small answer takes {floor[name]:.1f} ms with no inference in it (Nagle's "
                             "algorithm meeting delayed ACKs? TCP_NODELAY unset on the server's connections)")
            for kind in SERVED[name]:
                checks[f"{name} {kind}"] = check(ports[name], bodies[kind], f"{name} {kind}", want)
                load(ports[name], bodies[kind], 2 * hi, hi)  # warm-up at the highest level, untimed

        def serve_step(name: str, r: int) -> dict:
            kinds = SERVED[name][r % len(SERVED[name]):] + SERVED[name][:r % len(SERVED[name])]
            return {f"{kind} c{c}": load(ports[name], bodies[kind], n_req[c], c) for c in conc for kind in kinds}

        steps = {"in-process": lambda r: in_process(clf, jpegs, xs, n_req[hi], n_req[lo]),
                 **{s: (lambda r, s=s: serve_step(s, r)) for s in servers}}
        names = list(steps)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                time.sleep(0.5)
                t0 = time.perf_counter()
                for key, v in steps[name](r).items():
                    samples.setdefault(f"{name} {key}", []).append(v)
                say(f"round {r + 1}/{rounds}: {name} in {time.perf_counter() - t0:.1f} s")
        rss = {name: peak_rss_mib(proc.pid) for name, proc in servers.items()}
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    results = summaries(samples)
    bad = {k: v["status"] for k, v in results.items() if set(v.get("status", {"200": 1})) != {"200"}}
    notes += [f"non-200 answers: {bad}"] if bad else []
    rep = {"model": str(model), "model_origin": origin, "photos": len(jpegs), "rounds": rounds, "concurrency": conc,
           "requests": {f"c{c}": n for c, n in n_req.items()}, "in_process": "in this process",
           "servers": {k: cmds[k] for k in servers}, "kserve_skipped": skipped, "server_peak_rss_mib": rss,
           "http_floor_ms": floor, "check_max_abs_diff_vs_in_process": checks, "results": results, "ratios": ratios(samples, lo, hi),
           "notes": notes, "wall_s": time.perf_counter() - t_start, "samples": samples, "environment": env}
    (args.out / "serve.json").write_text(json.dumps(rep, indent=2))
    (args.out / "serve.md").write_text(markdown(rep))
    print(markdown(rep))
    return 0


def summaries(samples: dict) -> dict:
    out = {}
    for key, per_round in samples.items():
        first, row = per_round[0], {}
        if "images_per_s" in first:
            row["images_per_s"] = spread([s["images_per_s"] for s in per_round])
        if "lat_s" in first:
            row["latency"] = summarize_rounds([s["lat_s"] for s in per_round])
        if "status" in first:
            row["status"] = dict(sum((Counter(s["status"]) for s in per_round), Counter()))
        out[key] = row
    return out


def ratios(samples: dict, lo: int, hi: int) -> dict:
    """Per round: throughput ratios at the highest level (target >= 0.85 against the bound,
    >= 1.5 against the peer), p50 differences at the lowest (target <= 2 ms)."""
    def rate(key):
        return [s["images_per_s"] for s in samples[key]]

    def p50(key):
        return [float(np.median(s["lat_s"])) * 1e3 for s in samples[key]]

    out = {}
    for label, num, den, op, target in (
            (f"edge-serve JPEG c{hi} / in-process JPEG", f"jpeg-binary c{hi}", "in-process jpeg throughput", ">=", .85),
            (f"edge-serve tensor c{hi} / in-process tensor", f"tensor-binary c{hi}", "in-process tensor throughput",
             ">=", .85),
            (f"edge-serve JSON tensor / KServe JSON tensor, c{hi}", f"tensor-json c{hi}", f"kserve tensor-json c{hi}",
             ">=", 1.5),
            (f"edge-serve JPEG / KServe JSON tensor, c{hi}", f"jpeg-binary c{hi}", f"kserve tensor-json c{hi}", ">=", 1.5),
            (f"edge-serve JPEG c{lo} p50 - in-process JPEG p50, ms", f"jpeg-binary c{lo}", "in-process jpeg latency",
             "<=", 2.0),
            (f"edge-serve tensor c{lo} p50 - in-process tensor p50, ms", f"tensor-binary c{lo}",
             "in-process tensor latency", "<=", 2.0)):
        num = f"edge-serve {num}"
        if num not in samples or den not in samples:
            continue
        r = round_ratios(rate(num), rate(den)) if op == ">=" else spread([a - b for a, b in zip(p50(num), p50(den))])
        out[label] = {**r, "target": f"{op} {target}", "met": r["median"] >= target if op == ">=" else
                      r["median"] <= target}
    return out


def markdown(rep: dict) -> str:
    env, conc, res = rep["environment"], rep["concurrency"], rep["results"]
    flags = " ".join(f for f, on in env["cpu_flags"].items() if on)

    def cell(s, fmt=".1f"):
        return f"{s['median']:{fmt}} [{s['min']:{fmt}}, {s['max']:{fmt}}]"

    def lat(s):
        return f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f}"

    lines = [f"# edge-serve under load: {Path(rep['model']).name} ({rep['model_origin']}), {rep['photos']} photos, "
             f"{rep['rounds']} rounds", "",
             f"CPU: {env['cpu']} ({env['usable_cpus']} usable; flags: {flags}); load average at start "
             f"{[round(x, 2) for x in env['load_average_at_start'] or ()]}; requests per level {rep['requests']}; "
             f"took {rep['wall_s']:.0f} s", "",
             "One image per request. img/s: median [min, max] over rounds; latency: p50 / p99 ms over all requests. "
             f"In-process ({rep['in_process']}): throughput of batches of 8 over all images (under the highest "
             "level), latency of one image per call (under the lowest). The load generator runs in this process, "
             "on the server's cores. KServe and edge-serve's tensor-json get the same JSON FP32 bodies, preprocessed "
             "client-side before timing.", "",
             "| system | input | " + " | ".join(f"c{c} img/s | c{c} p50 / p99" for c in conc) + " | answers |",
             "|---|---|" + "---|---|" * len(conc) + "---|"]
    for kind in ("jpeg", "tensor"):
        thr, lt = res[f"in-process {kind} throughput"]["images_per_s"], res[f"in-process {kind} latency"]["latency"]
        lines.append(f"| in-process | {kind} | " + " | ".join(
            f"{cell(thr) if c == conc[-1] else '-'} | {lat(lt) if c == conc[0] else '-'}" for c in conc) + " | - |")
    for name, kinds in SERVED.items():
        for kind in (k for k in kinds if f"{name} {k} c{conc[0]}" in res):
            rows = [res[f"{name} {kind} c{c}"] for c in conc]
            status = sum((Counter(r["status"]) for r in rows), Counter())
            lines.append(f"| {name} | {kind} | " + " | ".join(f"{cell(r['images_per_s'])} | {lat(r['latency'])}"
                                                            for r in rows)
                         + " | " + ", ".join(f"{k}: {v}" for k, v in sorted(status.items())) + " |")
    lines += ["", "| per round | median [min, max] | target | met |", "|---|---|---|---|"]
    lines += [f"| {k} | {cell(r, '.2f')} | {r['target']} | {'yes' if r['met'] else 'no'} |"
              for k, r in rep["ratios"].items()]
    rss = ", ".join(f"{k} {v:.0f} MiB" for k, v in rep["server_peak_rss_mib"].items())
    floor = ", ".join(f"{k} {v:.2f} ms" for k, v in rep["http_floor_ms"].items())
    return "\n".join(lines + ["", f"Server peak RSS (VmHWM): {rss}. HTTP floor (GET model metadata, median): {floor}.",
                               *(f"Note: {n}" for n in rep["notes"]), ""])


if __name__ == "__main__":
    sys.exit(main())
