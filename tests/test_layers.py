"""Imports point one way: the runtime (``edgedetect/``) never imports ``training``, ``conversion``, TensorFlow or
Keras, and no module of the three packages imports another module's private (``_``) names.

Read from the source with ``ast`` (imports inside functions included), so a lazy import cannot hide. The CLI edge
(``edgedetect/cli.py``, ``edgedetect/app.py``, ``edgedetect/__main__.py`` and ``edgedetect/commands/``) may import
training code lazily: a command that needs both picks the backend there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

RUNTIME_FORBIDDEN = ("training", "conversion", "tensorflow", "keras")
PACKAGES = ("edgedetect", "training", "conversion")
CLI_EDGE = {"cli.py", "app.py", "__main__.py"}


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import in ``tree``, at any depth; relative imports made absolute, and
    ``importlib.import_module("x")`` / ``__import__("x")`` with a literal name counted too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((node.lineno, module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value, []))
    return found


def runtime_modules(root: Path) -> list[Path]:
    package = root / "edgedetect"
    return sorted(p for p in package.rglob("*.py")
                  if "commands" not in p.relative_to(package).parts and p.relative_to(package).as_posix() not in CLI_EDGE)


def runtime_violations(root: Path) -> list[str]:
    out = []
    for path in runtime_modules(root):
        rel = path.relative_to(root)
        package = ".".join(rel.with_suffix("").parts[:-1])
        for line, module, _ in imported_modules(ast.parse(path.read_text(encoding="utf-8")), package):
            if module.split(".")[0] in RUNTIME_FORBIDDEN:
                out.append(f"{rel}:{line} imports {module}")
    return out


def private_import_violations(root: Path) -> list[str]:
    out = []
    for path in sorted(p for package in PACKAGES for p in (root / package).rglob("*.py")):
        rel = path.relative_to(root)
        package = ".".join(rel.with_suffix("").parts[:-1])
        for line, module, names in imported_modules(ast.parse(path.read_text(encoding="utf-8")), package):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                out.append(f"{rel}:{line} imports private {', '.join(private)} from {module}")
    return out


def test_the_runtime_never_imports_training_conversion_or_tensorflow():
    assert runtime_modules(REPO), "found no runtime modules: the test would pass on nothing"
    assert runtime_violations(REPO) == []


def test_no_module_imports_another_modules_private_names():
    assert private_import_violations(REPO) == []


@pytest.mark.parametrize("where, code", [
    ("edgedetect/helper.py", "import numpy\n\ndef f():\n    from training.keras_model import predict_keras\n"),
    ("edgedetect/helper.py", "def f():\n    import keras.ops as ops\n"),
    ("edgedetect/sub/helper.py", "from ...conversion import convert\n"),
    ("edgedetect/helper.py", "import importlib\nimportlib.import_module('tensorflow')\n"),
])
def test_a_runtime_violation_is_caught(tmp_path, where, code):
    (tmp_path / "edgedetect" / "commands").mkdir(parents=True)
    (tmp_path / "edgedetect" / "commands" / "train.py").write_text("from training.train import train\n")  # allowed
    (tmp_path / "edgedetect" / "cli.py").write_text("import training\n")  # the CLI edge: allowed
    (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / where).write_text(code)
    assert [v.split(":")[0] for v in runtime_violations(tmp_path)] == [where]


def test_a_private_import_in_training_is_caught(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "ok.py").write_text("from training.run import Run, __version__\n")
    (tmp_path / "training" / "bad.py").write_text("def f():\n    from training.train import _final_metrics\n")
    assert private_import_violations(tmp_path) == ["training/bad.py:2 imports private _final_metrics from training.train"]
