#!/usr/bin/env python3
"""Generate runtime/labels/imagenet1k.json: the ImageNet-1k class index in Keras form.

What it produces
----------------
The same data as Keras' ``imagenet_class_index.json`` (the file that
``keras.applications.imagenet_utils.decode_predictions`` downloads), i.e. the
1000 ILSVRC-2012 classes as ``[wnid, name]`` pairs in Keras index order
(index 0 = ["n01440764", "tench"], 386 = ["n02504458", "African_elephant"],
999 = ["n15075141", "toilet_tissue"]), written as::

    {"source": "<where it came from>",
     "classes": [["n01440764", "tench"], ..., ["n15075141", "toilet_tissue"]]}

Where the data comes from
-------------------------
Keras' JSON file itself is only downloadable from Google storage, which is not
reachable here; the same table ships as Python data in the ``keras-hub`` wheel
(PyPI), file ``keras_hub/src/utils/imagenet/imagenet_utils.py``, dict literal
``IMAGENET_NAMES = {0: ("n01440764", "tench"), ...}`` (checked with
keras-hub 0.32.0).  The dict is read straight out of the wheel (a zip file)
with ``ast.literal_eval``; keras-hub is never imported or installed.

Optional cross-check (``--timm-wheel``): the ``timm`` wheel ships
``timm/data/_info/imagenet_synsets.txt`` (the 1000 wnids in index order) and
``timm/data/_info/imagenet_synset_to_lemma.txt`` (WordNet lemmas per wnid).
With it, the script also asserts that the wnid order equals timm's, and that
every Keras name equals the first WordNet lemma with spaces replaced by
underscores (which is how the Keras/Caffe names were made).

Checks always run: exactly 1000 entries with keys 0..999, wnids well-formed,
unique and in ascending order, names non-empty ASCII, spot checks of
indices 0, 1, 386, 999, and the only duplicated names are Keras' known ones
("crane" at 134 and 517, "maillot" at 638 and 639).  Any failure aborts
without writing the output.

How to rerun
------------
Only PyPI is needed, and nothing is installed::

    pip download --no-deps -d /tmp/kh keras-hub
    pip download --no-deps -d /tmp/timm timm          # optional cross-check
    python tools/make_imagenet_labels.py \\
        --keras-hub-wheel /tmp/kh/keras_hub-*.whl \\
        --timm-wheel /tmp/timm/timm-*.whl

Both wheel options also accept an already unpacked wheel directory.  The
output path defaults to runtime/labels/imagenet1k.json next to this tools/
folder (override with ``--out``).  Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import collections
import hashlib
import json
import os
import re
import sys
import zipfile

KERAS_HUB_FILE = "keras_hub/src/utils/imagenet/imagenet_utils.py"
KERAS_HUB_VAR = "IMAGENET_NAMES"
TIMM_SYNSETS = "timm/data/_info/imagenet_synsets.txt"
TIMM_LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"

SPOT_CHECKS = {
    0: ("n01440764", "tench"),
    1: ("n01443537", "goldfish"),
    386: ("n02504458", "African_elephant"),
    999: ("n15075141", "toilet_tissue"),
}
# Names Keras itself lists twice (different synsets, same first lemma).
KNOWN_DUPLICATES = {"crane": [134, 517], "maillot": [638, 639]}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "runtime", "labels", "imagenet1k.json")


class Package:
    """A wheel file or an unpacked wheel directory; read files by archive path."""

    def __init__(self, path: str):
        self.path = path
        self.is_dir = os.path.isdir(path)
        if not self.is_dir and not zipfile.is_zipfile(path):
            raise SystemExit(f"not a wheel/zip or directory: {path}")

    def read_text(self, member: str) -> str:
        if self.is_dir:
            with open(os.path.join(self.path, member), encoding="utf-8") as f:
                return f.read()
        with zipfile.ZipFile(self.path) as z:
            return z.read(member).decode("utf-8")

    def version(self, dist: str) -> str:
        """Version from the wheel's *.dist-info/METADATA, else from the file name."""
        prefix = dist.replace("-", "_") + "-"
        if self.is_dir:
            names = [n + "/METADATA" for n in os.listdir(self.path)
                     if n.startswith(prefix) and n.endswith(".dist-info")]
        else:
            with zipfile.ZipFile(self.path) as z:
                names = [n for n in z.namelist()
                         if n.startswith(prefix) and n.endswith(".dist-info/METADATA")]
        for n in names:
            for line in self.read_text(n).splitlines():
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
        base = os.path.basename(self.path.rstrip("/"))
        m = re.match(re.escape(prefix) + r"([^-]+)", base)
        return m.group(1) if m else "unknown"

    def sha256(self) -> str | None:
        if self.is_dir:
            return None
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()


def load_keras_hub(pkg: Package) -> list[tuple[str, str]]:
    tree = ast.parse(pkg.read_text(KERAS_HUB_FILE))
    table = None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == KERAS_HUB_VAR):
            table = ast.literal_eval(node.value)
    if table is None:
        raise SystemExit(f"{KERAS_HUB_VAR} not found in {KERAS_HUB_FILE}")
    if sorted(table) != list(range(1000)):
        raise SystemExit(f"{KERAS_HUB_VAR}: keys are not exactly 0..999 "
                         f"({len(table)} keys)")
    return [tuple(table[i]) for i in range(1000)]


