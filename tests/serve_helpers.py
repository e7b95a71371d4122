"""Starting edge-serve for tests: the real console script, on 127.0.0.1, on a free port.

``serving(...)`` starts ``edge-serve --host 127.0.0.1 --port 0``, reads the port from its
"listening on" line, waits for ``/v2/health/ready``, yields a ``Served`` and stops the
server with SIGTERM at the end (killing it only if it outlives the grace period). Every
wait is bounded: a test never hangs on a server that did not start.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from conftest import script


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen
    log: list[str] = field(default_factory=list)  # stderr lines so far
    exit_code: int | None = None  # set when the context ends

    @property
    def host_port(self) -> str:
        return self.url.split("://", 1)[1]

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60.0) -> tuple[int, dict, bytes]:
        """(status, headers with lower-case names, body) of one request on a new connection."""
        host, port = self.host_port.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body=None, headers: dict | None = None, timeout: float = 60.0):
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        status, _, raw = self.request(method, path, data, headers, timeout)
        return status, (json.loads(raw) if raw else None)

    def wait_log(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.log):
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no stderr line matching {pattern!r} in {timeout} s; got:\n" + "\n".join(self.log))


@contextlib.contextmanager
def serving(*models, args=(), timeout: float = 180.0, env: dict | None = None, ready: bool = True,
            stop_timeout: float = 60.0, token: str | None = None) -> Iterator[Served]:
    """``models``: "NAME=PATH" strings or paths. ``ready=False``: yield as soon as the port is known.
    ``token``: the server's API token (readiness needs it too)."""
    cmd = [script("edge-serve"), "--host", "127.0.0.1", "--port", "0"]
    for m in models:
        cmd += ["--model", str(m)]
    cmd += [str(a) for a in args]
    # SIGINT as a terminal has it: a runner started in the background (nohup, `cmd &`) passes it
    # on ignored, and Ctrl-C's handling would then go untested.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    served = Served("", proc)
    reader = threading.Thread(target=lambda: [served.log.append(line.rstrip("\n")) for line in proc.stderr],
                              daemon=True)
    reader.start()
    try:
        line = served.wait_log(r"listening on https?://", timeout=min(timeout, 60))
        served.url = re.search(r"(https?://\S+)", line).group(1)
        if ready:
            deadline = time.monotonic() + timeout
            while True:
                assert proc.poll() is None, "edge-serve exited while loading:\n" + "\n".join(served.log)
                auth = {"Authorization": f"Bearer {token}"} if token else {}
                try:
                    status = served.request("GET", "/v2/health/ready", headers=auth, timeout=5)[0]
                except OSError:
                    status = None
                if status == 200:
                    break
                assert status in (None, 503), f"/v2/health/ready answered {status}:\n" + "\n".join(served.log)
                assert time.monotonic() < deadline, "edge-serve not ready in time:\n" + "\n".join(served.log)
                time.sleep(0.1)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        reader.join(5)
        served.exit_code = proc.returncode


def multipart(files: list[tuple[str, bytes]], field_name: str = "image") -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data upload of ``files``."""
    boundary = "edge-serve-test-boundary-7d1f"
    out = b""
    for name, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"{name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _status_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid: int) -> float:
    return _status_mib(pid, "VmRSS")


def peak_rss_mib(pid: int) -> float:
    return _status_mib(pid, "VmHWM")


