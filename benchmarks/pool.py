"""The parent side of the worker processes (worker.py): start, build, ask, shut down.

Each worker's stderr goes to ``<log_dir>/<name>.log``; an error names that file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


class WorkerError(RuntimeError):
    pass


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-").lower()


class Worker:
    def __init__(self, label: str, log_dir: Path):
        self.label = label
        self.meta: dict = {}  # the build reply: name, kind, precision, create_s, notes, info
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{slug(label)}.log"
        self._log = open(self.log_path, "w")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_classify.benchmarks.worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, bufsize=1, env=env)

    @property
    def name(self) -> str:
        return self.meta.get("name", self.label)

    def send(self, op: str, **fields) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise self._died()
        reply = json.loads(line)
        if not reply.pop("ok", False):
            raise WorkerError(f"{self.label}: {reply.get('error')} (log: {self.log_path})")
        return reply

    def request(self, op: str, **fields) -> dict:
        self.send(op, **fields)
        return self.receive()

    def run(self, input_path: Path, iterations: int, warmup: int = 0, ready_run: bool = True) -> list[float]:
        return self.request("run", input=str(input_path), iterations=iterations, warmup=warmup,
                            ready_run=ready_run)["samples_s"]

    def _died(self) -> WorkerError:
        rc = self.proc.wait()
        self._log.flush()
        tail = self.log_path.read_text(errors="replace")[-800:]
        return WorkerError(f"{self.label}: worker exited with status {rc}; log {self.log_path}:\n{tail}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request("quit")
                self.proc.wait(timeout=30)
            except (WorkerError, OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._log.close()


class Pool:
    """Workers by row name; ``with Pool(...)`` shuts every one down on the way out."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.workers: dict[str, Worker] = {}

    def build(self, specs: list[dict], parallel: bool = False) -> list[tuple[dict, str]]:
        """Start one worker per spec and build its system; returns (spec, error) for those
        that failed (their workers are shut down). ``parallel`` overlaps the builds (faster,
        but then each ``create_s`` includes waiting for the CPU)."""
        started = [(spec, Worker(spec["name"], self.log_dir)) for spec in specs]
        failed = []
        if parallel:
            for spec, w in started:
                w.send("build", spec=spec)
        for spec, w in started:
            try:
                w.meta = w.receive() if parallel else w.request("build", spec=spec)
                self.workers[w.name] = w
            except WorkerError as exc:
                failed.append((spec, str(exc)))
                w.close()
        return failed

    def __getitem__(self, name: str) -> Worker:
        return self.workers[name]

    def __iter__(self):
        return iter(list(self.workers.values()))

    def close(self, keep: tuple[str, ...] = ()) -> None:
        for name in [n for n in self.workers if n not in keep]:
            self.workers.pop(name).close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def task(name: str, spec: dict, log_dir: Path, label: str | None = None) -> dict:
    """A one-off job (worker.py's ``task`` op) in a fresh process of its own."""
    w = Worker(label or name, log_dir)
    try:
        return w.request("task", name=name, spec=spec)
    finally:
        w.close()
