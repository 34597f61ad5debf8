"""The probe subcommands and what each must write, shared by the torch and JAX CLI tests."""

from __future__ import annotations

import pathlib

import probecore as pc
from probecore.cli import _probes, main

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


def refused(target: str, start: str) -> list[tuple[list[str], str]]:
    """``(argv, message)``: the options of issue 13's report, each refused at once."""
    return [
        (["connect", start], "the following arguments are required: --end"),
        (["plane", target, "--n", "1"], "`--n` must be >= 2 (points per axis"),
        (["trace", target, "--n-matvecs", "0"], "`--n-matvecs` must be >= 4"),
    ]


def check_refused(tmp_path, capsys, monkeypatch, argv: list[str], message: str) -> None:
    """A bad option: one line and exit status 2, and the model is never built."""

    def built(*args, **kwargs):
        raise AssertionError("the model was built before the options were checked")

    monkeypatch.setattr(_probes, "load_objective", built)
    try:
        code = main([*argv, "--out", str(tmp_path / "out")])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"probecore {argv[0]}: error: "), err
    assert message in err[0], err
    assert not (tmp_path / "out").exists()
