"""Small, really trained Keras image classifiers for tests, built in seconds on a CPU.

Each is fine-tuned the way users do it: images in class folders (scikit-learn's bundled
8x8 digits, upscaled, tinted, saved as PNG/JPEG at sizes other than the model input so the
resize matters), a few epochs with a fixed seed, then saved as ``.keras``. Their held-out
predictions vary and are confident, so top-1 parity between Keras and ONNX means something.

``build_<name>(workdir) -> Built`` trains once per workdir (later calls, in this process or
another, read ``workdir/<name>/built.json``); ``keras_reference(built, paths)`` is Keras'
own output with the training preprocessing. TensorFlow is imported only inside functions.

Speed notes (2 CPU cores): tracing the train step costs far more than the epochs, so XLA is
off (its compile takes a minute), batch sizes divide the data (a partial last batch traces
again), and BatchNorm momentum is 0.8 while training (0.99 leaves the moving statistics,
used at inference, far from what a short training saw; it is set back before saving).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Folder names sort differently from digit order: class index != digit.
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ATTRIBUTES = ("even", "greater_than_four", "round", "has_straight_stroke")
_ATTR_DIGITS = ({0, 2, 4, 6, 8}, {5, 6, 7, 8, 9}, {0, 6, 8, 9}, {1, 4, 7})
SEED = 1234
SIZE = (32, 32)  # every model's input (height, width)


@dataclass
class Dataset:
    train_dir: Path  # root/train/<label>/*.png|jpg
    heldout_dir: Path  # root/heldout/<label>/...
    labels: list[str]  # sorted folder names = image_dataset_from_directory's class order
    heldout: list[Path]
    heldout_labels: list[str]


@dataclass
class Built:
    name: str
    path: Path  # the saved .keras file
    labels: list[str]  # class names in output order (attribute names for "sigmoid")
    input_size: tuple[int, int]  # (height, width)
    preprocessing: str  # "raw" | "tf" | "torch" | "caffe"
    resize: str  # "bilinear" (image_dataset_from_directory) | "nearest" (load_img arrays)
    head: str  # "softmax" | "logits" | "sigmoid" (multi-label) | "binary" (1 unit, P(labels[1]))
    data_dir: Path  # training images, one subfolder per class
    heldout: list[Path]
    heldout_labels: list  # true label per held-out image; a list of attribute names for "sigmoid"
    accuracy: float = 0.0  # held-out, from keras_reference; per-attribute for "sigmoid"
    build_seconds: float = 0.0  # wall clock of the first build (dataset included if it made it)
    extra: dict = field(default_factory=dict)  # cpu_seconds


def make_dataset(root, size: int = 32, n_per_class: int = 120, seed: int = 0, *,
                 n_heldout: int = 20, digits=range(10)) -> Dataset:
    """Digits as colour images in ``root/train/<word>/`` and ``root/heldout/<word>/``.

    Each image is ``size``..``2*size`` pixels per side (rarely square): a light tinted digit
    on a dark tinted gradient, with noise; every third file is a JPEG, the others PNG.
    Made once per ``root`` (``root/dataset.json``); a later call returns what is there."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(root)
    if not (root / "dataset.json").is_file():
        rng = np.random.default_rng(seed)
        images, targets = load_digits(return_X_y=True)
        for d in digits:
            for j, i in enumerate(rng.permutation(np.flatnonzero(targets == d))[: n_per_class + n_heldout]):
                out = root / ("train" if j < n_per_class else "heldout") / WORDS[d]
                out.mkdir(parents=True, exist_ok=True)
                w, h = (int(v) for v in rng.integers(size, 2 * size + 1, 2))
                mask = Image.fromarray((images[i].reshape(8, 8) * 255 / 16).astype(np.uint8))
                a = np.asarray(mask.resize((w, h), Image.BICUBIC), np.float32)[..., None] / 255
                bg = rng.uniform(0, 100, 3) + np.linspace(-1, 1, w)[None, :, None] * rng.uniform(-30, 30, 3)
                img = bg * (1 - a) + rng.uniform(150, 255, 3) * a + rng.normal(0, 6, (h, w, 3))
                name, kw = (f"{i:04d}.jpg", {"quality": 90}) if j % 3 == 2 else (f"{i:04d}.png", {})
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out / name, **kw)
        (root / "dataset.json").write_text(json.dumps({"size": size, "n_per_class": n_per_class, "seed": seed}))
    heldout = sorted((root / "heldout").glob("*/*.*"))
    return Dataset(root / "train", root / "heldout", sorted(p.name for p in (root / "train").iterdir()),
                   heldout, [p.parent.name for p in heldout])


