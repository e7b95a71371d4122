"""The class names an exported model carries, from the user's file or training folder.

``--labels FILE``: one label per line (UTF-8, blank lines at the end ignored) or a JSON
list. ``--labels-from-dir DIR``: the sorted names of DIR's subfolders, skipping hidden
ones, which is the order ``keras.utils.image_dataset_from_directory`` assigns class
indices in. The count must equal what the model's output holds (``check_count``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge_classify.runtime.errors import EXIT_USAGE, EdgeClassifyError
from edge_classify.runtime.model.contract import LabelSet


def _usage(msg: str, hint: str = "") -> EdgeClassifyError:
    return EdgeClassifyError(msg, hint=hint, exit_code=EXIT_USAGE)


def from_file(path: str | os.PathLike) -> LabelSet:
    p = Path(path)
    try:
        text = p.read_text("utf-8-sig")
    except FileNotFoundError:
        raise _usage(f"labels file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _usage(f"cannot read labels file {p}: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except ValueError as exc:
            raise _usage(f"{p} looks like JSON but does not parse: {exc}") from None
        if not all(isinstance(n, str) for n in names):
            raise _usage(f"{p}: a JSON labels file is a list of strings")
    else:
        names = text.splitlines()
        while names and not names[-1].strip():
            names.pop()
        names = [n.strip() for n in names]
    return _checked(names, str(p), f"--labels {p}")


def from_dir(folder: str | os.PathLike) -> LabelSet:
    d = Path(folder)
    if not d.is_dir():
        raise _usage(f"--labels-from-dir {d}: not a directory")
    names = sorted(e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise _usage(f"--labels-from-dir {d}: no subfolders (one per class, as image_dataset_from_directory reads)")
    return _checked(names, f"subfolders of {d}", f"--labels-from-dir {d}")


def generic(n: int) -> LabelSet:
    return LabelSet(tuple(f"class_{i}" for i in range(n)), (None,) * n, "generic: class_<index>")


def _checked(names: list[str], source: str, flag: str) -> LabelSet:
    if not names:
        raise _usage(f"{flag}: no labels")
    empty = [i for i, n in enumerate(names) if not n]
    if empty:
        raise _usage(f"{flag}: label {empty[0]} is empty (blank line?)")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise _usage(f"{flag}: label {n!r} appears twice (indices {seen[n]} and {i})")
        seen[n] = i
    return LabelSet(tuple(names), (None,) * len(names), source)


def check_count(labels: LabelSet, classes: int, head: str, flag: str) -> None:
    """Exit 2 naming both numbers when the labels do not fit the model's output."""
    if len(labels) != classes:
        what = ("a binary head (one sigmoid unit) has 2 classes" if head == "binary"
                else f"the model outputs {classes} scores")
        raise _usage(f"{flag} gives {len(labels)} labels but {what}",
                     hint="one label per output, in the model's class-index order (image_dataset_from_directory: "
                          "sorted folder names)")
