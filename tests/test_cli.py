"""The ``probecore`` command: subcommands from plugins, ``probecore study``'s core stage on
digits (the plugin ``probecore-study``, installed in every test environment), and the probe
subcommands on analytic targets."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import probecore as pc
from probecore.cli import main


def _probecore(*argv, **env):
    """``python -m probecore *argv`` in a fresh interpreter."""
    full_env = {k: v for k, v in os.environ.items() if k != "PROBECORE_DISABLE_PLUGIN_AUTOLOAD"}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "probecore", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def test_help_lists_the_probes_and_the_study_plugin(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    listed = re.search(r"\{([a-z,]+)\}", text).group(1).split(",")
    assert "study" in listed and "eigenvalues" in listed and "dimension" in listed
    assert "test the seed paper's hypotheses" in text
    assert "not installed" not in text.lower()
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    text = capsys.readouterr().out
    for option in ("--out", "--quick", "--stages", "--seed", "--quiet"):
        assert option in text


def test_study_without_its_plugin_names_the_fix():
    proc = _probecore("study", "--quick", PROBECORE_DISABLE_PLUGIN_AUTOLOAD="1")
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert err[0].startswith("probecore study: error: ")
    assert "pip install probecore-study" in err[0] and "./backends/study" in err[0]
    assert "invalid choice" not in err[0]
    proc = _probecore("--help", PROBECORE_DISABLE_PLUGIN_AUTOLOAD="1")
    assert proc.returncode == 0
    assert "Subcommands not installed: study (pip install probecore-study)" in proc.stdout
    # a command that no plugin knows is still argparse's error
    proc = _probecore("nonsense", PROBECORE_DISABLE_PLUGIN_AUTOLOAD="1")
    assert proc.returncode == 2 and "invalid choice: 'nonsense'" in proc.stderr


def test_a_broken_plugin_leaves_the_built_in_probes_working(monkeypatch, capsys):
    import probecore.plugins

    def broken():
        raise ModuleNotFoundError("No module named 'probecore_missing'")

    monkeypatch.setattr(probecore.plugins, "get_plugin_manager", broken)
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr()
    assert out.out.startswith("probecore ")
    assert "a plugin failed to load" in out.err and "probecore_missing" in out.err
    assert "PROBECORE_DISABLE_PLUGIN_AUTOLOAD" in out.err
    with pytest.raises(SystemExit) as exc:
        main(["eigenvalues", "--help"])
    assert exc.value.code == 0


def test_the_core_and_its_command_leave_torch_and_the_study_out():
    code = (
        "import sys, probecore, probecore.cli\n"
        "heavy = ('torch', 'probecore_torch', 'probecore_study', 'matplotlib')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
        "try:\n"
        "    probecore.cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROBECORE_DISABLE_PLUGIN_AUTOLOAD"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == ""  # import: nothing of torch, the backends or the study
    # building the command loads the plugins, the study's among them, but not torch
    after = out[-1].split(",")
    assert "probecore_study" in after and "torch" not in after and "matplotlib" not in after


def test_spectrum_stage_writes_a_report_that_matches_the_exact_hessian(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "--out", str(out), "--quiet", "--stages", "spectrum"]) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## 1. The estimators against an exact Hessian" in report
    # Lanczos and ARPACK agree with the exact top-5 to near machine precision.
    for method in ("lanczos", "eigsh"):
        row = next(line for line in report.splitlines() if f"method={method!r}" in line)
        assert float(row.split("|")[3]) < 1e-10
    # The saved results load back with their metadata.
    eig = pc.load(out / "raw" / "spectrum" / "eig_lanczos.npz")
    assert eig.metadata["objective"] == "digits logistic regression" and eig.converged
    dens = pc.load(out / "raw" / "spectrum" / "density.npz")
    np.testing.assert_allclose(dens.weights.sum(axis=1), 1.0, atol=1e-12)
    w1 = float(re.search(r"\(([0-9.]+)% of the spectral range\)", report).group(1))
    assert w1 < 1.0
    assert (out / "density.png").stat().st_size > 10_000
    assert capsys.readouterr().out == ""


def test_spectrum_stage_is_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert main(["study", "--out", str(d), "--quiet", "--stages", "spectrum", "--quick"]) == 0
    tables = lambda p: (p / "report.md").read_text().split("\n## Run\n")[0]  # noqa: E731
    assert tables(a) == tables(b)
    assert (a / "results.json").read_text() == (b / "results.json").read_text()


def test_bad_arguments_give_one_line_and_nonzero_exit(tmp_path, capsys, monkeypatch):
    assert main(["study", "--out", str(tmp_path), "--stages", "spectrum,sharp", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`--stages`" in err[0] and "spectrum, batch" in err[0]
    assert main(["study", "--out", str(tmp_path), "--stages", "spectrum", "--seed", "-1"]) == 2
    assert "`--seed` must be a non-negative integer" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["study", "--out", str(tmp_path / "file"), "--stages", "spectrum"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    # the stages that train networks name what to install when the PyTorch backend is missing
    monkeypatch.setitem(sys.modules, "probecore_torch", None)
    assert main(["study", "--out", str(tmp_path), "--stages", "batch", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install ./backends/torch torch==2.13.0" in err[0]
    with pytest.raises(SystemExit):
        main(["nonsense"])


TARGET = """
import numpy as np
from probecore.analytic import Ring, digits_logistic_regression


