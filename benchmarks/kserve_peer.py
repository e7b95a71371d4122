"""KServe peer for the serving benchmark (not part of the edge_classify package).

A minimal KServe Python model server that serves one ONNX image classifier
with onnxruntime (CPUExecutionProvider) behind the Open Inference Protocol
(KServe v2) REST endpoints: ``POST /v2/models/NAME/infer``,
``GET /v2/health/ready`` and ``GET /v2/models/NAME/ready`` come from kserve.

Written against kserve 0.21.0 (FastAPI/uvicorn REST server). It runs only in
its own virtualenv (``pip install kserve onnxruntime pillow numpy``); nothing in
the package imports it. The benchmark starts it as a subprocess::

    python kserve_peer.py --model /path/m.onnx --name NAME --port P [--threads N]

and drives it with plain JSON v2 tensors over HTTP (``"data"`` in the request
body, FP32, the model's own input shape such as [N,224,224,3]), the client
format kserve accepts. Send ``Content-Type: application/json``: without it
kserve treats the body as binary-extension bytes and answers 400.
One uvicorn worker, HTTP only on 127.0.0.1, gRPC disabled.
"""
from __future__ import annotations

import argparse
import logging
import sys

# kserve parses sys.argv when imported (parse_known_args, with abbreviations:
# our --model would land in its --model_name), so hide our arguments from it.
_argv, sys.argv = sys.argv, sys.argv[:1]
import kserve  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402
from kserve.errors import InvalidInput  # noqa: E402
from kserve.protocol.rest import server as _rest_server  # noqa: E402
from kserve.utils.utils import generate_uuid  # noqa: E402

sys.argv = _argv

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

HOST = "127.0.0.1"

# kserve 0.21 hard-codes host="0.0.0.0" in RESTServer's uvicorn.Config; the
# config is not loaded until serve(), so rebinding it here is enough.
_orig_rest_init = _rest_server.RESTServer.__init__


def _rest_init_local(self, *args, **kwargs):
    _orig_rest_init(self, *args, **kwargs)
    self.config.host = HOST


_rest_server.RESTServer.__init__ = _rest_init_local


class OnnxClassifier(kserve.Model):
    def __init__(self, name: str, model_path: str, threads: int | None = None):
        super().__init__(name)
        self.model_path = model_path
        self.threads = threads
        self.load()

    def load(self) -> bool:
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        self.session = ort.InferenceSession(
            self.model_path, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.input_shape = inp.name, inp.shape
        self.output_name, self.output_shape = out.name, out.shape
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        x = np.asarray(payload.inputs[0].as_numpy(), dtype=np.float32)
        if x.ndim != len(self.input_shape) or any(
            isinstance(d, int) and d != s for d, s in zip(self.input_shape, x.shape)
        ):
            raise InvalidInput(
                f"input shape {list(x.shape)} does not match model {self.input_shape}"
            )
        y = self.session.run([self.output_name], {self.input_name: x})[0]
        out = InferOutput(name=self.output_name, shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=payload.use_binary_outputs)
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=[out],
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="path to the .onnx file")
    ap.add_argument("--name", required=True, help="model name in the v2 URLs")
    ap.add_argument("--port", type=int, required=True, help="HTTP port")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads")
    a = ap.parse_args()
    model = OnnxClassifier(a.name, a.model, a.threads)
    server = kserve.ModelServer(
        http_port=a.port, workers=1, enable_grpc=False, enable_latency_logging=False
    )
    # No per-request log lines (uvicorn access log, kserve timing trace).
    for noisy in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
