"""The package's shape: public imports outside the core, no framework inside it, small modules.

The import-layer contracts themselves (contract → linear algebra → probes → geometry →
applications) are checked by import-linter in the ``lint`` tox environment; these tests
keep the rules that a layer tool does not see: imports of private *names*, imports hidden
inside functions, and module size.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "probecore"
OUTSIDE = [ROOT / "backends", ROOT / "benchmarks", ROOT / "examples"]
FRAMEWORKS = {"torch", "jax", "jaxlib", "flax", "equinox", "tensorflow"}
MAX_LINES = 600


def _python_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """Every import in ``path``, at any depth: (line, module, imported names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


def _private_parts(module: str, names: list[str]) -> list[str]:
    parts = module.split(".")
    bad = [p for p in parts[1:] if p.startswith("_") and not p.startswith("__")]
    bad += [n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
    return bad


def test_backends_examples_and_benchmarks_import_only_public_names():
    offences = []
    for path in _python_files(*OUTSIDE):
        for line, module, names in _imports(path):
            if module.split(".")[0] != "probecore":
                continue
            bad = _private_parts(module, names)
            if bad:
                offences.append(f"{path.relative_to(ROOT)}:{line}: {module} {bad}")
    assert not offences, "private probecore names imported:\n" + "\n".join(offences)


def test_the_private_name_check_catches_what_it_should():
    assert _private_parts("probecore._contract.validation", ["check_int"]) == ["_contract"]
    assert _private_parts("probecore.plot", ["_plt"]) == ["_plt"]
    assert _private_parts("probecore", ["__version__", "lanczos"]) == []
    assert _private_parts("probecore.backend", ["check_vector"]) == []


def test_no_core_module_imports_a_framework_or_a_backend():
    offences = []
    for path in _python_files(CORE):
        for line, module, _ in _imports(path):
            top = module.split(".")[0]
            if top in FRAMEWORKS or (top.startswith("probecore_")):
                offences.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert not offences, "the core reaches a framework or a backend:\n" + "\n".join(offences)


@pytest.mark.parametrize("path", _python_files(CORE), ids=lambda p: str(p.relative_to(CORE)))
def test_core_modules_stay_small(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (at most {MAX_LINES})"
