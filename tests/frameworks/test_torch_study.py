"""``probecore study --quick`` end to end (the CI run of the main job), and its reproducibility."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import probecore as pc

HYPOTHESES = (
    "Large batches find sharper minima that generalize worse",
    "Flat minima generalize better",
    "Large early λmax means unstable training",
    "Skip connections make the landscape smoother and flatter",
    "Low effective dimension means faster convergence",
    "Good minima are connected by low-loss paths",
)
VERDICTS = ("supported", "not supported", "inconclusive (confounded)", "inconclusive")
FIGURES = {"claims.png", "density.png", "batch.png", "surfaces.png", "training.png", "paths.png"}
SCHEMA = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "study-results.schema.json")
# A number as a report cell writes it: 1,347 / −0.971 / 3.38×10⁻⁶ (not a section, §2.3.2)
NUMBER = re.compile(r"(?<![§\w.])[−-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:×10[⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)?")


def _numbers(value):
    """Every number in a JSON value (booleans are not numbers)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield value


def _written(record):
    """Every way the report may write a number of ``record``: as it is, or as a percentage."""
    from probecore_study.numbers import fmt

    out = set()
    for v in _numbers(record):
        if isinstance(v, int):
            out |= {str(v), f"{v:,}", fmt(v).replace("−", "-"), fmt(v)}
        out |= {fmt(float(v)), fmt(100 * float(v)), f"{v:g}", f"{100 * v:g}"}
    return out


def _table_cells(report):
    """(row, cell) of every table body row of ``report`` (header rows left out)."""
    lines = report.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            continue  # a header
        for cell in line.strip().strip("|").split("|"):
            yield line, cell.strip()


