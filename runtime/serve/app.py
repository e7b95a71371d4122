"""edge-serve's HTTP face: the Open Inference Protocol's endpoints, the plain ``/v1`` API for
curl and the page, the page itself, ``/metrics``; with the bearer token, the body limit,
the per-request timeout and one access-log line per request.

Errors are ``{"error": "..."}`` with Triton's statuses: 400 a bad request, 401 no or a wrong
token, 404 an unknown model or version, 413 a body past the limit, 503 not ready or the
queue full (with Retry-After), 504 past the request timeout, 500 a bug (its message says
so). Nothing a client sends is used as a server path: uploaded file names are only
echoed in the rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np

from ..errors import InputError, first_line
from ..results import Classification, display_name
from . import protocol
from .batcher import Busy, Expired
from .protocol import BYTES, OutputTensor, ProtocolError
from .service import IMAGE_INPUT, OUTPUT, VERSION, Service

PAGE = Path(__file__).with_name("page.html")
COOKIE = "edge_serve_token"
RETRY_AFTER_S = 1


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def build_app(service: Service, *, access_log=None, tls: bool = False):
    """The ASGI application. ``access_log``: called with each request's log line (None: none)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.routing import Route

    opts, metrics = service.opts, service.metrics
    token_digest = hashlib.sha256(opts.token.encode()).digest() if opts.token else None

    def error(status: int, message: str, headers: dict | None = None) -> Response:
        return JSONResponse({"error": message}, status, headers=headers)

    def model_of(request, *, need_ready: bool = True, name: str | None = None):
        """The model the path names (or ``name``), or the 404/503 that says why not."""
        name = name or request.path_params["model"]
        m = service.models.get(name)
        if m is None:
            raise HTTPError(404, f"unknown model '{name}' (served: {', '.join(service.models)})")
        v = request.path_params.get("version")
        if v is not None and v != VERSION:
            raise HTTPError(404, f"model '{name}' has no version '{v}' (served: {VERSION})")
        if need_ready and not m.ready:
            raise HTTPError(503, f"model '{name}' is {m.state}" + (f": {m.error}" if m.error else ""),
                            {"Retry-After": str(RETRY_AFTER_S)})
        request.scope.setdefault("edge_log", {})["model"] = name
        return m

    async def body_of(request) -> bytes:
        limit = opts.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"the request body ({declared} bytes) is over the {limit}-byte limit "
                                 "(edge-serve --max-body-size)")
        chunks, n = [], 0
        log = request.scope.setdefault("edge_log", {})
        async for chunk in _stream(request):
            n += len(chunk)
            if n > limit:
                raise HTTPError(413, f"the request body is over the {limit}-byte limit (edge-serve --max-body-size)")
            if not service.hold(len(chunk)):  # all bodies being read or served, together, are bounded too
                raise HTTPError(503, "the server holds as many request bodies as it may: retry later",
                                {"Retry-After": str(RETRY_AFTER_S)})
            log["held"] = log.get("held", 0) + len(chunk)
            chunks.append(chunk)
        return protocol.inflate(b"".join(chunks), request.headers.get("content-encoding"), limit)

    async def answered(m, futures, timeout_s: float):
        """Each image's ``Scored`` or its exception; 504 past the timeout (images not run by
        then are dropped: the batcher checks each one's deadline before its batch runs)."""
        late = HTTPError(504, f"not answered within {timeout_s:g} s (edge-serve --request-timeout, or the "
                              "request's timeout parameter); its images were dropped")
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True), timeout_s)
        except asyncio.TimeoutError:
            for f in futures:
                f.cancel()
            raise late from None
        if any(isinstance(r, Expired) for r in results):
            raise late
        return results

    def admit(m, n: int) -> None:
        try:
            m.batcher.admit(n)
        except Busy as exc:
            raise HTTPError(503, f"model '{m.name}' is busy ({exc}): retry later",
                            {"Retry-After": str(RETRY_AFTER_S)}) from None

    # --- the Open Inference Protocol ---------------------------------------------------
    async def live(request):
        return Response(status_code=200)

    async def ready(request):
        return Response(status_code=200 if service.ready else 503)

    async def server_metadata(request):
        return JSONResponse(service.server_metadata())

    async def model_metadata(request):
        return JSONResponse(model_of(request).metadata())

    async def model_ready(request):
        model_of(request, need_ready=False)
        return Response(status_code=200 if service.models[request.path_params["model"]].ready else 503)

    async def model_config(request):
        return JSONResponse(model_of(request).config(opts))

    async def infer(request):
        m = model_of(request)
        body = await body_of(request)
        req = protocol.parse_infer(body, request.headers.get(protocol.HEADER_LENGTH))
        log = request.scope.setdefault("edge_log", {})
        if req.id is not None:
            log["id"] = req.id
        if len(req.inputs) != 1:
            raise HTTPError(400, f"expected 1 input, got {len(req.inputs)}: send '{m.input_name}' (FP32) or "
                                 f"'{IMAGE_INPUT}' (BYTES), not both")
        t = req.inputs[0]
        images = _check_input(m, t, m.max_batch(opts))
        for o in req.outputs or ():
            if o.name != OUTPUT:
                raise HTTPError(400, f"unknown output '{o.name}' (this model has '{OUTPUT}')")
            if o.class_count > m.clf.contract.model.num_classes:
                raise HTTPError(400, f"classification {o.class_count} is more than the model's "
                                     f"{m.clf.contract.model.num_classes} classes")
        log["images"] = images
        admit(m, images)
        timeout = min(opts.timeout_s, req.timeout_s or opts.timeout_s)
        submit = m.batcher.submit_encoded if t.datatype == BYTES else m.batcher.submit_tensor
        results = await answered(m, submit(t.data, timeout), timeout)
        for k, r in enumerate(results):
            if isinstance(r, InputError):
                metrics.decode_failures.labels(m.name).inc()
                raise HTTPError(400, f"input '{t.name}' element {k}: {r.message}")
            if isinstance(r, BaseException):
                raise HTTPError(500, f"{r}" if str(r).startswith("internal error") else f"internal error: {r}")
        metrics.images.labels(m.name).inc(len(results))
        probs = np.stack([r.probabilities for r in results]).astype(np.float32, copy=False)
        outs = []
        for o in req.outputs or [protocol.RequestedOutput(OUTPUT, req.binary_output)]:
            if o.class_count:
                k = o.class_count
                outs.append(OutputTensor(OUTPUT, BYTES, [len(probs), k],
                                         protocol.classification(probs, k, m.clf.labels.names), o.binary))
            else:
                outs.append(OutputTensor(OUTPUT, "FP32", list(probs.shape), probs, o.binary))
        doc = {"model_name": m.name, "model_version": VERSION}
        if req.id is not None:
            doc["id"] = req.id
        payload, headers = protocol.encode_response(doc, outs)
        media = "application/octet-stream" if headers else "application/json"
        return Response(payload, 200, headers=headers, media_type=media)

    # --- the plain API, for curl and the page -----------------------------------------
    async def models(request):
        return JSONResponse({"models": [m.card(opts) for m in service.models.values()]})

    async def classify(request):
        q = request.query_params
        name = q.get("model")
        if name is None:
            if len(service.models) > 1:
                raise HTTPError(400, f"several models are served: name one with ?model= ({', '.join(service.models)})")
            name = next(iter(service.models))
        m = model_of(request, name=name)
        try:
            top_k = int(q.get("top_k", opts.top_k))
            if top_k < 1:
                raise ValueError
        except ValueError:
            raise HTTPError(400, f"top_k {q.get('top_k')!r} is not a positive integer") from None
        body = await body_of(request)
        ctype = request.headers.get("content-type", "")
        multipart = ctype.lower().startswith("multipart/form-data")
        files = multipart_files(body, ctype) if multipart else [(q.get("name", "upload"), body)]
        if not files:
            raise HTTPError(400, "the multipart body holds no file (send each image as a file part)")
        if multipart and len(files) > opts.max_queue:
            raise HTTPError(400, f"{len(files)} files in one request; at most {opts.max_queue} "
                                 "(edge-serve --max-queue)")
        if not multipart and not body:
            raise HTTPError(400, "the request body is empty: send an image (curl --data-binary @photo.jpg)")
        request.scope.setdefault("edge_log", {})["images"] = len(files)
        admit(m, len(files))
        results = await answered(m, m.batcher.submit_encoded([b for _, b in files], opts.timeout_s), opts.timeout_s)
        rows = []
        for (fname, _), r in zip(files, results):
            if isinstance(r, InputError):
                metrics.decode_failures.labels(m.name).inc()
                res = Classification(fname, error=r.message)
            elif isinstance(r, BaseException):
                raise HTTPError(500, f"{r}")
            else:
                res = m.clf.classification(fname, r.probabilities, top_k, timings_ms=r.timings_ms, notes=r.notes,
                                           decode=r.decode)
                metrics.images.labels(m.name).inc()
            rows.append(m.clf.row(res))
        if multipart:
            return JSONResponse(rows)
        return JSONResponse(rows[0], 400 if "error" in rows[0] else 200)

    async def page(request):
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers=_PAGE_HEADERS)

    async def login(request):
        body = await body_of(request)
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if token_digest is None:
            return RedirectResponse("/", 303)
        if not _same(given, token_digest):
            return HTMLResponse(_login_page("That token is not right."), 401, headers=_PAGE_HEADERS)
        r = RedirectResponse("/", 303)
        r.set_cookie(COOKIE, given, httponly=True, samesite="strict", secure=tls, path="/")
        return r

    async def metrics_page(request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    v2 = "/v2/models/{model}"
    routes = [Route("/v2/health/live", live), Route("/v2/health/ready", ready), Route("/v2", server_metadata)]
    for base in (v2, v2 + "/versions/{version}"):
        routes += [Route(base, model_metadata), Route(base + "/ready", model_ready),
                   Route(base + "/config", model_config), Route(base + "/infer", infer, methods=["POST"])]
    routes += [Route("/v1/models", models), Route("/v1/classify", classify, methods=["POST"]),
               Route("/", page), Route("/login", login, methods=["POST"]), Route("/metrics", metrics_page)]

    async def on_http_error(request, exc: HTTPError | ProtocolError):
        return error(exc.status, exc.message, getattr(exc, "headers", None))

    async def on_not_found(request, exc):
        status = getattr(exc, "status_code", 404)
        what = "method not allowed" if status == 405 else "no such endpoint"
        return error(status, f"{what}: {request.method} {display_name(request.url.path)}")

    async def on_bug(request, exc: Exception):
        return error(500, f"internal error: {type(exc).__name__}: {first_line(exc)}")

    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = Starlette(routes=routes, exception_handlers={HTTPError: on_http_error, ProtocolError: on_http_error,
                                                       StarletteHTTPException: on_not_found, Exception: on_bug})
    return _Guard(app, service, token_digest, access_log)


_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                                            "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'",
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


async def _stream(request):
    """The body's chunks; a client that goes away mid-body is a 400 nobody reads, not a traceback."""
    from starlette.requests import ClientDisconnect

    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise HTTPError(400, "the client closed the connection before its body was complete") from None


def _same(given: str, digest: bytes) -> bool:
    """Constant time: compares digests, so neither the token's bytes nor its length leak."""
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest(), digest)


