"""A folder of camera-size JPEGs for benchmarks, built on demand from scikit-image's photos.

Phones and camera traps write 8-20 MP JPEGs; the bundled photos are 0.1-0.5 MP. Each photo
here is one of scikit-image's, upscaled with sharpening and sensor-like grain
(``export.fast_decode.camera_jpeg``, the same recipe export uses for its fast-decode
figure) to a camera size between 8 and 20 MP (3264x2448 to 5120x3840, some portrait),
at JPEG quality 85-95: 2-5 MB each, like phone photos. A few carry an EXIF orientation
(3, 5, 6, 8; the pixels stored turned the way a camera stores them), one is progressive
and one has restart markers.

Never committed: ``build()`` writes it once into the cache home
(``$EDGE_CLASSIFY_HOME/bench/camera-photos-v1-<n>``, else ``~/.cache/edge-classify/...``)
and reuses it while its manifest matches. ``python -m edge_classify.benchmarks.camera_photos``
prints the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
from pathlib import Path

VERSION = 1
SOURCES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
           "ihc.png", "retina.jpg", "camera.png", "coins.png")
SIZES = ((3264, 2448), (4000, 3000), (4032, 3024), (4608, 3456), (5120, 3840), (4000, 2250))  # 8-19.7 MP
ORIENTED = {3: 3, 5: 5, 8: 6, 13: 8}  # photo index -> EXIF orientation
PROGRESSIVE, RESTARTS = 4, 7  # photo indices


def default_folder(n: int) -> Path:
    home = os.environ.get("EDGE_CLASSIFY_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "edge-classify")
    return Path(home) / "bench" / f"camera-photos-v{VERSION}-{n}"


def exif_orientation_segment(orientation: int) -> bytes:
    """An APP1 segment holding only an EXIF IFD0 with the orientation tag (big-endian TIFF)."""
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an EXIF orientation segment right after its start-of-image marker."""
    return jpeg[:2] + exif_orientation_segment(orientation) + jpeg[2:]


def _stored(bgr, orientation: int):
    """The pixels as a camera stores them for ``orientation`` (applying it shows ``bgr`` upright)."""
    import cv2

    return {3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
            5: lambda a: cv2.transpose(a),
            6: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
            8: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE)}[orientation](bgr)


def plan(n: int) -> list[dict]:
    """What each of the ``n`` files is: source photo, size, quality, orientation, kind."""
    out = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        if i % 4 == 1:
            w, h = h, w  # portrait
        orientation = ORIENTED.get(i)
        kind = "progressive" if i == PROGRESSIVE else "restart" if i == RESTARTS else "baseline"
        out.append({"name": f"cam{i:03d}.jpg", "source": SOURCES[i % len(SOURCES)], "width": w, "height": h,
                    "quality": 85 + (i * 7) % 11, "orientation": orientation, "kind": kind})
    return out


def build(folder: str | os.PathLike | None = None, n: int = 32, say=print) -> Path:
    """The folder of ``n`` camera-size JPEGs, built unless it is there already."""
    import cv2
    import skimage

    from edge_classify.export.fast_decode import camera_jpeg

    folder = Path(folder) if folder is not None else default_folder(n)
    manifest = {"version": VERSION, "files": plan(n)}
    mf = folder / "manifest.json"
    if mf.is_file() and json.loads(mf.read_text()) == manifest and \
            all((folder / f["name"]).is_file() for f in manifest["files"]):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    data_dir = Path(skimage.__file__).parent / "data"
    for i, f in enumerate(manifest["files"]):
        bgr = cv2.imread(str(data_dir / f["source"]), cv2.IMREAD_COLOR)
        w, h = f["width"], f["height"]
        if f["orientation"]:
            if f["orientation"] in (5, 6, 7, 8):
                w, h = h, w  # the stored picture is turned: its sides swap
            bgr = _stored(bgr, f["orientation"])
        data = camera_jpeg(bgr, w, h, quality=f["quality"], seed=i, progressive=f["kind"] == "progressive",
                           restart_rows=4 if f["kind"] == "restart" else 0)
        if f["orientation"]:
            data = with_orientation(data, f["orientation"])
        (folder / f["name"]).write_bytes(data)
        f["bytes"] = len(data)
    (folder / "manifest.json").write_text(json.dumps({"version": VERSION, "files": plan(n)}))
    total = sum(f["bytes"] for f in manifest["files"])
    say(f"camera photos: {n} JPEGs, {total / 2**20:.0f} MiB, in {folder}")
    return folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="build (or find) the camera-size benchmark photos; prints the folder")
    p.add_argument("--out", type=Path, default=None, help="folder (default: in the cache home)")
    p.add_argument("-n", type=int, default=32, help="number of photos (default 32)")
    args = p.parse_args(argv)
    print(build(args.out, args.n, say=lambda m: None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
