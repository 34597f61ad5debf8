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
    from probecore_study.numbers import parse

    out = tmp_path / "study"
    assert main(["study", "--out", str(out), "--quiet", "--stages", "spectrum"]) == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## 1. The estimators against an exact Hessian" in report
    # Lanczos and ARPACK agree with the exact top-5 to near machine precision.
    for method in ("lanczos", "eigsh"):
        row = next(line for line in report.splitlines() if f"method={method!r}" in line)
        assert parse(row.split("|")[3].strip()) < 1e-10
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
        (["rays", "{t}:logreg", "--n-rays", "8", "--hessian"], ["rays.npz", "rays.png"]),
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
        (["dimension", "{t}:ring_a"], "dimension needs an objective with data"),
        (
            ["dimension", "{t}:logreg", "--batch-size", "1000"],
            "`--batch-size` must be <= 673 (half the 1347",
        ),
        (["eigenvalues", "{t}:logreg", "--k", "1000000"], "`k` must be in [1, "),
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
    argv = [
        a.replace("{t}", target).replace("{bad}", str(bad)).replace("{boom}", str(boom))
        for a in argv
    ] + ["--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert "Traceback" not in err[0]


# A target whose module leaves a mark when it is imported and whose function leaves
# another when it is called: the options must be refused before either happens.
MARKED = """
import pathlib

HERE = pathlib.Path(__file__).parent
(HERE / "imported.mark").write_text("imported", encoding="utf-8")


def build():
    (HERE / "called.mark").write_text("called", encoding="utf-8")
    raise AssertionError("the target must not run when an option is wrong")
"""


@pytest.fixture
def marked(tmp_path):
    folder = tmp_path / "target"
    folder.mkdir()
    (folder / "marked.py").write_text(MARKED, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["eigenvalues", "{m}", "--k", "0"],
            "`--k` must be >= 1 (the number of eigenvalues); got 0.",
        ),
        (
            ["eigenvalues", "{m}", "--tol", "-0.001"],
            "`--tol` must be a finite number >= 0; got -0.001.",
        ),
        (["eigenvalues", "{m}", "--tol", "nan"], "`--tol` must be a finite number >= 0; got nan."),
        (
            ["eigenvalues", "{m}", "--seed", "-1"],
            "`--seed` must be a non-negative integer; got -1.",
        ),
        (
            ["trace", "{m}", "--n-matvecs", "0"],
            "`--n-matvecs` must be >= 4 with --method hutchpp; got 0.",
        ),
        (["trace", "{m}", "--n-matvecs", "3"], "`--n-matvecs` must be >= 4"),
        (
            ["trace", "{m}", "--method", "hutchinson", "--n-matvecs", "1"],
            "`--n-matvecs` must be >= 2 with --method hutchinson; got 1.",
        ),
        (["density", "{m}", "--n-probes", "0"], "`--n-probes` must be >= 1; got 0."),
        (["density", "{m}", "--n-steps", "0"], "`--n-steps` must be >= 1"),
        (["plane", "{m}", "--n", "1"], "`--n` must be >= 2 (points per axis"),
        (["plane", "{m}", "--extent", "0"], "`--extent` must be a finite number > 0"),
        (["plane", "{m}", "--extent", "inf"], "got inf."),
        (["rays", "{m}", "--n-rays", "0"], "`--n-rays` must be >= 1; got 0."),
        (["rays", "{m}", "--eps", "-1"], "`--eps` must be a finite number > 0"),
        (
            ["rays", "{m}", "--eps", "0.1", "--hessian"],
            "`--eps` is the finite-difference step and `--hessian` takes none; got --eps 0.1",
        ),
        (["connect", "{m}", "--end", "{m}", "--bends", "0"], "`--bends` must be >= 1"),
        (["connect", "{m}", "--end", "{m}", "--epochs", "0"], "`--epochs` must be >= 1; got 0."),
        (["connect", "{m}", "--end", "{m}", "--batch-size", "0"], "`--batch-size` must be >= 1"),
        (["connect", "{m}", "--end", "{m}", "--lr", "0"], "`--lr` must be a finite number > 0"),
        (["connect", "{m}", "--end", "{m}", "--points", "1"], "`--points` must be >= 2"),
        (["connect", "{m}", "--end", "nocolon"], "`--end` 'nocolon' must be 'module:function'"),
        (["connect", "{m}", "--end", "{dir}/nowhere.py:f"], "no such file: "),
        (
            ["connect", "{m}", "--end", "no_such_module_xyz:f"],
            "cannot import module 'no_such_module_xyz'",
        ),
        (["connect", "{m}", "--end", "{m}-x"], "'build-x' is not a function name"),
        (["sharpness", "{m}", "--eps", "0"], "`--eps` must be a finite number > 0"),
        (["sharpness", "{m}", "--maxiter", "0"], "`--maxiter` must be >= 1; got 0."),
        (["dimension", "{m}", "--batch-size", "0"], "`--batch-size` must be >= 1; got 0."),
        (["dimension", "{m}", "--share", "0"], "`--share` must be a fraction in (0, 1]"),
        (["dimension", "{m}", "--share", "90"], "got 90 (for 90% pass 0.9)."),
        (["eigenvalues", "{m}", "--out", "{dir}/marked.py"], "is not a folder"),
        (["eigenvalues", "{m}", "--out", "{dir}/marked.py/sub"], "cannot be created"),
        (["eigenvalues", "{dir}/nowhere.py:f"], "no such file: "),
    ],
)
def test_options_are_checked_before_the_target_is_imported(marked, tmp_path, capsys, argv, message):
    target = f"{marked / 'marked.py'}:build"
    argv = [a.replace("{m}", target).replace("{dir}", str(marked)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"probecore {argv[0]}: error: "), err
    assert message in err[0], err
    assert "--traceback" not in err[0]  # nothing of the user's code to show
    assert not (marked / "imported.mark").exists() and not (marked / "called.mark").exists()
    assert not (tmp_path / "out").exists()


def test_connect_requires_end_and_says_so(marked, tmp_path, capsys):
    target = f"{marked / 'marked.py'}:build"
    with pytest.raises(SystemExit) as exc:
        main(["connect", target, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "probecore connect: error: the following arguments are required: --end "
        "(`probecore connect --help` lists the options)"
    ]
    assert not (marked / "imported.mark").exists()
    with pytest.raises(SystemExit):
        main(["connect", "--help"])
    usage = " ".join(capsys.readouterr().out.split("\n\n")[0].split())
    assert " --end module:function " in usage and "[--end" not in usage


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["trace", "m:f", "--n-matvecs", "many"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("probecore trace: error: argument --n-matvecs: invalid int value")


MISSING = """
import {module}


def build():
    return None
"""

LATE = """
def build():
    import {module}
"""


@pytest.mark.parametrize(
    "module, backend, install, needed",
    [
        ("jax", None, "pip install probecore-jax, which brings jax", "./backends/jax"),
        ("jax", "probecore_jax", "JAX is not installed: pip install jax", None),
        ("torch", None, "pip install probecore-torch, which brings torch", "./backends/torch"),
        ("torch", "probecore_torch", "PyTorch is not installed: pip install torch", None),
        ("optax", None, "optax is not installed: pip install optax", "pip install probecore-jax"),
        ("optax", "probecore_jax", "optax is not installed: pip install optax", None),
        ("torchvision", None, "pip install torchvision", "pip install probecore-torch"),
    ],
)
@pytest.mark.parametrize("when", ["import", "call"])
def test_a_missing_framework_names_what_to_install(
    tmp_path, capsys, monkeypatch, module, backend, install, needed, when
):
    import types

    pc.plugins.get_plugin_manager()  # loaded (and cached) before the framework goes missing
    path = tmp_path / "model.py"
    path.write_text((MISSING if when == "import" else LATE).format(module=module))
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    for name in ("probecore_torch", "probecore_jax"):  # the backends: installed or not
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name) if name == backend else None)
    assert main(["eigenvalues", f"{path}:build", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("probecore eigenvalues: error: "), err
    assert f"ModuleNotFoundError: import of {module} halted" in err[0]
    assert install in err[0], err
    if needed is None:
        assert "backend" not in err[0]
    else:
        assert needed in err[0], err


FOREIGN = """
class Linear:
    pass


Linear.__module__ = "{module}"


def bare():
    return Linear(), len, [0.0]


def in_a_dict():
    return {{"w": Linear(), "b": [Linear()]}}, len, [0.0]
"""


@pytest.mark.parametrize(
    "module, label, dist",
    [("torch.nn", "PyTorch", "probecore-torch"), ("jaxlib._jax", "JAX", "probecore-jax")],
)
@pytest.mark.parametrize("fn", ["bare", "in_a_dict"])
def test_a_model_without_its_backend_names_the_backend(
    tmp_path, capsys, monkeypatch, module, label, dist, fn
):
    import types

    import probecore.plugins

    path = tmp_path / "model.py"
    path.write_text(FOREIGN.format(module=module))
    argv = ["eigenvalues", f"{path}:{fn}", "--out", str(tmp_path / "o")]
    # the backend is registered: it just does not take this object
    registered = ("objective", "torch", "jax")
    monkeypatch.setattr(probecore.plugins, "backend_names", lambda: registered)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "no installed backend recognises a model" in err
        and "pip install" not in err.split("Installed backends")[0]
    )
    # the backend is not registered
    monkeypatch.setattr(probecore.plugins, "backend_names", lambda: ("objective",))
    monkeypatch.setitem(sys.modules, dist.replace("-", "_"), None)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"(a {label} model): the {label} backend is not installed: pip install {dist}" in err[0]
    assert f"python3 -m pip install ./backends/{dist.split('-')[1]}" in err[0]
    # it can be imported, but no entry point registered it
    monkeypatch.setitem(sys.modules, dist.replace("-", "_"), types.ModuleType("backend"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "can be imported but is not registered as a probecore plugin; reinstall it" in err
    # ... because the plugins were switched off
    monkeypatch.setenv("PROBECORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert main(argv) == 2
    assert "PROBECORE_DISABLE_PLUGIN_AUTOLOAD is set" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["eigenvalues", "{t}:raises", "--traceback"],
        ["--traceback", "eigenvalues", "{t}:raises"],
        ["eigenvalues", "{t}:raises", "PROBECORE_TRACEBACK=1"],
    ],
)
def test_traceback_shows_where_instead_of_one_line(target, tmp_path, capsys, monkeypatch, argv):
    if argv[-1] == "PROBECORE_TRACEBACK=1":
        monkeypatch.setenv("PROBECORE_TRACEBACK", "1")
        argv = argv[:-1]
    argv = [a.replace("{t}", target) for a in argv] + ["--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    # the user's own code is in it, where the exception came from
    assert f'File "{target}", line ' in err and "in raises" in err
    assert "KeyError: 'no such data set'" in err
    assert "CLIError: " in err.strip().splitlines()[-1]


def test_without_traceback_the_one_line_says_how_to_get_it(target, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROBECORE_TRACEBACK", "0")  # 0 is off
    assert main(["eigenvalues", f"{target}:raises", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"probecore eigenvalues: error: {target}:raises raised KeyError: 'no such data set' "
        "(--traceback shows where)"
    ]


def test_traceback_reaches_the_plugin_commands(tmp_path, capsys):
    argv = ["study", "--out", str(tmp_path), "--stages", "spectrum,sharp"]
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["--traceback", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "`--stages`" in err


def test_help_imports_nothing_heavy():
    """Building the command (``--help``) imports no algorithm library, plot or framework."""
    code = (
        "import sys\n"
        "heavy = ('scipy', 'matplotlib', 'torch', 'jax', 'sklearn', 'zarr', 'dask')\n"
        "loaded = lambda: sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "import probecore.cli\n"
        "print(','.join(loaded()))\n"
        "try:\n"
        "    probecore.cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "for probe in probecore.cli._probes.PROBES:\n"
        "    try:\n"
        "        probecore.cli.main([probe, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(','.join(loaded()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROBECORE_DISABLE_PLUGIN_AUTOLOAD"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    on_import, after_help = lines[0], lines[-1]
    # the parsers (the probes' and the plugins') add nothing heavy to `import probecore`
    assert after_help == on_import
    if on_import:
        pytest.xfail(
            f"`import probecore` itself imports {on_import} (probecore/__init__.py imports "
            "every algorithm eagerly), so `probecore --help` still pays for it"
        )


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
