"""The Open Inference Protocol (KServe v2) over HTTP, as Triton's clients speak it: parsing an
infer request and writing its response, with no web framework in sight.

What is accepted, and why each rule exists (``../shared/design/serving-protocol.md`` has the
sources):

- A JSON request, or the binary tensor data extension: ``Inference-Header-Content-Length``
  bytes of JSON, then each input with ``parameters.binary_data_size`` in input order.
- BYTES elements are framed by their own 4-byte little-endian length prefixes, read from
  the body: tritonclient counts the prefixes in ``binary_data_size``, OpenVINO Model
  Server's documents count only the payload (and let a single input omit the size), so
  the size is checked against both readings. A single element sent with no prefix at all
  (OVMS allows it for a batch of one) is recognised because its first four bytes, read as
  a length, do not fit what was sent; no image format starts with a plausible length.
- BYTES in JSON are strings (tritonclient sends them only when they are valid UTF-8) or
  ``{"b64": "..."}`` objects (TensorFlow Serving's convention), for binary data in JSON.
- gzip and deflate request bodies, inflated with a ceiling (a small bomb must not become
  gigabytes); no Content-Type is required (tritonclient sends none).
- Outputs as JSON ``data``, or binary (``binary_data`` per output, or
  ``binary_data_output`` for all) after the JSON, with ``Inference-Header-Content-Length``
  in the response; ``classification: K`` turns an output into K ``"score:index:label"``
  strings per image, highest first (the classification extension).

Every refusal is a ``ProtocolError`` with the HTTP status Triton would give and a message
that names the field at fault.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

try:  # orjson, where installed (the [serve] extra), parses a JSON tensor's numbers 3x faster
    from orjson import loads as _json_loads  # 10 ms for a [1, 224, 224, 3] tensor here, json.loads 28 ms
except ImportError:
    _json_loads = json.loads

# v2 datatypes with a fixed element size (BYTES is variable: length-prefixed elements).
DTYPES = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
BYTES = "BYTES"
HEADER_LENGTH = "inference-header-content-length"


class ProtocolError(Exception):
    """A request the protocol refuses: ``status`` is the HTTP status (400 unless said)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: object  # np.ndarray of ``shape``, or list[bytes] (BYTES, row-major)
    parameters: dict = field(default_factory=dict)