def _run(out, *extra):
    env = dict(os.environ)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        env["OMP_NUM_THREADS"] = "1"  # the other worker has the other core
    proc = subprocess.run(
        [sys.executable, "-m", "probecore", "study", "--quick", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _tables(report: str) -> str:
    """Everything but the last section, which holds the timings."""
    return report.split("\n## Run\n")[0]


@pytest.mark.slow
def test_quick_study_fills_every_section_and_is_reproducible(tmp_path):
    import jsonschema
    from matplotlib.image import imread

    a, b = tmp_path / "a", tmp_path / "b"
    proc = _run(a, "--jobs", "1")
    # progress: one line per step, counted
    steps = re.findall(r"^\[ ?(\d+)/(\d+)\]", proc.stdout, flags=re.M)
    assert steps and steps[-1][0] == steps[-1][1] and len(steps) == int(steps[-1][1])
    report = (a / "report.md").read_text(encoding="utf-8")
    for heading in (
        "## Verdicts",
        "## 1. The estimators against an exact Hessian",
        "## 2. Small batch (32) against large batch (512)",
        "## 3. Plain against residual networks",
        "## 4. Mode connectivity between seeds",
        "## 5. The hypotheses, one by one",
        "## Run",
    ):
        assert heading in report
    # every table is filled: no empty cell, no NaN
    rows = [r for r in report.splitlines() if r.startswith("|") and not r.startswith("|---")]
    assert len(rows) > 40
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(cells) and not any(c.lower() == "nan" for c in cells), row
    # a verdict for every hypothesis, in the summary and in its own section
    summary = report.split("## Verdicts")[1].split("## 1.")[0]
    for title in HYPOTHESES:
        line = next(r for r in summary.splitlines() if r.startswith(f"| {title} |"))
        assert re.search(r"\*\*(supported|not supported|inconclusive)\*\*", line), line
        assert re.search(rf"### 5\.\d {re.escape(title)} — ({'|'.join(VERDICTS)})$", report, re.M)
    # figures: referenced, present, not blank
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert set(figures) == FIGURES
    for name in figures:
        img = imread(a / name)
        assert img.shape[0] > 200 and img.shape[1] > 300 and float(np.std(img)) > 0.05, name
    # every figure has a numbered caption, in reading order, and no overlapping labels
    # at the size the report shows it
    record = json.loads((a / "results.json").read_text())
    assert [f["number"] for f in record["figures"]] == list(range(1, len(FIGURES) + 1))
    for f in record["figures"]:
        assert f"![Figure {f['number']}]({f['file']})" in report
        assert f"*Figure {f['number']}.* {f['caption']}" in report
        assert f["overlapping_labels"] == [], f
    # the source is named, each hypothesis quoted with its section
    assert record["source"] in report and "Nashra Amaan" in record["source"]
    for title, v in record["verdicts"].items():
        assert f"The paper ({v['section']}): “{v['quote']}”" in report, title
    # results.json follows its JSON Schema, and holds every number of every table
    with open(SCHEMA, encoding="utf-8") as fh:
        jsonschema.validate(record, json.load(fh))
    written = _written(record)
    missing = [
        (token, row)
        for row, cell in _table_cells(report)
        for token in NUMBER.findall(cell)
        if token not in written
    ]
    assert not missing, missing[:10]
    # verdict statistics are numbers, not only text
    claim = record["verdicts"]["Large batches find sharper minima that generalize worse"]
    stat = claim["claims"][0]["statistic"]
    assert stat["rule"] == "range" and stat["n"] == 2 and stat["ci_low"] < stat["ci_high"]
    assert 0 <= stat["p"] <= 1 and stat["claim_low"] == 3.0
    # the raw results load and match results.json
    batch = record["results"]["batch"]
    assert len(batch) == 4 and all(r["reached"] for r in batch)
    assert all(abs(r["train_loss"] - 0.02) < 2e-3 for r in batch)  # comparable training loss
    arch = record["results"]["architecture"]
    assert {r["kind"] for r in arch} == {"plain", "residual", "residual-norm"}
    lam = pc.load(a / "raw" / "batch" / "seed0_batch32_lambda.npz")
    assert lam.eigenvalues[0] == pytest.approx(batch[0]["lambda_max"], rel=1e-12)
    plane = pc.load_run(a / "raw" / "landscape" / "plain_seed0_plane9.zarr")
    assert plane.losses.shape == (9, 9) and np.all(np.isfinite(plane.losses))
    # the centre of the plane is the trained point
    assert plane.losses[4, 4] == pytest.approx(arch[0]["train_loss"], rel=1e-12)
    conn = record["results"]["connectivity"][0]
    assert conn["bezier_barrier"] < conn["linear_barrier"]
    assert set(record["verdicts"]) == set(HYPOTHESES)

    # a second run with the same seeds, in two worker processes, gives the same tables,
    # digit for digit, and the same results.json
    _run(b, "--quiet", "--jobs", "2")
    assert _tables((b / "report.md").read_text(encoding="utf-8")) == _tables(report)
    assert json.loads((b / "results.json").read_text()) == record


def test_study_refuses_an_unknown_stage(tmp_path):
    from probecore.cli import main

    assert main(["study", "--out", str(tmp_path), "--stages", "batch,nonsense"]) == 2


def test_train_sgd_stops_at_the_target_on_one_thread():
    import torch
    from probecore_study import kit

    data = kit.digits()
    assert (len(data.y_train), len(data.y_test)) == (1347, 450)
    threads = torch.get_num_threads()
    run = kit.train_sgd(
        kit.mlp(seed=0),
        data,
        lr=0.5,
        batch_size=512,
        target_loss=0.5,
        max_epochs=100,
        seed=0,
        record_gradients=5,
    )
    assert torch.get_num_threads() == threads
    assert run.reached and not run.diverged and run.final_loss < 0.5
    train, _ = kit.objectives(run.model, data)
    assert train.loss(train.x0) == pytest.approx(run.final_loss, rel=1e-12)
    assert run.gradients.shape == (5, train.dim)
    assert run.epoch_losses[0] > 2.0 and run.epoch_losses[-1] == run.final_loss
    # one loss per epoch begun (the last one cut short at the target), after the initial one
    assert len(run.epoch_losses) - 1 == math.ceil(run.epochs)
    blown = kit.train_sgd(
        kit.mlp(seed=0), data, lr=1e308, batch_size=512, target_loss=0.01, max_epochs=50, seed=0
    )
    assert blown.diverged and not blown.reached


def test_plain_and_residual_networks_start_from_the_same_weights():
    import torch
    from probecore_study import kit

    plain, res = kit.deep_net("plain", seed=3), kit.deep_net("residual", seed=3)
    a, b = plain.state_dict(), res.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(4, 64, dtype=torch.float64)
    assert not torch.allclose(plain(x), res(x))  # the skip connections change the function
    with pytest.raises(ValueError, match="`kind`"):
        kit.deep_net("dense", seed=0)