def _login_page(message: str = "") -> str:
    note = f"<p role='alert'>{message}</p>" if message else ""
    return ("<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            "<title>edge-serve: token</title><body style='font:16px system-ui;max-width:28em;margin:3em auto'>"
            "<h1>edge-serve</h1><p>This server needs its API token.</p>" + note +
            "<form method=post action=/login><label>Token <input name=token type=password autofocus "
            "autocomplete=current-password></label> <button>Open</button></form>")


def multipart_files(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every part with a file name, in order, and of parts named
    ``image``/``images``/``file`` without one (``curl -F image=<photo.jpg``: named by the
    field); other form fields are not files. Parsed in memory: the body is within its limit."""
    from email.message import Message

    m = Message()
    m["content-type"] = content_type
    boundary = m.get_param("boundary")
    if not boundary or not isinstance(boundary, str):
        raise HTTPError(400, "multipart/form-data without a boundary parameter")
    delim = b"--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(b"\r\n" + delim)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise HTTPError(400, "malformed multipart body: no closing boundary")
    files = []
    for k, chunk in enumerate(chunks[1:-1]):
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise HTTPError(400, f"malformed multipart body: part {k} has no header end")
        part = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if ":" in line:
                key, value = line.split(":", 1)
                part[key.strip()] = value.strip()
        filename = part.get_filename()
        field = part.get_param("name", header="content-disposition")
        if filename is None and field in ("image", "images", "file"):
            filename = field
        if filename is not None:
            files.append((str(filename), data))
    return files


def _check_input(m, t, max_batch: int) -> int:
    """The number of images in the infer input ``t``, or a 400 that says what is wrong."""
    spec = m.clf.contract.preprocess
    one = list(spec.input_shape())
    takes = (f"this model takes '{m.input_name}' FP32 {[-1, *one]} (preprocessed) or '{IMAGE_INPUT}' "
             "BYTES [-1] (encoded images)")
    if t.name == m.input_name and t.datatype == "FP32":
        if len(t.shape) != len(one) + 1 or t.shape[1:] != one:
            raise HTTPError(400, f"input '{t.name}': shape {t.shape} is not [N, {', '.join(map(str, one))}]")
        n = t.shape[0]
        if not np.isfinite(t.data).all():
            raise HTTPError(400, f"input '{t.name}' holds NaN or infinite values")
    elif t.name in (IMAGE_INPUT, m.input_name) and t.datatype == BYTES:  # OVMS sends images under the tensor's name
        if not (len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)):
            raise HTTPError(400, f"input '{t.name}': shape {t.shape} is not [N] (one encoded image per element)")
        n = t.shape[0]
    elif t.name in (IMAGE_INPUT, m.input_name):
        want = "BYTES" if t.name == IMAGE_INPUT else "FP32 (or BYTES: encoded images)"
        raise HTTPError(400, f"input '{t.name}': datatype {t.datatype} is not {want}")
    else:
        raise HTTPError(400, f"unknown input '{t.name}': {takes}")
    if n < 1:
        raise HTTPError(400, f"input '{t.name}': an empty batch")
    if n > max_batch:
        raise HTTPError(400, f"input '{t.name}': batch of {n} is more than the model's max_batch_size {max_batch}")
    return n


class _Guard:
    """Pure ASGI middleware around the app: the bearer token, the access log and the outcome
    metrics, for every request (streamed bodies untouched)."""

    def __init__(self, app, service: Service, token_digest: bytes | None, access_log):
        self.app, self.service, self.token_digest, self.access_log = app, service, token_digest, access_log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        path = scope.get("path", "")
        state = {"status": 0, "bytes": 0}

        async def sending(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            if self.token_digest is not None and path != "/v2/health/live" and not self._authorized(scope):
                await self._refuse(scope, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            self.service.release(scope.get("edge_log", {}).get("held", 0))
            self._account(scope, path, state, time.perf_counter() - t0)

    def _authorized(self, scope) -> bool:
        if scope["path"] == "/login" and scope["method"] == "POST":
            return True
        headers = dict((k.lower(), v) for k, v in scope.get("headers", ()))
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth[:7].lower() == "bearer " and _same(auth[7:].strip(), self.token_digest):
            return True
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            key, _, value = part.strip().partition("=")
            if key == COOKIE and _same(value, self.token_digest):
                return True
        return False

    async def _refuse(self, scope, send):
        if scope["path"] == "/" and scope["method"] == "GET":
            body, ctype = _login_page().encode(), b"text/html; charset=utf-8"
        else:
            body = json.dumps({"error": "this server needs its API token: Authorization: Bearer <token>"}).encode()
            ctype = b"application/json"
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="edge-serve"')]})
        await send({"type": "http.response.body", "body": body})

    def _account(self, scope, path: str, state: dict, secs: float) -> None:
        extra = scope.get("edge_log", {})
        status = state["status"]
        model = extra.get("model", "")
        endpoint = "infer" if path.endswith("/infer") else "classify" if path == "/v1/classify" else "other"
        if endpoint != "other" or status >= 400:
            self.service.metrics.requests.labels(model, endpoint, _outcome(status)).inc()
        if endpoint != "other":  # every outcome's latency: a refusal's too
            self.service.metrics.latency.labels(model, endpoint).observe(secs)
        if self.access_log is None:
            return
        client = scope.get("client") or ("-", 0)
        line = (f'{client[0]}:{client[1]} "{scope.get("method", "-")} {display_name(path)}" {status} '
                f"{state['bytes']}B {secs * 1e3:.1f}ms")
        for key in ("model", "images", "id"):
            if key in extra:  # a client's id: its control characters escaped, its length capped
                line += f" {key}={display_name(str(extra[key])[:128])}"
        self.access_log(line)


def _outcome(status: int) -> str:
    return {200: "ok", 400: "bad_request", 401: "unauthorized", 404: "not_found", 413: "too_large",
            503: "unavailable", 504: "timeout"}.get(status, "error" if status >= 500 else str(status))


def stderr_log(line: str) -> None:
    print(f"edge-serve: {line}", file=sys.stderr, flush=True)
