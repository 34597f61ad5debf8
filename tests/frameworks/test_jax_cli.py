"""Every probe subcommand of the CLI on the jax example shipped in examples/."""

from __future__ import annotations

import pathlib

import pytest

import probecore as pc
from probecore.cli import main

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
T = str(EXAMPLES / "jax_digits.py") + ":mlp"
A = str(EXAMPLES / "jax_digits.py") + ":mlp"
B = str(EXAMPLES / "jax_digits.py") + ":mlp"


@pytest.mark.parametrize(
    "argv, result",
    [
        (["eigenvalues", T, "--k", "1", "--tol", "1e-2"], "eigenvalues.npz"),
        (["trace", T, "--n-matvecs", "6"], "trace.npz"),
        (["density", T, "--n-probes", "1", "--n-steps", "5"], "density.npz"),
        (["plane", T, "--n", "3"], "plane_contour.png"),
        (["rays", T, "--n-rays", "6"], "rays.npz"),
        (["connect", A, "--end", B, "--epochs", "2", "--points", "5"], "path_curve.npz"),
        (["sharpness", T, "--eps", "1e-3", "--maxiter", "3"], "sharpness.npz"),
        (["dimension", T, "--batch-size", "256"], "dimension.npz"),
    ],
)
def test_probe_subcommand_on_the_example(tmp_path, capsys, argv, result):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / result).stat().st_size > 100
    if result.endswith(".npz"):
        assert pc.load(out / result).metadata["target"] == argv[1]
