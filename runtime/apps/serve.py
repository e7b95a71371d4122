"""``edge-serve``: exported models as an HTTP service that Triton's clients can call (the Open
Inference Protocol), with a plain JSON endpoint and a web page (runtime/serve/).

A thin shell: parse, load in the background while the port already answers liveness
(readiness waits for every model to be loaded, checked and warmed), serve until SIGTERM
or Ctrl-C, finish what is in flight, exit. Imports only the standard library until it
has to serve, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from .. import __version__
from ..cache.paths import default_model_path
from ..errors import EXIT_MODEL, EXIT_OK, EXIT_USAGE, EdgeClassifyError, exit_codes_help
from . import flags, shell

EPILOG = """\
examples:
  edge-serve --model resnet50.onnx                    http://127.0.0.1:8000/ (the page), /v2 (the protocol)
  edge-serve --model cats=cats.onnx --model dogs=dogs-int8.onnx --port 9000
  edge-serve -m m.onnx --host 0.0.0.0 --token-file /etc/edge-serve/token --tls-cert c.pem --tls-key k.pem
  edge-serve -m m.onnx --max-batch 16 --max-queue-delay-ms 2 --max-queue 128
  curl --data-binary @cat.jpg 'http://127.0.0.1:8000/v1/classify?top_k=3'
  curl -F image=@a.jpg -F image=@b.png http://127.0.0.1:8000/v1/classify

