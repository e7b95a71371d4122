"""The Open Inference Protocol's wire format (runtime/serve/protocol.py), without a server:
bodies built by tritonclient's own request writer and read back by its own response reader,
the BYTES framings clients disagree on, compressed bodies and their ceiling, and each
malformed request's message."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import numpy as np
import pytest

from edge_classify.runtime.serve import protocol
from edge_classify.runtime.serve.protocol import OutputTensor, ProtocolError

th = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is in the [test] extra")


def triton_body(inputs, outputs=None, request_id="", **params):
    """The exact body tritonclient sends, and its Inference-Header-Content-Length."""
    body, header_length = th.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, request_id=request_id, parameters=params or None)
    return body, (str(header_length) if header_length is not None else None)


def test_tritonclient_binary_tensor_is_read_exactly():
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    i = th.InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=True)
    body, hl = triton_body([i], request_id="r-1")
    assert hl is not None  # the binary extension really was used
    req = protocol.parse_infer(body, hl)
    assert req.id == "r-1" and req.inputs[0].name == "input" and req.inputs[0].shape == [2, 4, 4, 3]
    np.testing.assert_array_equal(req.inputs[0].data, x)


def test_tritonclient_json_tensor_is_read_exactly():
    x = np.random.default_rng(1).normal(size=(1, 2, 2, 3)).astype(np.float32)
    i = th.InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=False)
    body, hl = triton_body([i])
    assert hl is None
    np.testing.assert_array_equal(protocol.parse_infer(body, hl).inputs[0].data, x)


def test_bytes_framing_with_and_without_prefixes_in_the_size():
    blobs = [b"\xff\xd8jpeg-one", b"", b"\x89PNG-two-longer"]
    i = th.InferInput("image_bytes", [3], "BYTES")
    i.set_data_from_numpy(np.array(blobs, dtype=object), binary_data=True)
    body, hl = triton_body([i])
    assert protocol.parse_infer(body, hl).inputs[0].data == blobs  # tritonclient: size counts the prefixes
    # OpenVINO Model Server's reading: binary_data_size counts the payload only.
    framed = b"".join(struct.pack("<I", len(b)) + b for b in blobs)
    head = json.dumps({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [3],
                                   "parameters": {"binary_data_size": sum(map(len, blobs))}}]}).encode()
    assert protocol.parse_infer(head + framed, str(len(head))).inputs[0].data == blobs


def test_single_image_without_length_prefix_and_without_size():
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
    head = json.dumps({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1]}]}).encode()
    assert protocol.parse_infer(head + jpeg, str(len(head))).inputs[0].data == [jpeg]


def test_bytes_in_json_as_text_or_base64():
    doc = {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [2],
                       "data": ["plain", {"b64": "AAEC/w=="}]}]}
    assert protocol.parse_infer(json.dumps(doc).encode(), None).inputs[0].data == [b"plain", b"\x00\x01\x02\xff"]


def test_two_binary_inputs_in_order_and_trailing_bytes_refused():
    a, b = np.arange(6, dtype=np.float32), np.arange(3, dtype=np.int64)
    ia, ib = th.InferInput("a", [6], "FP32"), th.InferInput("b", [3], "INT64")
    ia.set_data_from_numpy(a)
    ib.set_data_from_numpy(b)
    body, hl = triton_body([ia, ib])
    req = protocol.parse_infer(body, hl)
    np.testing.assert_array_equal(req.inputs[0].data, a)
    np.testing.assert_array_equal(req.inputs[1].data, b)
    with pytest.raises(ProtocolError, match="not claimed"):
        protocol.parse_infer(body + b"xx", hl)


@pytest.mark.parametrize("encoding, pack", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),  # RFC 9110's deflate: zlib-wrapped
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some clients send it
])
def test_compressed_bodies(encoding, pack):
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}).encode()
    assert protocol.inflate(pack(body), encoding, 1 << 20) == body


def test_inflate_has_a_ceiling():
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros: ~8 kB on the wire
    assert len(bomb) < 64 << 10
    with pytest.raises(ProtocolError) as e:
        protocol.inflate(bomb, "gzip", 1 << 20)
    assert e.value.status == 413
    with pytest.raises(ProtocolError) as e:
        protocol.inflate(b"not gzip", "gzip", 1 << 20)
    assert e.value.status == 400
    with pytest.raises(ProtocolError) as e:
        protocol.inflate(b"x", "br", 1 << 20)
    assert e.value.status == 415


BAD = [
    (b"{not json", None, "not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, None, "not valid JSON"),  # too deep for either parser: a 400, not a crash
    (b"[]", None, "must be a JSON object"),
    (b'{"inputs": []}', None, "'inputs' must be a non-empty list"),
    (b'{"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}', None, "has no 'name'"),
    (b'{"inputs": [{"name": "x", "datatype": "FP33", "shape": [1], "data": [1]}]}', None, "unknown datatype"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}', None, "non-negative integers"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}', None, "1 value(s) in 'data'"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": ["a", "b"]}]}', None, "not a FP32 array"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2]}]}', None, "neither 'data' nor"),
    (b'{"id": 5, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}', None, "'id' must be"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}', "abc", "is not a number"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}', "9999", "does not fit"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}abcd',
     "json", "binary_data_size 8 is more than"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4}}]}abcd',
     "json", "4 byte(s) of binary data for shape [2]"),
    (b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2], "data": [1, 2]}]}', None, "must be a string"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": [{"parameters": {}}]}',
     None, "must be an object with a 'name'"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], '
     b'"outputs": [{"name": "p", "parameters": {"classification": -1}}]}', None, "non-negative integer"),
]


@pytest.mark.parametrize("body, header_length, message", BAD, ids=[m for _, _, m in BAD])
def test_malformed_requests_say_what_is_wrong(body, header_length, message):
    if header_length == "json":  # the JSON's own length: the binary part is what is wrong
        header_length = str(body.rindex(b"}") + 1)
    with pytest.raises(ProtocolError) as e:
        protocol.parse_infer(body, header_length)
    assert e.value.status == 400
    assert message in e.value.message


def test_bytes_element_count_must_match_the_shape():
    i = th.InferInput("image_bytes", [2], "BYTES")
    i.set_data_from_numpy(np.array([b"one", b"two"], dtype=object))
    body, hl = triton_body([i])
    doc_len = int(hl)
    doc = json.loads(body[:doc_len])
    doc["inputs"][0]["shape"] = [3]
    head = json.dumps(doc).encode()
    with pytest.raises(ProtocolError, match="2 length-prefixed element"):
        protocol.parse_infer(head + body[doc_len:], str(len(head)))


def test_responses_read_back_by_tritonclient():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], np.float32)
    labels = ["cat", "dog:husky", "owl"]  # a colon inside a label stays in the label
    strings = protocol.classification(probs, 2, labels)
    assert strings == [b"0.7:1:dog:husky", b"0.2:2:owl", b"0.5:0:cat", b"0.25:1:dog:husky"]
    for binary in (True, False):
        outs = [OutputTensor("probabilities", "FP32", [2, 3], probs, binary),
                OutputTensor("top", "BYTES", [2, 2], strings, binary)]
        body, headers = protocol.encode_response({"model_name": "m", "model_version": "1", "id": "q"}, outs)
        hl = headers.get("Inference-Header-Content-Length")
        assert (hl is not None) == binary
        r = th.InferResult.from_response_body(body, header_length=int(hl) if hl else None)
        assert r.get_response()["id"] == "q"
        np.testing.assert_array_equal(r.as_numpy("probabilities"), probs)
        got = r.as_numpy("top").reshape(-1).tolist()  # JSON BYTES come back as str, binary as bytes
        assert [g if isinstance(g, bytes) else g.encode() for g in got] == strings
    # the text is exact: read as float32 it is the probability, bit for bit
    scores = [np.float32(float(s.split(b":")[0])) for s in strings]
    assert scores == [probs[0, 1], probs[0, 2], probs[1, 0], probs[1, 1]]