def logreg():
    f = digits_logistic_regression(l2=1e-3)
    return f


def ring_a():
    return Ring()


def ring_b():
    return Ring(x0=np.array([-1.0, 0.0]))


def wrong():
    return 42


def not_a_model():
    return object(), len, ([1.0], [0])


def raises():
    raise KeyError("no such data set")


class _Breaks(Ring):
    def hvp(self, x, v):
        raise RuntimeError("derivative for aten::something is not implemented")


def breaks_at_first_hvp():
    return _Breaks()
"""


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "targets.py"
    path.write_text(TARGET, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "argv, files",
    [
        (["eigenvalues", "{t}:logreg", "--k", "2"], ["eigenvalues.npz", "eigenvalues.png"]),
        (["trace", "{t}:logreg", "--n-matvecs", "12"], ["trace.npz"]),
        (["density", "{t}:logreg", "--n-probes", "2", "--n-steps", "10"], ["density.png"]),
        (
            ["plane", "{t}:logreg", "--n", "3", "--normalization", "none"],
            ["plane_contour.png", "plane_surface.png"],
        ),
        (["rays", "{t}:logreg", "--n-rays", "8"], ["rays.npz", "rays.png"]),
        (
            ["connect", "{t}:ring_a", "--end", "{t}:ring_b", "--epochs", "2", "--points", "5"],
            ["path_linear.npz", "curve_fit.npz", "path_curve.npz", "paths.png"],
        ),
        (["sharpness", "{t}:logreg", "--eps", "1e-3"], ["sharpness.npz", "lambda_max.npz"]),
        (["dimension", "{t}:logreg", "--batch-size", "256"], ["dimension.npz", "dimension.png"]),
    ],
)
def test_probe_subcommands_on_an_analytic_target(target, tmp_path, capsys, argv, files):
    out = tmp_path / "out"
    argv = [a.replace("{t}", target) for a in argv] + ["--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"probecore {argv[0]}: ")
    for name in files:
        assert (out / name).stat().st_size > 100
    npz = [f for f in files if f.endswith(".npz")]
    if npz:
        assert pc.load(out / npz[0]).metadata["target"].endswith(argv[1].split(":")[1])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eigenvalues", "no_such_module_xyz:f"], "cannot import module 'no_such_module_xyz'"),
        (["eigenvalues", "{t}:missing"], "has no function 'missing'"),
        (["eigenvalues", "{t}:wrong"], "returned int; it must return (model, loss_fn, data)"),
        (["eigenvalues", "{t}:not_a_model"], "no installed backend recognises a model"),
        (["eigenvalues", "nocolon"], "must be 'module:function'"),
        (["plane", "{t}:logreg", "--n", "0"], "--n must be at least 2"),
        (["connect", "{t}:ring_a"], "connect needs --end"),
        (["dimension", "{t}:ring_a"], "dimension needs an objective with data"),
        (["trace", "{t}:logreg", "--n-matvecs", "0"], "`n_matvecs`"),
        (["eigenvalues", "{t}:raises"], "targets.py:raises raised KeyError: 'no such data set'"),
        (
            ["eigenvalues", "{t}:breaks_at_first_hvp", "--k", "1"],
            "RuntimeError: derivative for aten::something is not implemented",
        ),
        (["eigenvalues", "{bad}:f"], "importing '"),
        (["eigenvalues", "{bad}:f"], "SyntaxError: "),
        (["eigenvalues", "{boom}:f"], "failed: ZeroDivisionError: division by zero"),
    ],
)
def test_bad_probe_arguments_give_one_line(target, tmp_path, capsys, argv, message):
    bad, boom = tmp_path / "bad.py", tmp_path / "boom.py"
    bad.write_text("def f(:\n    pass\n", encoding="utf-8")
    boom.write_text("x = 1 / 0\n", encoding="utf-8")
    argv = [a.replace("{t}", target).replace("{bad}", str(bad)).replace("{boom}", str(boom))
            for a in argv] + ["--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert "Traceback" not in err[0]


def test_every_option_is_documented_in_help(capsys):
    from probecore.cli._probes import PROBES

    for probe in PROBES:
        with pytest.raises(SystemExit):
            main([probe, "--help"])
        text = capsys.readouterr().out
        assert "module:function" in text and "--out" in text and "--seed" in text
        for line in text.splitlines():
            if line.strip().startswith("--") and "  " in line.strip():
                assert len(line.strip().split("  ", 1)[1].strip()) > 0