""" + exit_codes_help("edge-serve") + "\n"

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-serve",
        description="Serve exported models over HTTP: the Open Inference Protocol (KServe v2, as Triton's clients "
                    "call it), POST /v1/classify for curl, and a web page at /.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", action="append", default=None, metavar="[NAME=]PATH",
                   help="an exported .onnx model, served as NAME (default: the file's stem); repeatable "
                        f"(default: {default_model_path()})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; ::1 for IPv6 loopback, "
                        "0.0.0.0 for every interface: use --token-file then)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default: 8000; 0: any free port, printed)")
    p.add_argument("--max-batch", type=flags.positive_int, default=8, metavar="N",
                   help="images per inference batch, from concurrent requests together; also the largest batch "
                        "one request may send (default: 8; a static-batch model: its own)")
    p.add_argument("--max-queue-delay-ms", type=flags.non_negative, default=5.0, metavar="MS",
                   help="how long a batch smaller than --max-batch waits for images still being decoded; it never "
                        "waits when none are (default: 5)")
    p.add_argument("--max-queue", type=flags.positive_int, default=64, metavar="N",
                   help="images admitted per model and not yet answered; a request past it gets 503 with "
                        "Retry-After at once (default: 64)")
    p.add_argument("--max-body-size", type=flags.count(flags.BYTE_SUFFIX), default=32 << 20, metavar="SIZE",
                   help="largest request body, after gzip/deflate is inflated (413 past it; default: 32M); all bodies "
                        "held at once are bounded by 8x this (503 past it)")
    p.add_argument("--max-connections", type=flags.positive_int, default=128, metavar="N",
                   help="requests served at once; past it the HTTP layer answers 503 (default: 128)")
    p.add_argument("--request-timeout", type=flags.positive, default=30.0, metavar="SECONDS",
                   help="answer 504 and drop a request's images not run by then (default: 30; a client's "
                        "timeout parameter may shorten it)")
    p.add_argument("--decode-threads", type=flags.positive_int, default=None, metavar="N",
                   help="threads decoding images while a batch infers (default: the cores, at most 4)")
    p.add_argument("--top-k", "-k", type=flags.positive_int, default=3,
                   help="/v1/classify's predictions per image when the request does not say (default: 3)")
    p.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="require this bearer token (the file's first line) on every endpoint but "
                        "/v2/health/live; the page asks for it once and keeps it in a cookie")
    p.add_argument("--tls-cert", type=Path, default=None, metavar="PEM", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="the certificate's private key")
    p.add_argument("--grace-period", type=flags.non_negative, default=30.0, metavar="SECONDS",
                   help="on SIGTERM: stop accepting, and give requests in flight this long to finish (default: 30)")
    flags.add_engine_flags(p)
    flags.add_decode_flags(p)
    p.add_argument("--no-access-log", action="store_true", help="no line per request on stderr")
    p.add_argument("--quiet", "-q", action="store_true", help="no informational lines on stderr (errors still)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


_port = flags.number(int, "a port number", lambda v: 0 <= v <= 65535, "is not between 0 and 65535")


def main(argv: list[str] | None = None) -> int:
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return shell.run("edge-serve", lambda: _run(args, parser))


def model_names(specs: list[str] | None, parser) -> dict[str, Path]:
    """``[NAME=]PATH`` specs -> {name: path}; a name is what a URL may hold."""
    out: dict[str, Path] = {}
    for spec in specs or [str(default_model_path())]:
        name, sep, path = spec.partition("=")
        if not sep or not _NAME.match(name):  # a path with '=' in it and no name, or a bare path
            name, path = Path(spec).stem, spec
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".-") or "model"
        if name in out:
            parser.error(f"two models named {name!r}: name them (--model NAME=PATH)")
        out[name] = Path(path)
    return out


def _run(args, parser) -> int:
    def info(msg: str) -> None:
        if not args.quiet:
            print(f"edge-serve: {msg}", file=sys.stderr, flush=True)

    def warn(msg: str) -> None:
        print(f"edge-serve: warning: {msg}", file=sys.stderr, flush=True)

    if not _loopback(args.host) and args.token_file is None:
        warn(f"listening on {args.host}, beyond this machine, with no API token: anyone who can reach the port "
             "can use it (--token-file FILE)")
    models = model_names(args.model, parser)
    for name, path in models.items():
        if not path.is_file():
            raise EdgeClassifyError(f"model {name!r}: {path} is not a file",
                                    hint="export one with export-model, or pass --model NAME=PATH")
    token = _read_token(args.token_file) if args.token_file else None
    if args.tls_cert is not None:
        _check_tls(args.tls_cert, args.tls_key)

    from ..host import deps

    deps.serve_parts()
    import uvicorn

    from ..serve.app import build_app, stderr_log
    from ..serve.service import Service, ServeOptions

    opts = ServeOptions(
        engine=flags.engine_options(args), decode=flags.decode_options(args), max_batch=args.max_batch,
        max_delay_ms=args.max_queue_delay_ms, max_queue=args.max_queue, max_body_bytes=args.max_body_size,
        timeout_s=args.request_timeout,
        decode_threads=args.decode_threads, top_k=args.top_k, token=token)
    service = Service(models, opts)
    app = build_app(service, access_log=None if args.no_access_log else stderr_log, tls=args.tls_cert is not None)
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    scheme = "https" if args.tls_cert else "http"
    shown = f"[{host}]" if ":" in host else host
    listening = f"listening on {scheme}://{shown}:{port} (models loading: not ready yet)"
    if args.quiet and args.port == 0:  # the one way to learn the port it picked
        print(f"edge-serve: {listening}", file=sys.stderr, flush=True)
    else:
        info(listening)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=args.grace_period, limit_concurrency=args.max_connections,
                            ssl_certfile=str(args.tls_cert) if args.tls_cert else None,
                            ssl_keyfile=str(args.tls_key) if args.tls_key else None, server_header=False)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def load() -> None:
        t0 = time.perf_counter()
        try:
            service.load(on_status=info)
        except BaseException as exc:  # the server stops; main reports it
            failure.append(exc)
            server.should_exit = True
            return
        for m in service.models.values():
            r = m.clf.runner
            info(f"model {m.name}: {m.path} ({m.clf.contract.model.arch} {m.clf.contract.model.precision}) on "
                 f"{r.engine} ({r.device}), computing in {r.precision}; max batch {m.max_batch(opts)}")
            for line in (m.clf.report.cache_warning, m.clf.report.provider_warning):
                if line:
                    warn(f"model {m.name}: {line}")
            if m.clf.contract.weights_origin == "random":
                warn(f"model {m.name} was exported with --weights random (smoke test): its predictions are "
                     "meaningless")
        info(f"ready in {time.perf_counter() - t0:.1f} s: {scheme}://{shown}:{port}/ "
             f"({', '.join(service.models)})")

    loader = threading.Thread(target=load, name="edge-serve-load", daemon=True)
    terminated: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    try:
        loader.start()
        server.run(sockets=[sock])  # returns once stopped: SIGTERM/Ctrl-C, in-flight requests finished
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.close()  # a load still running stops before making its batcher
    if failure:
        exc = failure[0]
        if isinstance(exc, EdgeClassifyError):
            raise exc
        raise EdgeClassifyError(f"could not load the models: {type(exc).__name__}: {exc}", exit_code=EXIT_MODEL)
    if terminated:
        info("stopped (SIGTERM): requests in flight were answered")
    return EXIT_OK


def _read_token(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeClassifyError(f"cannot read the token file {path}: {exc}", exit_code=EXIT_USAGE) from None
    token = text.splitlines()[0].strip() if text.strip() else ""
    if len(token) < 16:
        raise EdgeClassifyError(f"the token in {path} is {'empty' if not token else 'shorter than 16 characters'}",
                                hint="python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE",
                                exit_code=EXIT_USAGE)
    return token


def _check_tls(cert: Path, key: Path) -> None:
    """The certificate and key load, before anything binds (uvicorn would fail later, with a traceback)."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise EdgeClassifyError(f"cannot use --tls-cert {cert} with --tls-key {key}: {exc}",
                                hint="both PEM files, the key unencrypted and matching the certificate",
                                exit_code=EXIT_USAGE) from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything loads (so --port 0's port can be printed)."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise EdgeClassifyError(f"cannot listen on {host!r}: {exc}", exit_code=EXIT_USAGE) from None
    family, kind, proto, _, addr = infos[0]
    # The protocol number matters: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says IPPROTO_TCP. With 0, each response's body waited for the
    # client's delayed ACK: 44 ms on every answer with a body here.
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise EdgeClassifyError(f"cannot listen on {host} port {port}: {exc.strerror}",
                                hint="another program uses the port: pick another with --port", exit_code=EXIT_USAGE)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
