"""One benchmarked system in its own process: ``python -m edge_classify.benchmarks.worker``.

Why a process per system: with TensorFlow, several ONNX Runtime sessions and OpenVINO in
one process, each runtime's threads (spinning, or holding pools) slowed the others; on a
2-core Xeon that inflated the INT8 median from 11.7 ms to 32-42 ms. Between requests a
worker is blocked reading its stdin, so it takes no CPU while the others are timed.

Protocol: JSON lines; one request on stdin, one reply on stdout (``{"ok": true, ...}`` or
``{"ok": false, "error": ...}``). Requests:

- ``{"op": "build", "spec": {...}}``: build the system (systems.build) -> name, kind,
  precision, create_s, notes, info.
- ``{"op": "run", "input": "x.npy", "iterations": n, "warmup": w}``: time ``n`` calls on
  the array in that file (its first axis is the batch) with ``perf_counter`` here, after
  ``w`` untimed ones -> ``samples_s``. A batch size not seen before is compiled
  (``System.prepare``) and run once untimed first (unless ``"ready_run": false``).
- ``{"op": "output", "input": "x.npy", "save": "y.npy"}``: one call, its output saved ->
  ``ms`` (the first such call is the system's first inference).
- ``{"op": "task", "name": "nncf_quantize" | "engine_choice", "spec": {...}}``: a one-off job.
- ``{"op": "quit"}``.

Whatever a library prints goes to stderr (the parent sends it to a log file), because
stdout is the protocol.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import numpy as np


class Worker:
    def __init__(self):
        self.system = None
        self.inputs: dict[str, np.ndarray] = {}
        self.prepared: set[int] = set()

    def _input(self, path: str) -> np.ndarray:
        if path not in self.inputs:
            self.inputs[path] = np.ascontiguousarray(np.load(path))
        return self.inputs[path]

    def _ready(self, x: np.ndarray, run_once: bool) -> None:
        if len(x) in self.prepared:
            return
        if self.system.prepare is not None:
            self.system.prepare(len(x))
        if run_once:
            self.system.run(x)
        self.prepared.add(len(x))

    def handle(self, req: dict) -> dict:
        from . import systems

        op = req["op"]
        if op == "build":
            self.system = s = systems.build(req["spec"])
            return {"name": s.name, "kind": s.kind, "precision": s.precision, "create_s": s.create_s,
                    "notes": s.notes, "info": s.info}
        if op == "output":
            x = self._input(req["input"])
            t0 = time.perf_counter()
            out = np.asarray(self.system.run(x))
            ms = (time.perf_counter() - t0) * 1e3
            self.prepared.add(len(x))
            np.save(req["save"], out)
            return {"ms": ms, "info": self.system.info}
        if op == "run":
            x = self._input(req["input"])
            self._ready(x, req.get("ready_run", True))
            run = self.system.run
            for _ in range(req.get("warmup", 0)):
                run(x)
            samples = []
            for _ in range(req["iterations"]):
                t0 = time.perf_counter()
                run(x)
                samples.append(time.perf_counter() - t0)
            return {"samples_s": samples}
        if op == "task":
            task = {"nncf_quantize": systems.nncf_quantize, "engine_choice": systems.engine_choice}[req["name"]]
            return task(req["spec"])
        if op == "quit":
            return {}
        raise ValueError(f"unknown op {op!r}")


def main() -> int:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints from TensorFlow, OpenVINO, NNCF land in the log, not in the protocol
    worker = Worker()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = {"ok": True, **worker.handle(req)}
        except Exception as exc:  # reported to the parent, which decides whether the run goes on
            traceback.print_exc()
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        protocol.write(json.dumps(reply, default=str) + "\n")
        if req.get("op") == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