# ---------------------------------------------------------------------------- Keras side

def _preprocess(x, mode: str):
    if mode == "raw":
        return np.asarray(x, np.float32)
    from keras.applications import imagenet_utils

    return np.asarray(imagenet_utils.preprocess_input(np.array(x, np.float32), mode=mode), np.float32)


def _dir_arrays(train_dir: Path, size=SIZE):
    """(pixels, int labels) exactly as image_dataset_from_directory yields them (bilinear)."""
    import keras

    ds = keras.utils.image_dataset_from_directory(train_dir, image_size=size, batch_size=256, shuffle=False,
                                                  verbose=False)
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in ds))
    return np.concatenate(xs), np.concatenate(ys)


def _load_arrays(paths, size=SIZE):
    """keras.utils.load_img(target_size=...) arrays: nearest-neighbour resize."""
    import keras

    return np.stack([keras.utils.img_to_array(keras.utils.load_img(str(p), target_size=size)) for p in paths])


def _small_cnn(x, widths=(32, 64, 96)):
    from keras import layers

    for w in widths:
        x = layers.BatchNormalization()(layers.Conv2D(w, 3, padding="same", use_bias=False)(x))
        x = layers.MaxPooling2D()(layers.ReLU()(x))
    return layers.GlobalAveragePooling2D()(x)


def _fit(model, x, y, loss, epochs, batch=40, optimizer=None):
    import keras

    bns = [lay for lay in model._flatten_layers() if isinstance(lay, keras.layers.BatchNormalization)]
    for lay in bns:
        lay.momentum = 0.8
    model.compile(optimizer=optimizer or keras.optimizers.Adam(2e-3), loss=loss, jit_compile=False)
    model.optimizer.build(model.trainable_variables)  # else fit traces its train step twice
    model.fit(x, y, epochs=epochs, batch_size=batch, shuffle=True, verbose=0)
    for lay in bns:
        lay.momentum = 0.99


_LOADED: dict[str, object] = {}


def load(built: Built):
    """The saved Keras model (loaded once per process)."""
    import keras

    if str(built.path) not in _LOADED:
        _LOADED[str(built.path)] = keras.models.load_model(built.path, compile=False)
    return _LOADED[str(built.path)]


def keras_reference(built: Built, image_paths) -> np.ndarray:
    """Keras' raw output (logits stay logits, binary stays one column) with the training
    preprocessing. nearest: load_img(target_size) + img_to_array; bilinear: load_img at full
    size + img_to_array, then tf.image.resize(bilinear) (the pixels an OpenCV decoder gets,
    so a comparison isolates the resize); then the mode's preprocess_input and predict."""
    import keras
    import tensorflow as tf

    if built.resize == "nearest":
        x = _load_arrays(image_paths, built.input_size)
    else:
        x = np.stack([tf.image.resize(keras.utils.img_to_array(keras.utils.load_img(str(p))),
                                      built.input_size, "bilinear").numpy() for p in image_paths])
    x = _preprocess(x, built.preprocessing)
    return np.asarray(load(built).predict(x, batch_size=len(x), verbose=0), np.float32)


