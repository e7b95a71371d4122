"""Where the Keras weights come from: ImageNet download, a local file, or random.

``imagenet`` goes through Keras' own download-and-cache path (``keras.utils.get_file``,
same URL, hash and cache folder as ``keras.applications``). Before TensorFlow is even
imported, a cache miss is checked against the network with a short timeout, so an
offline machine gets one clear message within seconds instead of a traceback.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from edge_classify.runtime.errors import EXIT_MODEL, EdgeClassifyError

# From keras/src/applications/resnet.py (BASE_WEIGHTS_PATH, WEIGHTS_HASHES[arch][0]):
# the include_top=True ImageNet files and their md5, as keras.applications fetches them.
KERAS_RESNET_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
IMAGENET_MD5 = {
    "resnet50": "2cb95161c43110f7111970584f804107",
    "resnet101": "f1aeb4b969a6efcfb50fad2f0c20cfc5",
    "resnet152": "100835be76be38e30d865e96f2aaae62",
}
PREFLIGHT_TIMEOUT_S = 10


@dataclass
class WeightsSpec:
    origin: str  # imagenet | file | random
    arch: str
    path: Path | None = None  # local file (after download for imagenet)
    url: str | None = None
    seed: int | None = None
    md5: str | None = None
    extra: dict = field(default_factory=dict)

    def provenance(self) -> dict:
        d = {"origin": self.origin}
        if self.url:
            d["url"] = self.url
        if self.path is not None:
            d["file"] = self.path.name
            d["sha256"] = sha256_file(self.path)
        if self.seed is not None:
            d["seed"] = self.seed
        return d


def imagenet_filename(arch: str) -> str:
    return f"{arch}_weights_tf_dim_ordering_tf_kernels.h5"


def keras_cache_file(fname: str) -> Path:
    """The path ``keras.utils.get_file(fname, cache_subdir="models")`` uses."""
    base = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    if not os.access(base, os.W_OK) and os.path.exists(base):
        base = os.path.join("/tmp", ".keras")
    return Path(base) / "models" / fname


def resolve(weights: str, arch: str, seed: int | None = None) -> WeightsSpec:
    """Check the ``--weights`` value and fail fast on what cannot work (no TF import)."""
    if weights == "random":
        return WeightsSpec("random", arch, seed=0 if seed is None else seed)
    if weights == "imagenet":
        if arch not in IMAGENET_MD5:  # Keras downloads it itself (keras_model._imagenet_via_keras)
            return WeightsSpec("imagenet", arch)
        fname = imagenet_filename(arch)
        url = KERAS_RESNET_WEIGHTS + fname
        if not keras_cache_file(fname).is_file():
            _preflight(url, arch)
        return WeightsSpec("imagenet", arch, url=url, md5=IMAGENET_MD5[arch])
    path = Path(weights).expanduser()
    if not path.is_file():
        raise EdgeClassifyError(
            f"weights file not found: {weights}",
            hint="--weights takes imagenet, random, or the path of a Keras weights file (.h5 / .weights.h5)",
        )
    if not (path.name.endswith(".h5") or path.name.endswith(".keras")):
        raise EdgeClassifyError(
            f"{weights} is not a Keras weights file (.h5 / .weights.h5)", exit_code=EXIT_MODEL
        )
    return WeightsSpec("file", arch, path=path)


def _preflight(url: str, arch: str) -> None:
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=PREFLIGHT_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise offline_error(url, arch, getattr(exc, "reason", exc)) from None


def offline_error(url: str, arch: str, reason, weights_file: str | None = None) -> EdgeClassifyError:
    weights_file = weights_file or f"Keras' {imagenet_filename(arch)}"
    return EdgeClassifyError(
        f"cannot download the ImageNet weights for {arch} from {url} ({reason})",
        hint=(
            "if this machine is offline, copy that file here and pass --weights PATH "
            f"(it is {weights_file}), or use --weights random "
            "for a smoke test (meaningless predictions)"
        ),
    )


def download(spec: WeightsSpec) -> Path:
    """Fetch (or reuse from Keras' cache) the ImageNet file through ``keras.utils.get_file``."""
    import keras

    try:
        path = keras.utils.get_file(
            imagenet_filename(spec.arch), spec.url, cache_subdir="models", file_hash=spec.md5
        )
    except Exception as exc:  # get_file raises plain Exception on fetch failures
        raise offline_error(spec.url, spec.arch, exc) from None
    spec.path = Path(path)
    return spec.path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
