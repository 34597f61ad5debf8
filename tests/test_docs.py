"""Meta-tests: documentation of hooks and the README's commands stay true."""

import inspect
import pathlib
import re

from probecore import hookspecs

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _hooks():
    return {n: f for n, f in vars(hookspecs).items() if n.startswith("probecore_")}


def test_every_hook_is_documented_with_its_signature():
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    hooks = _hooks()
    assert hooks
    for name, func in hooks.items():
        params = ", ".join(inspect.signature(func).parameters)
        assert f"{name}({params})" in text, f"docs/plugins.md lacks {name}({params})"


def test_every_hook_has_a_test():
    tests = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py"))
    for name in _hooks():
        assert f"def test_hook_{name}" in tests


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) >= 2
    test_command = blocks[1].strip()
    assert "tox" in test_command
    assert test_command in ci