def probabilities(built: Built, out) -> np.ndarray:
    """Model output -> probabilities: softmax of logits, [1-p, p] for binary, else as is."""
    out = np.asarray(out, np.float64)
    if built.head == "logits":
        e = np.exp(out - out.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    return np.concatenate([1 - out, out], 1) if built.head == "binary" else out


def predicted(built: Built, out) -> list:
    """Model output -> label per image (the list of attributes over 0.5 for "sigmoid")."""
    if built.head == "sigmoid":
        return [[a for a, v in zip(built.labels, row) if v > 0.5] for row in np.asarray(out)]
    return [built.labels[i] for i in probabilities(built, out).argmax(1)]


def accuracy(built: Built, out) -> float:
    if built.head == "sigmoid":
        truth = np.array([[a in t for a in built.labels] for t in built.heldout_labels])
        return float(((np.asarray(out) > 0.5) == truth).mean())
    return float(np.mean([p == t for p, t in zip(predicted(built, out), built.heldout_labels)]))


# ---------------------------------------------------------------------------- models

def _cached(name: str, preprocessing: str, resize: str, head: str):
    """Train once per workdir: ``train(workdir) -> (model, Dataset[, labels, heldout_labels])``."""
    def wrap(train):
        def build(workdir) -> Built:
            workdir = Path(workdir).resolve()
            out = workdir / name
            if (out / "built.json").is_file():
                d = json.loads((out / "built.json").read_text())
                d.update(path=Path(d["path"]), data_dir=Path(d["data_dir"]), input_size=tuple(d["input_size"]),
                         heldout=[Path(p) for p in d["heldout"]])
                return Built(**d)
            import keras

            t0, c0 = time.perf_counter(), time.process_time()
            keras.utils.set_random_seed(SEED)
            model, ds, *relabel = train(workdir)
            labels, truth = relabel or (ds.labels, ds.heldout_labels)
            out.mkdir(parents=True, exist_ok=True)
            model.save(out / f"{name}.keras")
            built = Built(name, out / f"{name}.keras", list(labels), SIZE, preprocessing, resize, head,
                          ds.train_dir, ds.heldout, list(truth))
            built.accuracy = round(accuracy(built, keras_reference(built, built.heldout)), 4)
            built.build_seconds = round(time.perf_counter() - t0, 1)
            built.extra["cpu_seconds"] = round(time.process_time() - c0, 1)  # all threads; less load-sensitive
            (out / "built.json").write_text(json.dumps(asdict(built), default=str, indent=1))
            return built
        build.__name__ = build.__qualname__ = f"build_{name}"
        build.__doc__ = train.__doc__
        return build
    return wrap


def _digits(workdir: Path):
    ds = make_dataset(workdir / "digits")
    return (ds, *_dir_arrays(ds.train_dir))


@_cached("mobilenetv2_rescaling", "raw", "bilinear", "softmax")
def build_mobilenetv2_rescaling(workdir):
    """Rescaling(1/127.5, -1) -> MobileNetV2(alpha=0.35) -> GAP -> Dense softmax."""
    import keras
    from keras import layers

    ds, x, y = _digits(workdir)
    backbone = keras.applications.MobileNetV2(alpha=0.35, weights=None, include_top=False, input_shape=(*SIZE, 3))
    inp = keras.Input((*SIZE, 3))
    h = layers.GlobalAveragePooling2D()(backbone(layers.Rescaling(1 / 127.5, offset=-1)(inp)))
    model = keras.Model(inp, layers.Dense(10, activation="softmax")(h))
    # SGD + momentum learns as fast as Adam here and traces seconds faster (one graph per variable).
    _fit(model, x, y, "sparse_categorical_crossentropy", 7, optimizer=keras.optimizers.SGD(0.02, momentum=0.9))
    return model, ds


@_cached("resnet50_logits", "caffe", "bilinear", "logits")
def build_resnet50_logits(workdir):
    """ResNet50 (caffe inputs) -> avg pool -> Dense(10) logits, from_logits loss.

    A step takes ~1 s per 16 images here, so the whole network sees 400 images once, each
    residual block starting as identity (its last BatchNorm's gamma = 0, the "zero-gamma"
    init of Goyal et al. 2017; from the default init 25 steps leave ResNet50 at chance).
    Then, as in frozen-backbone fine-tuning, the Dense head alone is refitted on the
    backbone's features of all training images (a few seconds), for confident logits."""
    import keras
    from keras import layers

    ds, x, y = _digits(workdir)
    x = _preprocess(x, "caffe")
    backbone = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(*SIZE, 3), pooling="avg")
    for lay in backbone.layers:
        if lay.name.endswith("_3_bn"):
            lay.gamma.assign(np.zeros(lay.gamma.shape, np.float32))
    head = layers.Dense(10)
    model = keras.Model(backbone.input, head(backbone.output))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    keep = np.random.default_rng(SEED).permutation(len(x))[:400]
    _fit(model, x[keep], y[keep], loss, 1, batch=16, optimizer=keras.optimizers.Adam(3e-3))
    features = np.concatenate([backbone(x[i:i + 200], training=False).numpy() for i in range(0, len(x), 200)])
    _fit(keras.Sequential([keras.Input(features.shape[1:]), head]), features, y, loss, 30, batch=200,
         optimizer=keras.optimizers.Adam(1e-2))
    model.compile(optimizer="adam", loss=loss)  # a fresh optimizer: no 190 MB of Adam moments in the file
    return model, ds


