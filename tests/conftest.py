"""Shared test configuration.

``PROBECORE_TEST_BACKENDS`` (comma-separated, default ``analytic``) selects the backends
whose objectives the parametrized tests run on. Naming a backend that is unknown or not
installed fails the session instead of skipping silently.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

KNOWN_BACKENDS = ("analytic", "torch", "jax")


def _requested_backends() -> tuple[str, ...]:
    raw = os.environ.get("PROBECORE_TEST_BACKENDS", "analytic")
    names = tuple(b.strip() for b in raw.split(",") if b.strip())
    unknown = [b for b in names if b not in KNOWN_BACKENDS]
    if unknown:
        raise pytest.UsageError(
            f"PROBECORE_TEST_BACKENDS names unknown backends {unknown}; known: {KNOWN_BACKENDS}"
        )
    for name in names:
        if name == "analytic":
            continue
        try:
            importlib.import_module(f"probecore_{name}")
        except ImportError as exc:  # a requested backend that is missing fails the session
            raise pytest.UsageError(
                f"PROBECORE_TEST_BACKENDS asks for {name!r} but probecore_{name} does not "
                f"import: {exc}"
            ) from exc
    return names


BACKENDS = _requested_backends()

# Float64 everywhere the frameworks allow it.
if "jax" in BACKENDS:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one compute thread per worker, as for torch
        os.environ.setdefault(
            "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )
    import jax

    jax.config.update("jax_enable_x64", True)
if "torch" in BACKENDS:
    import torch

    torch.set_default_dtype(torch.float64)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # One thread per xdist worker: torch's OpenMP threads spin while waiting, and two
        # workers × two threads on two cores slowed the torch tests tenfold.
        torch.set_num_threads(1)

# Backend-specific test modules are collected only when their backend is selected.
collect_ignore_glob = [
    f"frameworks/test_{name}*.py" for name in ("torch", "jax") if name not in BACKENDS
]
if not {"torch", "jax"} <= set(BACKENDS):
    collect_ignore_glob.append("frameworks/test_cross_backend*.py")


def _analytic_objectives():
    from probecore.analytic import (
        Quadratic,
        Rosenbrock,
        digits_logistic_regression,
        nn_like_spectrum,
    )

    logreg = digits_logistic_regression(l2=1e-2)
    rng = np.random.default_rng(0)
    return {
        "quadratic": Quadratic.from_spectrum(nn_like_spectrum(60, rng=1), rng=2, linear=True),
        "rosenbrock": Rosenbrock(12),
        "logreg": logreg.subset(np.arange(300)),
        "logreg_at_random_point": type(logreg)(
            logreg.features[:200],
            logreg.labels[:200],
            n_classes=10,
            l2=1e-2,
            x0=0.3 * rng.standard_normal(logreg.dim),
        ),
    }


@pytest.fixture(params=BACKENDS, ids=lambda b: f"backend={b}")
def backend(request) -> str:
    return request.param


@pytest.fixture
def objectives(backend):
    """Small float64 objectives of the selected backend, by name."""
    if backend == "analytic":
        return _analytic_objectives()
    module = importlib.import_module(f"frameworks.models_{backend}")
    return module.make_objectives()


@pytest.fixture
def kill_and_resume():
    """Run a stored landscape run in a subprocess, SIGKILL it midway, resume, run afresh.

    ``run(script, directory, total, at_least)`` starts ``python script <store>``, kills it
    with SIGKILL once ``at_least`` points are marked done, checks that some but not all of
    the ``total`` points were saved, reruns the script on the same store (it must print
    the number of points it evaluated), then runs it on a fresh store. Returns
    ``(saved, evaluated_on_resume, resumed_store, fresh_store)``.
    """

    def run(script, directory, total: int, at_least: int) -> tuple[int, int, str, str]:
        import zarr

        path, fresh = str(directory / "killed.zarr"), str(directory / "fresh.zarr")
        proc = subprocess.Popen([sys.executable, str(script), path])
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            try:
                if int(zarr.open_group(path, mode="r")["done"][:].sum()) >= at_least:
                    break
            except Exception:  # the group may not exist yet
                continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        saved = int(zarr.open_group(path, mode="r")["done"][:].sum())
        assert at_least <= saved < total, saved
        out = subprocess.run(
            [sys.executable, str(script), path], capture_output=True, text=True, check=True
        )
        subprocess.run([sys.executable, str(script), fresh], capture_output=True, check=True)
        return saved, int(out.stdout.strip()), path, fresh

    return run
