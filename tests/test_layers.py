"""The data flows one way: datasets -> core -> algorithms -> app. Checked on the import statements."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = ("saferl.constraints", "saferl.networks", "saferl.algorithm")
APP = ("saferl.config", "saferl.trainer", "saferl.evaluation", "saferl.report", "saferl.cli", "saferl.api",
       "saferl.checkpoint")


def imported_modules(path: Path, package: str) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.add(node.module)
    return {n for n in names if n.startswith("saferl")}


def files(folder: str, package: str) -> list[tuple[Path, str]]:
    root = REPO / folder
    out = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        module_package = ".".join([package, *parts[:-1]]) if path.name != "__init__.py" else ".".join([package, *parts])
        out.append((path, module_package))
    return out


def violations(folder: str, package: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for path, module_package in files(folder, package):
        for name in imported_modules(path, module_package):
            if not name.startswith(allowed):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    return bad


def test_datasets_import_nothing_above_them() -> None:
    assert violations("datasets", "saferl.datasets", ("saferl.datasets",)) == []


def test_core_imports_only_datasets_and_core() -> None:
    bad = []
    for sub in ("constraints", "networks"):
        bad += violations(f"saferl/{sub}", f"saferl.{sub}", ("saferl.datasets", *CORE))
    path = REPO / "saferl" / "algorithm.py"
    bad += [f"algorithm.py imports {n}" for n in imported_modules(path, "saferl") if not n.startswith(("saferl.datasets", *CORE))]
    assert bad == []


def test_algorithms_never_import_the_app() -> None:
    assert violations("algorithms", "saferl.algorithms", ("saferl.datasets", *CORE, "saferl.algorithms")) == []
