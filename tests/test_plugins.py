"""The plugin system: hook dispatch, NoBackendError, entry-point loading, CLI subcommands."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import probecore as pc
from probecore.analytic import Quadratic, Rosenbrock
from probecore.plugins import get_plugin_manager, hookimpl


class DictOfMatrixBackend:
    """A backend defined in the tests: claims ``{"A": ndarray}``, returns a Quadratic."""

    @hookimpl
    def probecore_make_objective(self, model, loss_fn, data, options):
        if not (isinstance(model, dict) and "A" in model):
            return None
        unknown = set(options) - {"dtype"}
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)}")
        return Quadratic(model["A"], dtype=options.get("dtype", np.float64))


@pytest.fixture
def registered():
    pm = get_plugin_manager()
    plugin = DictOfMatrixBackend()
    pm.register(plugin, name="dict-of-matrix")
    yield plugin
    pm.unregister(plugin)


def test_hook_probecore_make_objective(registered):
    A = np.diag([3.0, 1.0, -1.0])
    obj = pc.objective({"A": A}, dtype=np.float32)
    assert isinstance(obj, pc.Objective) and obj.dtype == np.float32
    assert "dict-of-matrix" in pc.backend_names()
    np.testing.assert_allclose(pc.lanczos(obj, k=1, rng=0).eigenvalues, [3.0], atol=1e-4)
    with pytest.raises(TypeError, match="unknown options"):
        pc.objective({"A": A}, device="cuda")


def test_objective_passthrough_is_builtin():
    r = Rosenbrock(3)
    assert pc.objective(r) is r
    assert "objective" in pc.backend_names()
    with pytest.raises(TypeError, match="already a probecore Objective"):
        pc.objective(r, data=[1, 2])


def test_no_backend_error_names_installed_backends(registered):
    with pytest.raises(pc.NoBackendError) as info:
        pc.objective(object())
    msg = str(info.value)
    assert "builtins.object" in msg
    assert "dict-of-matrix" in msg and "objective" in msg
    assert "dict-of-matrix" in info.value.backends


def test_backend_returning_non_objective_is_refused():
    class Broken:
        @hookimpl
        def probecore_make_objective(self, model):
            return "not an objective" if model == "x" else None

    pm = get_plugin_manager()
    plugin = Broken()
    pm.register(plugin)
    try:
        with pytest.raises(TypeError, match="does not implement"):
            pc.objective("x")
    finally:
        pm.unregister(plugin)


def test_misspelled_hook_argument_is_rejected():
    import pluggy

    class Misspelled:
        @hookimpl
        def probecore_make_objective(self, modle):
            return None

    with pytest.raises(pluggy.PluginValidationError):
        get_plugin_manager().register(Misspelled())


class HelloCommand:
    """A plugin defined in the tests: adds ``probecore hello`` (and is no backend)."""

    @hookimpl
    def probecore_add_commands(self, subparsers):
        parser = subparsers.add_parser("hello", help="say hello", description="Say hello.")
        parser.add_argument("--name", default="world", help="whom to greet")
        parser.add_argument("--fail", action="store_true", help="raise a ValueError")
        parser.set_defaults(func=self.run)

    @staticmethod
    def run(args):
        if args.fail:
            raise ValueError(f"cannot greet {args.name!r}\nsecond line")
        print(f"hello {args.name}")
        return 3 if args.name == "three" else 0


@pytest.fixture
def hello():
    pm = get_plugin_manager()
    plugin = HelloCommand()
    pm.register(plugin, name="hello")
    yield plugin
    pm.unregister(plugin)


def test_hook_probecore_add_commands(hello, capsys):
    from probecore.cli import main

    assert main(["hello", "--name", "you"]) == 0
    assert capsys.readouterr().out == "hello you\n"
    assert main(["hello", "--name", "three"]) == 3  # func's return value is the exit status
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "say hello" in capsys.readouterr().out
    # errors of a plugin's command: one line, exit status 2, as for the built-in ones
    assert main(["hello", "--fail"]) == 2
    assert capsys.readouterr().err == "probecore hello: error: cannot greet 'world'\n"
    # a command-only plugin is not a backend
    assert "hello" not in pc.backend_names()


def test_plugin_commands_are_gone_once_unregistered(hello, capsys):
    get_plugin_manager().unregister(hello)
    try:
        with pytest.raises(SystemExit):
            from probecore.cli import main

            main(["hello"])
        assert "invalid choice: 'hello'" in capsys.readouterr().err
    finally:
        get_plugin_manager().register(hello, name="hello")


def test_a_command_name_that_is_taken_is_reported_and_the_probes_stay(hello, capsys):
    from probecore.cli import main

    class Clash:
        @hookimpl
        def probecore_add_commands(self, subparsers):
            subparsers.add_parser("hello")

    pm = get_plugin_manager()
    clash = Clash()
    pm.register(clash)
    try:
        with pytest.raises(SystemExit) as exc:
            main(["eigenvalues", "--help"])
        assert exc.value.code == 0
        err = capsys.readouterr().err
        assert "a plugin failed to load or to add its subcommands" in err
        assert "conflicting subparser" in err
    finally:
        pm.unregister(clash)


def _fake_distribution(tmp_path):
    """An installed distribution with an entry point in group ``probecore``."""
    pkg = tmp_path / "fakebackend"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from probecore.plugins import hookimpl
            from probecore.analytic import Quadratic

            @hookimpl
            def probecore_make_objective(model, loss_fn, data, options):
                if isinstance(model, str) and model.startswith("fake:"):
                    return Quadratic(np.diag([float(v) for v in model[5:].split(",")]))
                return None
            """
        )
    )
    info = tmp_path / "fakebackend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakebackend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[probecore]\nfake = fakebackend\n")
    return tmp_path


SCRIPT = """
import probecore as pc
try:
    obj = pc.objective("fake:4,2,1")
    print("dim", obj.dim, "top", round(float(pc.lanczos(obj, k=1, rng=0).eigenvalues[0]), 6))
except pc.NoBackendError as exc:
    print("no backend:", ", ".join(exc.backends))
print("backends", ",".join(pc.backend_names()))
"""


def _run(tmp_path, **env):
    full_env = {k: v for k, v in os.environ.items() if k != "PROBECORE_DISABLE_PLUGIN_AUTOLOAD"}
    full_env.update(PYTHONPATH=str(tmp_path), **env)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=full_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout


def test_entry_point_backend_is_loaded(tmp_path):
    out = _run(_fake_distribution(tmp_path))
    assert "dim 3 top 4.0" in out
    assert "fake" in out.splitlines()[-1]


def test_autoload_can_be_disabled(tmp_path):
    out = _run(_fake_distribution(tmp_path), PROBECORE_DISABLE_PLUGIN_AUTOLOAD="1")
    assert "no backend: objective" in out