def check(classes: list[tuple[str, str]]) -> list[str]:
    """Structural checks; returns a list of problems (empty if all good)."""
    bad = []
    if len(classes) != 1000:
        bad.append(f"{len(classes)} entries, expected 1000")
    wnids = [w for w, _ in classes]
    for i, (w, n) in enumerate(classes):
        if not re.fullmatch(r"n\d{8}", w):
            bad.append(f"{i}: malformed wnid {w!r}")
        if not n or not n.isascii() or n != n.strip():
            bad.append(f"{i}: bad name {n!r}")
    if len(set(wnids)) != len(wnids):
        bad.append("wnids not unique")
    if wnids != sorted(wnids):
        bad.append("wnids not in ascending order")
    for i, want in SPOT_CHECKS.items():
        if i < len(classes) and classes[i] != want:
            bad.append(f"{i}: {classes[i]} != {want}")
    where = collections.defaultdict(list)
    for i, (_, n) in enumerate(classes):
        where[n].append(i)
    dups = {n: ix for n, ix in where.items() if len(ix) > 1}
    if dups != KNOWN_DUPLICATES:
        bad.append(f"duplicate names {dups} != known {KNOWN_DUPLICATES}")
    return bad


def cross_check_timm(classes: list[tuple[str, str]], pkg: Package) -> list[str]:
    bad = []
    synsets = pkg.read_text(TIMM_SYNSETS).split()
    if synsets != [w for w, _ in classes]:
        diff = [i for i, (a, (b, _)) in enumerate(zip(synsets, classes)) if a != b]
        bad.append(f"wnid order differs from timm {TIMM_SYNSETS} "
                   f"(len {len(synsets)}; first differing indices {diff[:10]})")
    lemmas = {}
    for line in pkg.read_text(TIMM_LEMMAS).splitlines():
        if "\t" in line:
            w, lem = line.split("\t", 1)
            lemmas[w] = lem
    for i, (w, n) in enumerate(classes):
        if w not in lemmas:
            bad.append(f"{i}: {w} missing from timm {TIMM_LEMMAS}")
            continue
        expect = lemmas[w].split(",")[0].strip().replace(" ", "_")
        if n != expect:
            bad.append(f"{i}: name {n!r} != first WordNet lemma {expect!r}")
    return bad


def write_json(path: str, source: str, classes: list[tuple[str, str]]) -> None:
    lines = ["{", f'  "source": {json.dumps(source)},', '  "classes": [']
    for i, (w, n) in enumerate(classes):
        sep = "," if i < len(classes) - 1 else ""
        lines.append(f"    {json.dumps([w, n])}{sep}")
    lines += ["  ]", "}"]
    text = "\n".join(lines) + "\n"
    # Round-trip to be sure the hand-formatted JSON is what we mean.
    back = json.loads(text)
    assert back["source"] == source
    assert [tuple(c) for c in back["classes"]] == classes
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keras-hub-wheel", required=True,
                    help="keras_hub-*.whl from `pip download --no-deps keras-hub` "
                         "(or its unpacked directory)")
    ap.add_argument("--timm-wheel",
                    help="optional timm-*.whl (or unpacked dir) for the wnid/lemma "
                         "cross-check")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help=f"output JSON (default: {os.path.relpath(DEFAULT_OUT, ROOT)})")
    args = ap.parse_args(argv)

    kh = Package(args.keras_hub_wheel)
    kh_version = kh.version("keras-hub")
    classes = load_keras_hub(kh)
    problems = check(classes)

    timm_note = ""
    if args.timm_wheel:
        tm = Package(args.timm_wheel)
        tm_version = tm.version("timm")
        problems += cross_check_timm(classes, tm)
        timm_note = (f" Cross-checked against timm {tm_version}: wnid order equals "
                     f"{TIMM_SYNSETS}, and every name equals the first WordNet "
                     f"lemma in {TIMM_LEMMAS} with spaces replaced by underscores.")

    if problems:
        for p in problems:
            print("FAIL:", p, file=sys.stderr)
        return 1

    sha = kh.sha256()
    source = (
        "ImageNet-1k (ILSVRC-2012) class index, identical in content and order to "
        "Keras' imagenet_class_index.json (keras.applications.imagenet_utils."
        "decode_predictions). Extracted from PyPI package keras-hub "
        f"{kh_version}, file {KERAS_HUB_FILE}, dict {KERAS_HUB_VAR}"
        + (f" (wheel sha256 {sha})" if sha else "")
        + ". Entries are [wnid, name]; list position is the class index; wnids "
        "ascending. Keras' duplicate names kept as-is: 'crane' at 134 and 517, "
        "'maillot' at 638 and 639." + timm_note
        + " Generated by tools/make_imagenet_labels.py."
    )
    write_json(args.out, source, classes)
    print(f"wrote {args.out}: {len(classes)} classes from keras-hub {kh_version}"
          + (" (timm cross-check passed)" if args.timm_wheel else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