@dataclass
class RequestedOutput:
    name: str
    binary: bool = False
    class_count: int = 0  # the classification extension: top K as "score:index:label"


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None  # None: every output, as JSON (or binary_data_output)
    binary_output: bool = False  # parameters.binary_data_output: binary for outputs not named
    parameters: dict = field(default_factory=dict)

    @property
    def timeout_s(self) -> float | None:
        """tritonclient's ``timeout`` (microseconds) travels in the request's parameters."""
        t = self.parameters.get("timeout")
        return t / 1e6 if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 else None


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before Content-Encoding; larger than ``limit`` once inflated -> 413."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("identity", ""):
        return body
    if enc not in ("gzip", "deflate", "x-gzip"):
        raise ProtocolError(f"unsupported Content-Encoding {encoding!r} (gzip, deflate or none)", 415)
    # gzip: a gzip header; deflate: zlib-wrapped as RFC 9110 says, raw deflate as some clients send it.
    tries = (16 + zlib.MAX_WBITS,) if enc != "deflate" else (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    for wbits in tries:
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(body, limit + 1)
        except zlib.error as exc:
            last = exc
            continue
        if len(out) > limit or d.unconsumed_tail:
            raise ProtocolError(f"the request body inflates past the {limit}-byte limit", 413)
        if not d.eof:
            raise ProtocolError(f"the {enc} body is truncated")
        return out
    raise ProtocolError(f"the body is not valid {enc} data: {last}")


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """An infer request's body (already inflated) and its ``Inference-Header-Content-Length``."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError(f"Inference-Header-Content-Length {header_length!r} is not a number") from None
        if not 0 < n <= len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {n} does not fit a body of {len(body)} bytes")
        head, rest = body[:n], memoryview(body)[n:]
    else:
        head, rest = body, memoryview(b"")
    try:
        doc = _json_loads(head)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: json's, on deep nesting
        where = " (is Inference-Header-Content-Length right?)" if header_length is not None else ""
        raise ProtocolError(f"the request is not valid JSON{where}: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("the request must be a JSON object")
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError("'id' must be a string")
    params = _object(doc.get("parameters"), "parameters")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("'inputs' must be a non-empty list")
    inputs, offset = [], 0
    for i, spec in enumerate(raw_inputs):
        tensor, used = _input(spec, i, rest[offset:], single=len(raw_inputs) == 1)
        inputs.append(tensor)
        offset += used
    if offset != len(rest):
        raise ProtocolError(f"{len(rest) - offset} byte(s) after the last binary input are not claimed by any "
                            "input's binary_data_size")
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise ProtocolError("'outputs' must be a list")
        outputs = [_output(o, i, bool(params.get("binary_data_output"))) for i, o in enumerate(doc["outputs"])]
    return InferRequest(rid, inputs, outputs, bool(params.get("binary_data_output")), params)


def _object(v, what: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ProtocolError(f"'{what}' must be a JSON object")
    return v


def _input(spec, i: int, rest: memoryview, single: bool) -> tuple[Tensor, int]:
    if not isinstance(spec, dict):
        raise ProtocolError(f"inputs[{i}] must be a JSON object")
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"inputs[{i}] has no 'name'")
    what = f"input '{name}'"
    if datatype != BYTES and datatype not in DTYPES:
        raise ProtocolError(f"{what}: unknown datatype {datatype!r}")
    if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            or any(d < 0 for d in shape)):
        raise ProtocolError(f"{what}: 'shape' must be a list of non-negative integers")
    count = math.prod(shape)
    if count > 1 << 31:
        raise ProtocolError(f"{what}: shape {shape} is too large")
    params = _object(spec.get("parameters"), f"inputs[{i}].parameters")
    size = params.get("binary_data_size")
    if "data" in spec:
        if size is not None:
            raise ProtocolError(f"{what} has both 'data' and binary_data_size")
        data = _json_data(spec["data"], datatype, shape, count, what)
        return Tensor(name, datatype, shape, data, params), 0
    if size is None and not (single and len(rest)):
        raise ProtocolError(f"{what} has neither 'data' nor parameters.binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ProtocolError(f"{what}: binary_data_size must be a non-negative integer")
    if size is not None and size > len(rest):
        raise ProtocolError(f"{what}: binary_data_size {size} is more than the {len(rest)} byte(s) left in the body")
    if datatype == BYTES:
        elements, used = frame_bytes(rest, count, size, what)
        return Tensor(name, datatype, shape, elements, params), used
    chunk = rest if size is None else rest[:size]
    dtype = DTYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise ProtocolError(f"{what}: {len(chunk)} byte(s) of binary data for shape {shape} of {datatype} "
                            f"({count * dtype.itemsize} expected)")
    return Tensor(name, datatype, shape, np.frombuffer(chunk, dtype).reshape(shape), params), len(chunk)


def frame_bytes(rest: memoryview, count: int, size: int | None, what: str) -> tuple[list[bytes], int]:
    """``count`` length-prefixed BYTES elements from the front of ``rest``; their byte count.
    ``size`` (binary_data_size, when sent) may count the prefixes or only the payloads."""
    out, pos = [], 0
    for k in range(count):
        if pos + 4 > len(rest):
            break
        (n,) = struct.unpack_from("<I", rest, pos)
        if pos + 4 + n > len(rest):
            break
        out.append(bytes(rest[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    else:
        if size is None or size in (pos, pos - 4 * count):
            return out, pos
    # One element sent with no prefix at all (OVMS' batch of one): its first four bytes, read
    # as a length, ran past the data, or the framed size disagrees with binary_data_size.
    whole = len(rest) if size is None else size
    if count == 1 and whole and (not out or size is not None):
        return [bytes(rest[:whole])], whole
    if len(out) < count:
        raise ProtocolError(f"{what}: the binary data holds {len(out)} length-prefixed element(s), "
                            f"the shape says {count}")
    raise ProtocolError(f"{what}: binary_data_size {size} matches neither the {pos} byte(s) of its "
                        f"{count} element(s) with their 4-byte length prefixes nor {pos - 4 * count} without")


def _json_data(data, datatype: str, shape: list[int], count: int, what: str):
    if datatype == BYTES:
        flat = _flatten(data, what)
        if len(flat) != count:
            raise ProtocolError(f"{what}: {len(flat)} element(s) in 'data' for shape {shape}")
        out = []
        for k, v in enumerate(flat):
            if isinstance(v, str):
                out.append(v.encode("utf-8", "surrogatepass"))
            elif isinstance(v, dict) and isinstance(v.get("b64"), str):
                try:
                    out.append(base64.b64decode(v["b64"], validate=True))
                except ValueError:
                    raise ProtocolError(f"{what}: element {k} is not valid base64") from None
            else:
                raise ProtocolError(f"{what}: BYTES element {k} must be a string or {{\"b64\": \"...\"}}")
        return out
    try:
        arr = np.asarray(data, dtype=DTYPES[datatype] if datatype != "BOOL" else None)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProtocolError(f"{what}: 'data' is not a {datatype} array: {exc}") from None
    if arr.dtype.kind in "OUS" or (datatype == "BOOL" and arr.size and arr.dtype != np.bool_):
        raise ProtocolError(f"{what}: 'data' holds values that are not {datatype}")
    if arr.size != count:
        raise ProtocolError(f"{what}: {arr.size} value(s) in 'data' for shape {shape} ({count} expected)")
    return arr.astype(DTYPES[datatype], copy=False).reshape(shape)


def _flatten(data, what: str) -> list:
    if not isinstance(data, list):
        raise ProtocolError(f"{what}: 'data' must be a list")
    out, stack = [], [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _output(spec, i: int, binary_default: bool) -> RequestedOutput:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ProtocolError(f"outputs[{i}] must be an object with a 'name'")
    params = _object(spec.get("parameters"), f"outputs[{i}].parameters")
    k = params.get("classification", 0)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ProtocolError(f"output '{spec['name']}': classification must be a non-negative integer")
    return RequestedOutput(spec["name"], bool(params.get("binary_data", binary_default)), k)


# --- responses -------------------------------------------------------------------------
@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    data: object  # np.ndarray, or list[bytes] for BYTES
    binary: bool = False


def encode_response(doc: dict, outputs: list[OutputTensor]) -> tuple[bytes, dict]:
    """(body, extra headers): ``doc`` (model_name, model_version, id) plus ``outputs``, binary
    outputs appended after the JSON with ``Inference-Header-Content-Length`` set."""
    tail, out_docs = [], []
    for o in outputs:
        d = {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
        if o.binary:
            raw = _bytes_tensor(o.data) if o.datatype == BYTES else np.ascontiguousarray(o.data, DTYPES[o.datatype]).tobytes()
            d["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        elif o.datatype == BYTES:
            d["data"] = [b.decode("utf-8", "replace") for b in o.data]
        else:
            d["data"] = np.asarray(o.data).reshape(-1).tolist()
        out_docs.append(d)
    head = json.dumps({**doc, "outputs": out_docs}, separators=(",", ":")).encode()
    if not tail:
        return head, {}
    return head + b"".join(tail), {"Inference-Header-Content-Length": str(len(head))}


def _bytes_tensor(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in elements)


def classification(probs: np.ndarray, k: int, labels: list[str]) -> list[bytes]:
    """The classification extension for (N, C) scores: N*K ``b"score:index:label"``, each row's
    highest first. The score is the float32 value's shortest exact text (Triton writes six
    decimals; a client parses either with ``float``)."""
    from ..model.compare import topk_indices

    out = []
    for p in probs:
        for i in topk_indices(p, min(k, len(p))):
            out.append(f"{np.float32(p[i])!s}:{int(i)}:{labels[i]}".encode())
    return out