@_cached("multilabel_sigmoid", "tf", "bilinear", "sigmoid")
def build_multilabel_sigmoid(workdir):
    """Small CNN -> Dense(4, sigmoid) over ATTRIBUTES, binary cross-entropy on multi-hot targets."""
    import keras
    from keras import layers

    ds, x, y = _digits(workdir)
    has = [[WORDS.index(w) in s for s in _ATTR_DIGITS] for w in ds.labels]  # class index -> multi-hot
    inp = keras.Input((*SIZE, 3))
    model = keras.Model(inp, layers.Dense(len(ATTRIBUTES), activation="sigmoid")(_small_cnn(inp)))
    _fit(model, _preprocess(x, "tf"), np.array(has, np.float32)[y], "binary_crossentropy", 8)
    truth = [[a for a, h in zip(ATTRIBUTES, has[ds.labels.index(w)]) if h] for w in ds.heldout_labels]
    return model, ds, ATTRIBUTES, truth


@_cached("mixed_float16", "raw", "bilinear", "softmax")
def build_mixed_float16(workdir):
    """Rescaling(1/255) -> small CNN under mixed_float16 -> Dense -> Activation(softmax, float32)."""
    import keras
    from keras import layers

    ds, x, y = _digits(workdir)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inp = keras.Input((*SIZE, 3))
        h = layers.Dense(10)(_small_cnn(layers.Rescaling(1 / 255)(inp), (16, 32, 64)))
        model = keras.Model(inp, layers.Activation("softmax", dtype="float32")(h))
        _fit(model, x, y, "sparse_categorical_crossentropy", 6)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model, ds


@_cached("augmented", "raw", "bilinear", "softmax")
def build_augmented(workdir):
    """Nested Sequential(RandomFlip, RandomRotation, RandomZoom, RandomContrast) -> Rescaling(1/255)
    -> small CNN -> Dropout -> Dense softmax."""
    import keras
    from keras import layers

    ds, x, y = _digits(workdir)
    # Mirrored digits cost a few points of accuracy (0.95 vs 0.885 in one trial), but users flip.
    augment = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.05),
                                layers.RandomZoom(0.1), layers.RandomContrast(0.2)], name="augmentation")
    inp = keras.Input((*SIZE, 3))
    h = _small_cnn(layers.Rescaling(1 / 255)(augment(inp)), (24, 48, 64))
    model = keras.Model(inp, layers.Dense(10, activation="softmax")(layers.Dropout(0.2)(h)))
    _fit(model, x, y, "sparse_categorical_crossentropy", 15)
    return model, ds


@_cached("binary_sigmoid", "torch", "nearest", "binary")
def build_binary_sigmoid(workdir):
    """Two folders, "eight" and "three" (sorted: P("three") is the unit); small CNN -> Dense(1, sigmoid);
    torch preprocessing on keras.utils.load_img(target_size) arrays."""
    import keras
    from keras import layers

    ds = make_dataset(workdir / "digits-3-8", seed=1, digits=(3, 8))
    paths = sorted(ds.train_dir.glob("*/*.*"))
    y = np.array([ds.labels.index(p.parent.name) for p in paths], np.float32)
    inp = keras.Input((*SIZE, 3))
    model = keras.Model(inp, layers.Dense(1, activation="sigmoid")(_small_cnn(inp, (16, 32, 48))))
    _fit(model, _preprocess(_load_arrays(paths), "torch"), y, "binary_crossentropy", 10)
    return model, ds


BUILDERS = {f.__name__.removeprefix("build_"): f for f in (
    build_mobilenetv2_rescaling, build_resnet50_logits, build_multilabel_sigmoid,
    build_mixed_float16, build_augmented, build_binary_sigmoid)}
