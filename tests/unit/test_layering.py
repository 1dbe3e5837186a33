"""The dependency graph points one way: the shared package ``socialpulse`` sits at the bottom (serving,
assets, orchestration, bench and the CLI import it), so it must import none of them, at any depth,
including imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ABOVE = {"assets", "orchestration", "bench", "serving", "cli"}


def upward_imports(path: Path) -> list[str]:
    """``line: module`` for each import of a package above ``socialpulse`` in one file (``import x``,
    ``from x import y``, and ``importlib.import_module("x")`` / ``__import__("x")`` with a literal name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [(node.lineno, n) for n in names if n.split(".")[0] in ABOVE]
    return [f"{line}: {name}" for line, name in sorted(found)]


def test_the_shared_package_imports_nothing_above_it():
    files = sorted((ROOT / "socialpulse").rglob("*.py"))
    assert len(files) > 10
    offenders = {str(f.relative_to(ROOT)): hits for f in files if (hits := upward_imports(f))}
    assert offenders == {}, f"socialpulse/ must not import {sorted(ABOVE)}: {offenders}"


def test_the_check_sees_every_kind_of_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\nimport cli.main\nfrom assets.trends import logic\n"
                 "def f():\n    from orchestration.runner import run_demo\n    import bench as b\n"
                 "    return importlib.import_module('serving.app')\nfrom socialpulse import tags\nfrom . import x\n")
    assert upward_imports(f) == ["2: cli.main", "3: assets.trends", "5: orchestration.runner", "6: bench",
                                 "7: serving.app"]
