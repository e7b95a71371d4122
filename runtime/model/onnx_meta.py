"""An ONNX file's ``metadata_props`` read without ONNX, ONNX Runtime or OpenVINO.

The contract lives in the model's metadata, and every engine needs it before it loads the
graph (TensorRT sizes its optimisation profile from it; the OpenVINO engine has no API
for ONNX metadata at all). A ``ModelProto`` is a protobuf message whose top-level fields
can be walked by tag and length: the graph (field 7, nearly all of the file) is skipped
with one seek, so reading the metadata of a 97 MiB model touches a few kilobytes.
"""

from __future__ import annotations

import io
import os

_METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {1: key, 2: value}
_MAX_FIELDS = 100_000  # a real ModelProto has a few dozen top-level fields


class NotOnnx(ValueError):
    """The bytes are not a protobuf ModelProto we can walk."""


def _varint(read) -> int | None:
    shift = value = 0
    for _ in range(10):
        b = read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value
        shift += 7
    raise NotOnnx("malformed varint")


def _fields(stream, end: int):
    """(field number, wire type, value or (offset, length)) for each field up to ``end``."""
    for _ in range(_MAX_FIELDS):
        if stream.tell() >= end:
            return
        tag = _varint(stream.read)
        if tag is None:
            return
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            yield number, wire, _varint(stream.read)
        elif wire == 2:
            length = _varint(stream.read)
            if length is None or stream.tell() + length > end:
                raise NotOnnx("field runs past the end of the file")
            start = stream.tell()
            yield number, wire, (start, length)
            stream.seek(start + length)
        elif wire in (1, 5):
            stream.seek(8 if wire == 1 else 4, os.SEEK_CUR)
        else:
            raise NotOnnx(f"unexpected protobuf wire type {wire}")
    raise NotOnnx("too many top-level fields")


def _entry(stream, start: int, length: int) -> tuple[str, str]:
    stream.seek(start)
    key = value = ""
    for number, wire, val in _fields(stream, start + length):
        if wire == 2 and number in (1, 2):
            stream.seek(val[0])
            text = stream.read(val[1]).decode("utf-8", "replace")
            key, value = (text, value) if number == 1 else (key, text)
            stream.seek(val[0] + val[1])
    return key, value


def metadata(source: str | os.PathLike | bytes) -> dict[str, str]:
    """``metadata_props`` of an ONNX model file (path) or serialized model (bytes)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _walk(io.BytesIO(bytes(source)))
    with open(source, "rb") as f:
        return _walk(f)


def _walk(stream) -> dict[str, str]:
    stream.seek(0, os.SEEK_END)
    end = stream.tell()
    stream.seek(0)
    entries = [val for number, wire, val in _fields(stream, end) if number == _METADATA_PROPS and wire == 2]
    out = {}
    for start, length in entries:
        key, value = _entry(stream, start, length)
        out[key] = value
    return out
