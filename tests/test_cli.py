"""The main job (``probecore study``) end to end on digits."""

import re

import numpy as np
import pytest

import probecore as pc
from probecore.cli import main


def test_study_writes_a_report_that_matches_the_exact_hessian(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "--out", str(out), "--quiet"]) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Top 5 eigenvalues", "## Trace", "## Spectral density"):
        assert heading in report
    # Lanczos and ARPACK agree with the exact top-5 to near machine precision.
    for method in ("lanczos", "eigsh"):
        row = next(line for line in report.splitlines() if f"method={method!r}" in line)
        assert float(row.split("|")[3]) < 1e-10
    # The saved results load back with their metadata.
    eig = pc.load(out / "eig_lanczos.npz")
    assert eig.metadata["objective"] == "digits logistic regression" and eig.converged
    dens = pc.load(out / "density.npz")
    np.testing.assert_allclose(dens.weights.sum(axis=1), 1.0, atol=1e-12)
    w1 = float(re.search(r"\(([0-9.]+)% of the spectral range\)", report).group(1))
    assert w1 < 1.0
    assert (out / "density.png").stat().st_size > 10_000
    assert capsys.readouterr().out == ""


def test_study_is_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert main(["study", "--out", str(d), "--quiet", "--k", "2", "--trace-budget", "12"]) == 0
    strip = lambda text: re.sub(r"[0-9.]+ s\b|\| [0-9.]+ \|$", "", text, flags=re.M)  # noqa: E731
    rows_a = [r for r in (a / "report.md").read_text().splitlines() if "seconds" not in r]
    rows_b = [r for r in (b / "report.md").read_text().splitlines() if "seconds" not in r]
    assert [strip(r) for r in rows_a] == [strip(r) for r in rows_b]


def test_bad_arguments_give_one_line_and_nonzero_exit(tmp_path, capsys):
    assert main(["study", "--out", str(tmp_path), "--k", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`k`" in err[0]
    with pytest.raises(SystemExit):
        main(["nonsense"])
