"""The probe subcommands and what each must write, shared by the torch and JAX CLI tests."""

from __future__ import annotations

import pathlib

import probecore as pc
from probecore.cli import main

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def cases(target: str, start: str, end: str) -> list[tuple[list[str], str]]:
    """``(argv, file the run must write)`` for every subcommand, on quick settings."""
    return [
        (["eigenvalues", target, "--k", "1", "--tol", "1e-2"], "eigenvalues.npz"),
        (["trace", target, "--n-matvecs", "6"], "trace.npz"),
        (["density", target, "--n-probes", "1", "--n-steps", "5"], "density.npz"),
        (["plane", target, "--n", "3"], "plane_contour.png"),
        (["rays", target, "--n-rays", "6"], "rays.npz"),
        (["connect", start, "--end", end, "--epochs", "2", "--points", "5"], "path_curve.npz"),
        (["sharpness", target, "--eps", "1e-3", "--maxiter", "3"], "sharpness.npz"),
        (["dimension", target, "--batch-size", "256"], "dimension.npz"),
    ]


def check(tmp_path, capsys, argv: list[str], result: str) -> None:
    """Run one subcommand; it must succeed and write ``result``, tagged with its target."""
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / result).stat().st_size > 100
    if result.endswith(".npz"):
        assert pc.load(out / result).metadata["target"] == argv[1]
