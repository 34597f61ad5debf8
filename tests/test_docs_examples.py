"""Every ```python block in the docs runs, and shown output matches what it prints.

Blocks marked ``<!-- fragment -->`` (snippets that use names they do not define) are the
one exception; each has a complete, tested version elsewhere in the docs.

The blocks of one page run in order as one script (in a temporary folder). A ```text
block right after a python block is that block's expected standard output.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
from conftest import BACKENDS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _frameworks(text: str) -> set[str]:
    """Frameworks a page's examples import (they run only where those are installed)."""
    return {fw for fw in ("torch", "jax") if re.search(rf"^(import|from) {fw}\b", text, re.M)}


PAGES = [
    p
    for p in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    if "```python" in (text := p.read_text(encoding="utf-8")) and _frameworks(text) <= set(BACKENDS)
]
# A block right after this marker is a fragment (it uses names it does not define).
FRAGMENT = "<!-- fragment -->"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def _script_and_expected(text: str) -> tuple[str, dict[int, str]]:
    found = [(m.group(1), m.group(2), m.start(), m.end()) for m in FENCE.finditer(text)]
    script, expected, n = [], {}, 0
    for i, (lang, body, start, end) in enumerate(found):
        if lang != "python" or text[:start].rstrip().endswith(FRAGMENT):
            continue
        script.append(f"print('@@BLOCK {n}@@', flush=True)\n{body}")
        if i + 1 < len(found) and found[i + 1][0] == "text":
            gap = text[end : found[i + 1][2]].strip()
            if len(gap) < 40:
                expected[n] = found[i + 1][1]
        n += 1
    return "".join(script), expected


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_doc_examples_run_and_match(page, tmp_path):
    script, expected = _script_and_expected(page.read_text(encoding="utf-8"))
    path = tmp_path / "doc_script.py"
    path.write_text(script, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"MPLBACKEND": "Agg", "PATH": "", "PYTHONHASHSEED": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    parts = re.split(r"@@BLOCK (\d+)@@\n", proc.stdout)
    got = {int(parts[j]): parts[j + 1] for j in range(1, len(parts), 2)}
    for k, want in expected.items():
        assert got.get(k) == want, f"{page.name} block {k}:\nexpected\n{want}\ngot\n{got.get(k)}"
