"""The install targets the package promises, checked from its own files (issue 11, defect 7).

The runtime must install and import on JetPack 5 (Ubuntu 20.04, Python 3.8) and JetPack 6
(Python 3.10), beside JetPack's own OpenCV and NVIDIA's onnxruntime-gpu wheel. No Python 3.8
interpreter is available here, so the runtime's source is checked against 3.8 statically:
its syntax with ``ast``'s 3.8 grammar, its use of the standard library and builtins with
``vermin`` (which knows the version each module, member and keyword argument appeared in).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_FILES = sorted((ROOT / "runtime").rglob("*.py"))
JETPACK_PYTHONS = {"JetPack 5": (3, 8), "JetPack 6": (3, 10)}


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _admits(spec: str, version: tuple[int, int]) -> bool:
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(spec).contains(".".join(map(str, version)) + ".0")


@pytest.mark.parametrize("jetpack", sorted(JETPACK_PYTHONS))
def test_requires_python_admits_jetpack_pythons(project, jetpack):
    assert _admits(project["requires-python"], JETPACK_PYTHONS[jetpack]), (
        f"requires-python {project['requires-python']!r} excludes {jetpack}'s Python")


def test_runtime_files_exist():
    names = {p.relative_to(ROOT / "runtime").as_posix() for p in RUNTIME_FILES}
    assert {"classifier.py", "apps/classify.py", "apps/streams.py", "engines/tensorrt.py"} <= names


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=lambda p: p.relative_to(ROOT / "runtime").as_posix())
def test_runtime_syntax_is_python38(path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 8))


_TYPES = {"str", "int", "float", "bytes", "bool", "list", "dict", "tuple", "set", "type", "object"}


def _runtime_unions(tree: ast.AST) -> list[int]:
    """Lines where ``X | Y`` of types runs (outside annotations, which stay strings): PEP 604
    unions exist from Python 3.10, so on JetPack 5's 3.8 the module would not import."""
    skip = set()
    for node in ast.walk(tree):
        for ann in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if ann is not None:
                skip.update(id(n) for n in ast.walk(ann))

    def typeish(n: ast.AST) -> bool:
        n = n.value if isinstance(n, ast.Subscript) else n
        return (isinstance(n, ast.Name) and n.id in _TYPES) or (isinstance(n, ast.Constant) and n.value is None)

    return sorted({n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                   and id(n) not in skip and (typeish(n.left) or typeish(n.right))})


def test_runtime_builds_no_pep604_union_at_run_time():
    found = {p.relative_to(ROOT).as_posix(): lines for p in RUNTIME_FILES
             if (lines := _runtime_unions(ast.parse(p.read_text(encoding="utf-8"))))}
    assert not found, f"`X | Y` of types evaluated at run time (Python 3.10+; use typing.Union): {found}"
    # The check can fail; annotations and bit flags are not flagged.
    assert _runtime_unions(ast.parse("Alias = str | int | None\nok = isinstance(v, bytes | str)\n")) == [1, 2]
    assert _runtime_unions(ast.parse("def f(x: str | None) -> int | None:\n    y: int | None = 0\n"
                                     "    return os.O_RDONLY | os.O_CLOEXEC\n")) == []


def test_python38_grammar_check_catches_newer_syntax():
    """The check above can fail: a 3.10 ``match`` statement is refused under 3.8's grammar."""
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=(3, 8))


def _vermin(*paths: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--no-tips", "--violations", "-t=3.8-", *paths],
                          capture_output=True, text=True, timeout=300)


def test_runtime_standard_library_use_is_python38():
    """Annotations are strings everywhere (``from __future__ import annotations``), so only
    code that runs counts: e.g. ``bytes.removeprefix`` (3.9) or ``importlib.resources.files``
    (3.9) would break the import or a decode on JetPack 5."""
    out = _vermin(*map(str, RUNTIME_FILES))
    assert out.returncode == 0, out.stdout + out.stderr


def test_vermin_catches_a_python39_member(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('x = b"abc".removeprefix(b"a")\n')
    out = _vermin(str(bad))
    assert out.returncode != 0 and "removeprefix" in out.stdout


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=lambda p: p.relative_to(ROOT / "runtime").as_posix())
def test_runtime_annotations_are_never_evaluated(path):
    """``list[int]`` or ``int | None`` in an annotation is fine on 3.8 only as a string."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    annotated = any(isinstance(node, (ast.AnnAssign, ast.arg)) and node.annotation is not None
                    or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None
                    for node in ast.walk(tree))
    future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                 and any(a.name == "annotations" for a in node.names) for node in tree.body)
    assert future or not annotated, f"{path.name} has annotations but no `from __future__ import annotations`"


def test_jetson_extra_holds_numpy_below_2_and_brings_no_engine(project):
    """JetPack's cv2 is built against NumPy 1.x (it fails to import under NumPy 2), and the
    platform provides ONNX Runtime (NVIDIA's GPU wheel) and OpenCV: the ``jetson`` extra must
    cap NumPy and must not pull PyPI's onnxruntime or opencv over them."""
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in project["optional-dependencies"]["jetson"]]
    numpy = [r for r in reqs if r.name == "numpy"]
    assert numpy and not numpy[0].specifier.contains("2.0.0") and numpy[0].specifier.contains("1.26.4")
    assert numpy[0].specifier.contains("1.24.4")  # the last NumPy for Python 3.8 (JetPack 5)
    assert not any(r.name.startswith(("onnxruntime", "opencv")) for r in reqs)


def test_base_install_brings_no_engine_or_opencv(project):
    from packaging.requirements import Requirement

    names = {Requirement(r).name for r in project["dependencies"]}
    assert not any(n.startswith(("onnxruntime", "opencv", "tensorflow")) for n in names)
