"""edge-serve as its clients see it: the real console script on 127.0.0.1, called by Triton's
own client (sync and async), by curl's kind of request and by hand-made bad requests.

Exactness: a server's answer equals ``Classifier`` on the same photos, with the same engine
and the same images per batch (ONNX Runtime's last bits may depend on the batch, so each
parity request is alone in its batch, or the whole of one batch: ``--max-queue-delay-ms``
lets a request's images finish decoding and share a batch).
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import re
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tiny_models
from conftest import encode
from PIL import Image
from serve_helpers import multipart, peak_rss_mib, rss_mib, serving

from edge_classify.runtime.classifier import Classifier
from edge_classify.runtime.engines.options import EngineOptions

th = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is in the [test] extra")
ENGINE = ["--engine", "onnxruntime", "--provider", "cpu"]
CPU = EngineOptions(engine="onnxruntime", providers="cpu")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve-models")
    return {"tiny": tiny_models.make(d / "tiny.onnx", classes=6, seed=3),
            "static": tiny_models.make(d / "static.onnx", classes=5, seed=4, batch=4)}


@pytest.fixture(scope="module")
def tiny_server(tiny):
    with serving(tiny["tiny"], f"st={tiny['static']}",
                 args=[*ENGINE, "--max-queue-delay-ms", "1000", "--max-body-size", "4M"]) as s:
        yield s


@pytest.fixture(scope="module")
def photo_bytes(photos) -> dict[str, bytes]:
    """Three real photos as a client sends them: two JPEGs and a PNG."""
    out = {}
    for name, fmt in (("chelsea.png", "JPEG"), ("coffee.png", "PNG"), ("astronaut.png", "JPEG")):
        img = Image.open(next(p for p in photos if p.name == name)).convert("RGB")
        out[name.replace(".png", "." + fmt.lower().replace("jpeg", "jpg"))] = encode(img, fmt, quality=90)
    return out


@pytest.fixture(scope="module")
def resnet(exported):
    return exported["fp32"]


@pytest.fixture(scope="module")
def resnet_clf(resnet):
    return Classifier(resnet, CPU)


@pytest.fixture(scope="module")
def resnet_server(resnet):
    with serving(f"resnet50={resnet}", args=[*ENGINE, "--max-queue-delay-ms", "2000"]) as s:
        yield s


def tensor_input(x: np.ndarray, name="input", binary=True):
    i = th.InferInput(name, list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    return i


def bytes_input(blobs: list[bytes], binary=True):
    i = th.InferInput("image_bytes", [len(blobs)], "BYTES")
    i.set_data_from_numpy(np.array(blobs, dtype=object), binary_data=binary)
    return i


# --------------------------------------------------------------------------- tritonclient
def test_tritonclient_sync_against_the_classifier(resnet_server, resnet_clf, photo_bytes):
    c = th.InferenceServerClient(resnet_server.host_port)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("resnet50")
    assert not c.is_model_ready("nope")
    meta = c.get_server_metadata()
    assert meta["name"] == "edge-serve" and {"binary_tensor_data", "classification"} <= set(meta["extensions"])
    m = c.get_model_metadata("resnet50")
    contract = resnet_clf.contract
    assert {(i["name"], i["datatype"], tuple(i["shape"])) for i in m["inputs"]} == {
        (contract.model.input_name, "FP32", (-1, 224, 224, 3)), ("image_bytes", "BYTES", (-1,))}
    assert m["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}]
    cfg = c.get_model_config("resnet50")
    assert cfg["max_batch_size"] == 8 and "dynamic_batching" in cfg

    # Encoded photos, one request each: the server decodes them as the classifier does.
    top1 = []
    for name, blob in photo_bytes.items():
        want = resnet_clf.predict([blob])
        r = c.infer("resnet50", [bytes_input([blob])], request_id=f"id-{name}")
        assert r.get_response()["id"] == f"id-{name}"
        got = r.as_numpy("probabilities")
        np.testing.assert_array_equal(got, want)
        # The classification extension: top-3 as "score:index:label", the classifier's top-3.
        r = c.infer("resnet50", [bytes_input([blob])],
                    outputs=[th.InferRequestedOutput("probabilities", class_count=3)])
        strings = [s.decode() for s in r.as_numpy("probabilities").reshape(-1)]
        expected = resnet_clf.classify(blob, top_k=3)[0].predictions
        assert [(int(s.split(":")[1]), s.split(":", 2)[2]) for s in strings] == [(p.index, p.label) for p in expected]
        assert [np.float32(float(s.split(":")[0])) for s in strings] == [np.float32(p.probability) for p in expected]
        top1.append(expected[0].index)
    assert len(set(top1)) > 1, "the stand-in gave every photo the same class: the comparison would prove nothing"

    # The whole set in one request: one batch of three, as Classifier runs it.
    blobs = list(photo_bytes.values())
    r = c.infer("resnet50", [bytes_input(blobs)])
    np.testing.assert_array_equal(r.as_numpy("probabilities"), resnet_clf.predict(blobs))

    # The client's own preprocessing: the tensor input, binary and JSON, binary and JSON outputs.
    x = resnet_clf.decode_and_normalize(blobs) if hasattr(resnet_clf, "decode_and_normalize") else None
    from edge_classify.runtime.images import preprocess

    x = preprocess.preprocess(blobs, contract.preprocess)
    want = resnet_clf.run(x)
    for binary in (True, False):
        r = c.infer("resnet50", [tensor_input(x, contract.model.input_name, binary)],
                    outputs=[th.InferRequestedOutput("probabilities", binary_data=binary)])
        np.testing.assert_array_equal(r.as_numpy("probabilities"), want)
    c.close()


def test_tritonclient_async(resnet_server, resnet_clf, photo_bytes):
    aio = pytest.importorskip("tritonclient.http.aio")
    blobs = list(photo_bytes.values())

    async def main():
        c = aio.InferenceServerClient(resnet_server.host_port)
        try:
            assert await c.is_server_ready()
            assert (await c.get_model_metadata("resnet50"))["name"] == "resnet50"
            alone = [await c.infer("resnet50", [bytes_input([b])], request_id=str(k)) for k, b in enumerate(blobs)]
            together = await asyncio.gather(*(c.infer("resnet50", [bytes_input([b])]) for b in blobs))
            return alone, together
        finally:
            await c.close()

    alone, together = asyncio.run(main())
    for k, (r, b) in enumerate(zip(alone, blobs)):
        assert r.get_response()["id"] == str(k)
        np.testing.assert_array_equal(r.as_numpy("probabilities"), resnet_clf.predict([b]))
    # Concurrent requests may share a batch: the same classes, equal to float32 rounding.
    for r, a in zip(together, alone):
        np.testing.assert_allclose(r.as_numpy("probabilities"), a.as_numpy("probabilities"), atol=1e-6)


# --------------------------------------------------------------------------- /v1 and the rows
def test_curl_endpoint_returns_the_cli_row(resnet_server, resnet_clf, photo_bytes):
    name, blob = next(iter(photo_bytes.items()))
    status, row = resnet_server.json("POST", f"/v1/classify?top_k=4&name={name}", blob)
    assert status == 200
    want = resnet_clf.row(resnet_clf.classify(blob, top_k=4)[0])
    assert row["path"] == name
    assert row["predictions"] == want["predictions"]
    assert set(row) == set(want)  # the row edge-classify --json prints, field for field
    assert {k: row[k] for k in ("model_sha256", "model_precision", "compute_precision", "engine", "provider")} == \
        {k: want[k] for k in ("model_sha256", "model_precision", "compute_precision", "engine", "provider")}

    body, ctype = multipart([("a.jpg", photo_bytes["chelsea.jpg"]), ("notes.txt", b"not an image"),
                             ("b.png", photo_bytes["coffee.png"])])
    status, rows = resnet_server.json("POST", "/v1/classify", body, {"Content-Type": ctype})
    assert status == 200 and [r["path"] for r in rows] == ["a.jpg", "notes.txt", "b.png"]
    assert "error" in rows[1] and "predictions" not in rows[1]
    for r, b in ((rows[0], photo_bytes["chelsea.jpg"]), (rows[2], photo_bytes["coffee.png"])):
        assert [p["index"] for p in r["predictions"]] == [p.index for p in resnet_clf.classify(b, top_k=3)[0].predictions]

    # a part with no file name (curl -F image=<photo.jpg) counts when its field says image
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"top\"\r\n\r\n3\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n").encode() + \
        photo_bytes["coffee.png"] + f"\r\n--{boundary}--\r\n".encode()
    status, rows = resnet_server.json("POST", "/v1/classify", body,
                                      {"Content-Type": f'multipart/form-data; boundary="{boundary}"'})
    assert status == 200 and [r["path"] for r in rows] == ["image"] and "predictions" in rows[0]

    status, row = resnet_server.json("POST", "/v1/classify", b"GIF89a broken")
    assert status == 400 and row["error"] and row["path"] == "upload"


# --------------------------------------------------------------------------- bad requests
def _infer_doc(inputs, outputs=None, **extra):
    doc = {"inputs": inputs, **extra}
    if outputs is not None:
        doc["outputs"] = outputs
    return json.dumps(doc).encode()


def _tensor(shape, name="input", datatype="FP32", fill=0.5):
    return {"name": name, "datatype": datatype, "shape": shape, "data": [fill] * int(np.prod(shape))}


INFER = "/v2/models/tiny/infer"
BAD_REQUESTS = [
    # (method, path, body, headers, status, message fragment)
    ("GET", "/v2/models/nope", None, {}, 404, "unknown model 'nope'"),
    ("POST", "/v2/models/nope/infer", b"{}", {}, 404, "unknown model 'nope'"),
    ("GET", "/v2/models/tiny/versions/7", None, {}, 404, "has no version '7'"),
    ("GET", "/v3/anything", None, {}, 404, "no such endpoint"),
    ("GET", INFER, None, {}, 405, "method not allowed"),
    ("POST", INFER, b"{oops", {}, 400, "not valid JSON"),
    ("POST", INFER, b"{}", {}, 400, "'inputs' must be a non-empty list"),
    ("POST", INFER, b'{"inputs": []}', {"Inference-Header-Content-Length": "x1"}, 400, "is not a number"),
    ("POST", INFER, _infer_doc([_tensor([1, 4], name="pixels")]), {}, 400, "unknown input 'pixels'"),
    ("POST", INFER, _infer_doc([_tensor([1, 224, 224, 3], datatype="FP64")]), {}, 400, "datatype FP64 is not FP32"),
    ("POST", INFER, _infer_doc([_tensor([1, 3, 224, 224])]), {}, 400, "is not [N, 224, 224, 3]"),
    ("POST", INFER, _infer_doc([_tensor([9, 2, 2, 3])]), {}, 400, "is not [N, 224, 224, 3]"),
    ("POST", INFER, _infer_doc([{"name": "image_bytes", "datatype": "BYTES", "shape": [9], "data": ["x"] * 9}]), {},
     400, "more than the model's max_batch_size 8"),
    ("POST", INFER, _infer_doc([{"name": "image_bytes", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]}]),
     {}, 400, "element 0"),
    ("POST", INFER, _infer_doc([{"name": "image_bytes", "datatype": "FP32", "shape": [1], "data": [1]}]), {}, 400,
     "datatype FP32 is not BYTES"),
    ("POST", INFER, _infer_doc([_tensor([1, 224, 224, 3]), _tensor([1, 224, 224, 3])]), {}, 400, "expected 1 input"),
    ("POST", INFER, _infer_doc([_tensor([1, 224, 224, 3])], [{"name": "logits"}]), {}, 400, "unknown output 'logits'"),
    ("POST", INFER, _infer_doc([_tensor([1, 224, 224, 3])], [{"name": "probabilities",
                                                               "parameters": {"classification": 99}}]),
     {}, 400, "more than the model's 6 classes"),
    ("POST", INFER, gzip.compress(b"{}")[:-5], {"Content-Encoding": "gzip"}, 400, "truncated"),
    ("POST", INFER, b"{}", {"Content-Encoding": "br"}, 415, "unsupported Content-Encoding"),
    ("POST", INFER, gzip.compress(b" " * (6 << 20)), {"Content-Encoding": "gzip"}, 413, "inflates past"),
    ("POST", INFER, b"0" * (5 << 20), {}, 413, "over the 4194304-byte limit"),
    ("POST", "/v1/classify?model=tiny", b"", {}, 400, "the request body is empty"),
    ("POST", "/v1/classify?model=tiny&top_k=0", b"x", {}, 400, "top_k '0' is not a positive integer"),
    ("POST", "/v1/classify", b"x", {}, 400, "several models are served"),
    ("POST", "/v1/classify?model=tiny", b"--x\r\n", {"Content-Type": "multipart/form-data"}, 400, "without a boundary"),
    ("POST", "/v1/classify?model=tiny", b"--b\r\nno end", {"Content-Type": "multipart/form-data; boundary=b"}, 400,
     "no closing boundary"),
]


def test_every_bad_request_gets_its_status_and_message(tiny_server, tiny):
    nan_tensor = np.zeros((1, 224, 224, 3), np.float32)
    nan_tensor[0, 5, 5, 1] = np.nan
    i = tensor_input(nan_tensor)
    body, hl = th.InferenceServerClient.generate_request_body([i])
    cases = BAD_REQUESTS + [("POST", INFER, body, {"Inference-Header-Content-Length": str(hl)}, 400,
                             "holds NaN or infinite values")]
    good = _infer_doc([_tensor([1, 224, 224, 3], fill=10.0)])
    for method, path, data, headers, status, fragment in cases:
        got, answer = tiny_server.json(method, path, data, headers)
        assert got == status, (path, fragment, got, answer)
        assert fragment in answer["error"], (fragment, answer)
        ok, res = tiny_server.json("POST", INFER, good)  # and the server still answers a good request
        assert ok == 200 and res["outputs"][0]["shape"] == [1, 6]
    assert tiny_server.proc.poll() is None


def test_a_client_that_leaves_mid_body_is_no_crash(tiny_server):
    import socket

    host, port = tiny_server.host_port.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\"")
        time.sleep(0.3)
    good = _infer_doc([_tensor([1, 224, 224, 3], fill=10.0)])
    assert tiny_server.json("POST", INFER, good)[0] == 200
    assert not any("Traceback" in line for line in tiny_server.log)


def test_static_batch_model_is_padded(tiny_server, tiny):
    clf = Classifier(tiny["static"], CPU)
    x = np.random.default_rng(5).normal(50, 30, (3, 224, 224, 3)).astype(np.float32)
    c = th.InferenceServerClient(tiny_server.host_port)
    assert c.get_model_config("st")["max_batch_size"] == 4
    r = c.infer("st", [tensor_input(x)])
    np.testing.assert_array_equal(r.as_numpy("probabilities"), clf.run(x))
    with pytest.raises(th.InferenceServerException, match="max_batch_size 4"):
        c.infer("st", [tensor_input(np.zeros((5, 224, 224, 3), np.float32))])
    c.close()


def test_gzip_bodies_and_timeouts(tiny_server):
    x = np.random.default_rng(2).normal(size=(2, 224, 224, 3)).astype(np.float32)
    c = th.InferenceServerClient(tiny_server.host_port)
    plain = c.infer("tiny", [tensor_input(x)]).as_numpy("probabilities")
    for enc in ("gzip", "deflate"):
        r = c.infer("tiny", [tensor_input(x)], request_compression_algorithm=enc)
        np.testing.assert_array_equal(r.as_numpy("probabilities"), plain)
    # tritonclient's timeout (microseconds) travels in the request: 1 us cannot be met -> 504
    with pytest.raises(th.InferenceServerException) as e:
        c.infer("tiny", [tensor_input(x)], timeout=1)
    assert "not answered within" in str(e.value) and e.value.status() == "504"
    np.testing.assert_array_equal(c.infer("tiny", [tensor_input(x)]).as_numpy("probabilities"), plain)
    c.close()


def test_metrics_and_access_log(tiny_server, photo_bytes):
    tiny_server.json("POST", "/v1/classify?model=tiny", b"not an image")
    c = th.InferenceServerClient(tiny_server.host_port)
    c.infer("tiny", [bytes_input([photo_bytes["chelsea.jpg"]])], request_id="trace-me")
    c.close()
    status, _, raw = tiny_server.request("GET", "/metrics")
    text = raw.decode()
    assert status == 200
    assert re.search(r'edge_serve_requests_total\{endpoint="infer",model="tiny",outcome="ok"\} [1-9]', text)
    assert re.search(r'edge_serve_decode_failures_total\{model="tiny"\} [1-9]', text)
    assert re.search(r'edge_serve_batch_size_count\{model="tiny"\} [1-9]', text)
    assert 'edge_serve_queue_depth{model="tiny"} 0.0' in text
    assert 'edge_serve_model_ready{model="st"} 1.0' in text
    line = tiny_server.wait_log(r'"POST /v2/models/tiny/infer" 200 .* id=trace-me')
    assert "model=tiny" in line and "images=1" in line


# --------------------------------------------------------------------------- security
def test_token(tiny, tmp_path):
    token = "s3cret-token-of-enough-length"
    f = tmp_path / "token"
    f.write_text(token + "\n")
    auth = {"Authorization": f"Bearer {token}"}
    with serving(tiny["tiny"], args=[*ENGINE, "--token-file", f], token=token) as s:
        assert s.request("GET", "/v2/health/live")[0] == 200
        for method, path in (("GET", "/v2/health/ready"), ("GET", "/v2"), ("GET", "/v2/models/tiny"),
                             ("POST", "/v2/models/tiny/infer"), ("GET", "/metrics"), ("GET", "/v1/models"),
                             ("POST", "/v1/classify")):
            status, headers, body = s.request(method, path, b"{}" if method == "POST" else None)
            assert status == 401 and headers.get("www-authenticate", "").startswith("Bearer"), path
            assert s.request(method, path, None, {"Authorization": "Bearer wrong-token-of-some-length"})[0] == 401
        assert s.request("GET", "/v2/health/ready", None, auth)[0] == 200
        c = th.InferenceServerClient(s.host_port)
        x = np.zeros((1, 224, 224, 3), np.float32)
        assert c.infer("tiny", [tensor_input(x)], headers=auth).as_numpy("probabilities").shape == (1, 6)
        with pytest.raises(th.InferenceServerException):
            c.infer("tiny", [tensor_input(x)])
        c.close()
        # The page: a login form, then a cookie.
        status, _, body = s.request("GET", "/")
        assert status == 401 and b"<form" in body
        status, _, _ = s.request("POST", "/login", b"token=nope", {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 401
        status, headers, _ = s.request("POST", "/login", f"token={token}".encode(),
                                       {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303
        cookie = headers["set-cookie"].split(";")[0]
        assert "httponly" in headers["set-cookie"].lower() and "samesite=strict" in headers["set-cookie"].lower()
        assert s.request("GET", "/v1/models", None, {"Cookie": cookie})[0] == 200


def test_tls(tiny, tmp_path):
    import shutil
    import ssl
    import subprocess

    from conftest import script

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line makes the test certificate; install Debian's openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    with serving(tiny["tiny"], args=[*ENGINE, "--tls-cert", cert, "--tls-key", key], ready=False) as s:
        assert s.url.startswith("https://")
        host, port = s.host_port.rsplit(":", 1)
        ctx = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 120
        while True:
            conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
            conn.request("GET", "/v2/health/ready")
            status = conn.getresponse().status
            conn.close()
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200
        c = th.InferenceServerClient(s.host_port, ssl=True, ssl_context_factory=lambda: ctx)
        x = np.zeros((1, 224, 224, 3), np.float32)
        assert c.infer("tiny", [tensor_input(x)]).as_numpy("probabilities").shape == (1, 6)
        c.close()
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP on the TLS port is not served
            s.request("GET", "/v2/health/live", timeout=10)
    r = subprocess.run([script("edge-serve"), "-m", str(tiny["tiny"]), "--tls-cert", str(key), "--tls-key", str(cert)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot use --tls-cert" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_exits_130(tiny):
    with serving(tiny["tiny"], args=ENGINE) as s:
        s.proc.send_signal(signal.SIGINT)
        s.proc.wait(60)
    assert s.exit_code == 130 and any("interrupted" in line for line in s.log)


def test_listening_beyond_loopback_without_token_warns(tmp_path):
    import subprocess

    from conftest import script

    r = subprocess.run([script("edge-serve"), "--host", "0.0.0.0", "--model", str(tmp_path / "missing.onnx")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3  # the model is checked before anything binds
    assert "beyond this machine, with no API token" in r.stderr and "is not a file" in r.stderr


def test_a_model_that_fails_to_load_stops_the_server(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an ONNX file")
    with serving(bad, args=ENGINE, ready=False) as s:
        s.proc.wait(120)
    assert s.exit_code == 3
    assert any("error" in line for line in s.log), s.log


# --------------------------------------------------------------------------- load and shutdown
def _post_tensor(served, x: np.ndarray, timeout=60.0):
    body, hl = th.InferenceServerClient.generate_request_body([tensor_input(x)])
    t0 = time.perf_counter()
    status, headers, raw = served.request("POST", "/v2/models/resnet50/infer", body,
                                          {"Inference-Header-Content-Length": str(hl)}, timeout)
    return status, headers, raw, time.perf_counter() - t0


def test_overload_gets_fast_503s_and_full_service_after(resnet):
    x = np.zeros((1, 224, 224, 3), np.float32)
    with serving(f"resnet50={resnet}", args=[*ENGINE, "--max-queue", "4", "--max-batch", "2",
                                             "--max-connections", "512"]) as s:
        ok, _, _, _ = _post_tensor(s, x)
        assert ok == 200
        base = rss_mib(s.proc.pid)
        n = 160  # 40x what the queue holds, all at once
        with ThreadPoolExecutor(64) as pool:
            answers = list(pool.map(lambda _: _post_tensor(s, x), range(n)))
        statuses = [a[0] for a in answers]
        assert s.proc.poll() is None
        assert set(statuses) <= {200, 503} and statuses.count(503) > n // 2 and statuses.count(200) >= 4
        for status, headers, raw, _ in answers:
            if status == 503:
                assert headers.get("retry-after") == "1" and "busy" in json.loads(raw)["error"]
        busy = statistics.median(a[3] for a in answers if a[0] == 503)
        served = statistics.median(a[3] for a in answers if a[0] == 200)
        assert busy < served, "a refusal should not wait for inference"
        assert peak_rss_mib(s.proc.pid) < base + 400, "memory grew with the number of requests refused"
        # Full service right after: a burst the queue holds is answered whole.
        with ThreadPoolExecutor(4) as pool:
            assert [a[0] for a in pool.map(lambda _: _post_tensor(s, x), range(4))] == [200] * 4
        _, _, raw = s.request("GET", "/metrics")
        text = raw.decode()
        assert re.search(r'outcome="unavailable"\} [1-9]', text)
        count = float(re.search(r'edge_serve_batch_size_count\{model="resnet50"\} (\S+)', text).group(1))
        total = float(re.search(r'edge_serve_batch_size_sum\{model="resnet50"\} (\S+)', text).group(1))
        assert total / count > 1.0, "concurrent requests were never batched together"


def test_sigterm_answers_requests_in_flight(resnet):
    x = np.zeros((1, 224, 224, 3), np.float32)
    n = 12
    with serving(f"resnet50={resnet}", args=[*ENGINE, "--max-batch", "1"]) as s:
        results: list = [None] * n

        def call(k):
            results[k] = _post_tensor(s, x)

        threads = [threading.Thread(target=call, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until most are admitted and waiting
            _, _, raw = s.request("GET", "/metrics")
            depth = float(re.search(r'edge_serve_queue_depth\{model="resnet50"\} (\S+)', raw.decode()).group(1))
            if depth >= n // 2:
                break
            time.sleep(0.01)
        s.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(120)
        assert s.proc.wait(60) == 0
    assert [r[0] for r in results] == [200] * n, "a request in flight was dropped at shutdown"
    assert any("stopped (SIGTERM)" in line for line in s.log)
