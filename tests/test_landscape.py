"""Landscape probes against closed forms; chunking, storage, resume, executors, plots."""

from __future__ import annotations

import multiprocessing
import os
import textwrap
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import probecore as pc
from probecore import AbstractObjective
from probecore.analytic import Quadratic, Rosenbrock, default_layout

EPS64 = np.finfo(np.float64).eps

# Worker processes are spawned, not forked: a fork after JAX or torch started their thread
# pools can deadlock (JAX warns, and the suite turns warnings into errors).
_SPAWN = multiprocessing.get_context("spawn")


def _quadratic(n: int = 40, seed: int = 0) -> Quadratic:
    lam = np.linspace(-2.0, 6.0, n)
    return Quadratic.from_spectrum(lam, rng=seed, linear=True)  # gradient at x0 is non-zero


def _closed_form(q: Quadratic, x: np.ndarray, step: np.ndarray) -> float:
    """L(x + s) = L(x) + gᵀs + ½ sᵀHs, exactly, for a quadratic."""
    H = q.hessian()
    return q.loss(x) + q.grad(x) @ step + 0.5 * step @ H @ step


def test_plane_equals_the_quadratic_closed_form():
    q = _quadratic()
    D = pc.random_directions(q, k=2, rng=0, normalization="none", bias="weights").vectors
    a, b = np.linspace(-1, 1, 9), np.linspace(-0.5, 2, 7)
    r = pc.plane(q, D, alphas=a, betas=b, chunk_size=5)
    want = np.array([[_closed_form(q, q.x0, ai * D[0] + bj * D[1]) for ai in a] for bj in b])
    scale = np.max(np.abs(want))
    np.testing.assert_allclose(r.losses, want, rtol=1e-12, atol=1e-12 * scale)
    assert r.losses.shape == (7, 9) and r.complete and r.n_loss_evals == 63


def test_line_and_interpolation():
    q = _quadratic()
    d = np.random.default_rng(1).standard_normal(q.dim)
    t = np.linspace(-2, 2, 11)
    r = pc.line(q, d, coords=t)
    want = [_closed_form(q, q.x0, ti * d) for ti in t]
    np.testing.assert_allclose(r.losses, want, rtol=1e-12)
    xa, xb = q.x0, q.x0 + d
    r = pc.interpolate(q, xa, xb, coords=[0.0, 0.25, 1.0])
    np.testing.assert_allclose(r.losses[[0, 2]], [q.loss(xa), q.loss(xb)], rtol=1e-13)
    assert r.n_loss_evals == 3


def test_metrics_along_a_line():
    obj = pc.analytic.digits_logistic_regression()
    x = obj.minimize()
    with pytest.raises(ValueError, match="direction 0 is zero after normalization"):
        pc.random_directions(obj, k=1, rng=0)  # x0 is all zeros: nothing to match
    d = pc.random_directions(obj, k=2, x=x, rng=0)
    r = pc.line(obj, d.select(1), x=x, coords=[-1.0, 0.0, 1.0], metrics=True)
    # one metric evaluation per point, plus the one that finds the names
    assert r.metric_names == ("accuracy",) and r.n_metric_evals == 4 == r.n_loss_evals + 1
    assert r.metric("accuracy")[1] == pytest.approx(obj.metrics(x)["accuracy"])
    np.testing.assert_array_equal(
        r.losses, pc.line(obj, d.vectors[1], x=x, coords=[-1.0, 0.0, 1.0]).losses
    )
    assert r.metadata["directions"]["row"] == 1 and r.metadata["directions"]["seed"] == 0
    with pytest.raises(ValueError, match=r"select\(i\)"):
        pc.line(obj, d, x=x)
    with pytest.raises(ValueError, match="does not report"):
        pc.line(obj, d.select(0), x=x, metrics=["f1"])


def test_ray_curvature_is_dtHd_on_a_quadratic():
    q = _quadratic()
    H = q.hessian()
    r = pc.rays(q, n_rays=30, rng=4, chunk_size=8)
    D = pc.ray_directions(4, np.arange(30), q.dim)  # the rays the run drew
    np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1.0, rtol=1e-14)
    # the rays do not depend on chunking
    np.testing.assert_array_equal(
        pc.rays(q, n_rays=30, rng=4, chunk_size=7).losses_plus, r.losses_plus
    )
    exact = np.einsum("ij,jk,ik->i", D, H, D)
    # central differences are exact on quadratics; what is left is rounding: each loss has
    # error ~ eps·|L| ~ eps·(|L(x)| + ‖g‖ε + ‖H‖ε²), divided by ε².
    bound = 8 * EPS64 * (abs(r.loss0) + np.linalg.norm(q.grad(q.x0)) + 6) / r.eps**2
    np.testing.assert_allclose(r.kappa, exact, rtol=0, atol=bound)
    # checked run: ±ε and ±ε/2 per ray, ±ε/16 on the first 32 rays, and L(x)
    assert r.n_loss_evals == 4 * 30 + 2 * 30 + 1 and r.complete and r.n_kinked == 0


def test_ray_curvature_on_rosenbrock_to_finite_difference_accuracy():
    f = Rosenbrock(6)
    r = pc.rays(f, n_rays=12, rng=0, eps=1e-3, chunk_size=12)
    D = pc.ray_directions(0, np.arange(12), 6)
    exact = np.einsum("ij,jk,ik->i", D, f.hessian(f.x0), D)
    # truncation error ε²/12·|∂⁴L| with |∂⁴L| <= 24·100·4 along unit directions (quartic terms)
    np.testing.assert_allclose(r.kappa, exact, rtol=0, atol=1e-6 * 24 * 100 * 4 / 12 + 1e-4)


def test_mean_ray_curvature_converges_to_trace_over_dim_within_its_interval():
    q = _quadratic(n=60)
    truth = np.trace(q.hessian()) / q.dim
    inside, sems = 0, []
    for seed in range(40):
        r = pc.rays(q, n_rays=200, rng=seed)
        inside += r.mean_ci[0] <= truth <= r.mean_ci[1]
        sems.append(r.sem)
    # 95% intervals: 40 runs, P(fewer than 34 inside) < 0.3% for a correct interval
    assert inside >= 34
    big = pc.rays(q, n_rays=1600, rng=99)
    assert big.sem < 0.45 * np.mean(sems)  # sem ∝ 1/sqrt(n): 8x the rays, ~1/2.8 the sem
    assert abs(big.mean - truth) <= 4 * big.sem


def test_negative_fraction_and_its_interval():
    q = Quadratic.from_spectrum(np.r_[-np.ones(20), np.ones(20)], rng=0)
    r = pc.rays(q, n_rays=300, rng=0)
    lo, hi = r.negative_fraction_ci
    assert lo <= r.negative_fraction <= hi and 0.3 < r.negative_fraction < 0.7
    assert 0 < lo < hi < 1


def test_default_eps_by_precision():
    assert pc.default_ray_eps(np.float64) == 1e-5  # kinks: docs/landscape.md, "Errors of κ"
    assert pc.default_ray_eps(np.float32) == 0.1


class _Exploding(AbstractObjective):
    """exp(‖x‖²): overflows to inf a few units from the origin."""

    def __init__(self, dim: int = 4) -> None:
        self.dim, self.dtype = dim, np.dtype(np.float64)
        self.layout = default_layout(dim)
        self.x0 = np.zeros(dim)

    def loss(self, x):
        with np.errstate(over="ignore"):
            return float(np.exp(np.dot(x, x)))

    def grad(self, x):
        return 2 * x * self.loss(x)

    def hvp(self, x, v):
        return 2 * v * self.loss(x) + 4 * x * (x @ v) * self.loss(x)


def test_non_finite_losses_are_recorded_and_plotted(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from probecore import plot

    obj = _Exploding()
    D = np.eye(4)[:2] * 30.0  # exp(900) overflows
    r = pc.plane(obj, D, alphas=np.linspace(-1, 1, 7), betas=np.linspace(-1, 1, 7))
    assert np.isinf(r.losses).any() and np.isfinite(r.losses).any()
    assert r.losses[3, 3] == 1.0
    ax = plot.contour(r)
    ax.figure.savefig(tmp_path / "c.png")
    ax = plot.surface(r)
    ax.figure.savefig(tmp_path / "s.png")
    assert os.path.getsize(tmp_path / "c.png") > 5000 and os.path.getsize(tmp_path / "s.png") > 5000
    rr = pc.rays(obj, n_rays=5, eps=40.0, rng=0)
    assert rr.n_finite == 0 and np.isnan(rr.mean)


def test_bad_grids_and_directions_raise_clear_errors():
    q = _quadratic(n=10)
    D = np.ones((2, 10))
    with pytest.raises(ValueError, match="`alphas` must hold at least one value"):
        pc.plane(q, D, alphas=[])
    with pytest.raises(ValueError, match=r"`betas` must be strictly increasing; betas\[2\]"):
        pc.plane(q, D, betas=[0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="`alphas` must be 1-D"):
        pc.plane(q, D, alphas=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="`coords` must be finite"):
        pc.line(q, D[0], coords=[0.0, np.nan])
    with pytest.raises(ValueError, match=r"`directions` must have shape \(2, 10\)"):
        pc.plane(q, np.ones((3, 10)))
    with pytest.raises(TypeError, match="`direction` must be a Directions"):
        pc.line(q, "up")
    with pytest.raises(ValueError, match="`n_rays`"):
        pc.rays(q, n_rays=0)
    with pytest.raises(ValueError, match="`eps` must be positive"):
        pc.rays(q, eps=0.0)
    with pytest.raises(TypeError, match="`executor` must be a concurrent.futures.Executor"):
        pc.plane(q, D, executor="dask")
    with pytest.raises(TypeError, match="probecore Objective"):
        pc.plane(object(), D)
    with pytest.raises(ValueError, match="pass an `executor` too"):
        pc.plane(q, D, objective_factory=_make_quadratic)
    with pytest.raises(TypeError, match="does not accept `x`"):
        pc.interpolate(q, q.x0, q.x0 + 1, x=q.x0)
    with pytest.raises(ValueError, match="`chunk_size`"):
        pc.plane(q, D, chunk_size=0)


# --------------------------------------------------------------------------- storage


def test_store_round_trip_and_resume_computes_nothing_twice(tmp_path):
    q = _quadratic()
    D = pc.random_directions(q, k=2, rng=0)
    grid = dict(alphas=np.linspace(-1, 1, 11), betas=np.linspace(-1, 1, 9), chunk_size=7)
    full = pc.plane(q, D, **grid)
    path = tmp_path / "plane.zarr"
    first = pc.plane(q, D, store=path, **grid)
    again = pc.plane(q, D, store=path, **grid)
    # each stored call also evaluates the origin, which identifies the objective
    assert first.n_loss_evals == 1 + 99 and again.n_loss_evals == 1
    np.testing.assert_array_equal(again.losses, full.losses)
    back = pc.load_run(path)
    np.testing.assert_array_equal(back.losses, full.losses)
    np.testing.assert_array_equal(back.alphas, grid["alphas"])
    meta = back.metadata
    assert meta["directions"]["seed"] == 0 and meta["directions"]["normalization"] == "filter"
    assert meta["objective"]["dim"] == q.dim and "probecore" in meta["objective"]["versions"]
    # the store is plain Zarr: ordinary tools read it
    import zarr

    g = zarr.open_group(str(path), mode="r")
    assert g["done"][:].all() and g["loss"].shape == (99,)


def test_interrupted_run_resumes_with_identical_values(tmp_path, monkeypatch):
    q = _quadratic()
    D = pc.random_directions(q, k=2, rng=0)
    grid = dict(alphas=np.linspace(-1, 1, 10), betas=np.linspace(-1, 1, 10), chunk_size=8)
    full = pc.plane(q, D, **grid)
    calls = {"n": 0}
    original = Quadratic.losses_in_span

    def flaky(self, origin, basis, coeffs):
        calls["n"] += 1
        if calls["n"] == 6:  # call 1 is the loss at the origin, the store's fingerprint
            raise KeyboardInterrupt  # the user pressed Ctrl-C during chunk 5
        return original(self, origin, basis, coeffs)

    monkeypatch.setattr(Quadratic, "losses_in_span", flaky)
    path = tmp_path / "p.zarr"
    with pytest.raises(KeyboardInterrupt):
        pc.plane(q, D, store=path, **grid)
    partial = pc.load_run(path)
    assert partial.computed.sum() == 32 and not partial.complete
    assert np.isnan(partial.losses[~partial.computed]).all()
    monkeypatch.setattr(Quadratic, "losses_in_span", original)
    resumed = pc.plane(q, D, store=path, **grid)
    assert resumed.n_loss_evals == 1 + 100 - 32  # the origin, then the missing chunks
    np.testing.assert_array_equal(resumed.losses, full.losses)


def test_store_refuses_a_different_run(tmp_path):
    q = _quadratic()
    D = pc.random_directions(q, k=2, rng=0)
    path = tmp_path / "p.zarr"
    pc.plane(q, D, alphas=[0.0, 1.0], betas=[0.0, 1.0], store=path)
    with pytest.raises(ValueError, match="holds a different run: its 'alphas' array differs"):
        pc.plane(q, D, alphas=[0.0, 2.0], betas=[0.0, 1.0], store=path)
    D2 = pc.random_directions(q, k=2, rng=1)
    with pytest.raises(ValueError, match="holds a different run: its directions"):
        pc.plane(q, D2, alphas=[0.0, 1.0], betas=[0.0, 1.0], store=path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        pc.plane(q, D, store=tmp_path / "file")


def test_rays_resume_from_store(tmp_path):
    q = _quadratic()
    path = tmp_path / "r.zarr"
    full = pc.rays(q, n_rays=50, rng=3, chunk_size=10)
    stored = pc.rays(q, n_rays=50, rng=3, chunk_size=10, store=path)
    again = pc.rays(q, n_rays=50, rng=3, chunk_size=10, store=path)
    np.testing.assert_array_equal(again.kappa, full.kappa)
    assert stored.n_loss_evals == 4 * 50 + 2 * 32 + 1 and again.n_loss_evals == 1
    back = pc.load_run(path)
    np.testing.assert_array_equal(back.kappa, full.kappa)
    assert back.mean == full.mean
    # the confidence level and user metadata come back; user keys cannot clobber ours
    half = pc.rays(
        q,
        n_rays=50,
        rng=3,
        chunk_size=10,
        confidence=0.5,
        store=tmp_path / "h.zarr",
        metadata={"objective": "mine", "entropy": 1},
    )
    back = pc.load_run(tmp_path / "h.zarr")
    assert back.confidence == 0.5 and back.metadata["user"]["objective"] == "mine"
    np.testing.assert_array_equal(back.mean_ci, half.mean_ci)
    with pytest.raises(TypeError, match="`rng` must be an int seed when `store` is given"):
        pc.rays(q, n_rays=5, rng=None, store=tmp_path / "none.zarr")


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import probecore as pc
    from probecore.analytic import Quadratic

    class Slow(Quadratic):
        def loss(self, x):
            time.sleep(0.004)
            return super().loss(x)

    q = Slow(np.diag(np.linspace(1.0, 3.0, 30)), b=np.ones(30), x0=np.full(30, 0.5))
    D = pc.random_directions(q, k=2, rng=0)
    r = pc.plane(q, D, alphas=np.linspace(-1, 1, 21), betas=np.linspace(-1, 1, 21),
                 chunk_size=9, store=sys.argv[1], progress=False)
    print(r.n_loss_evals)
    """
)


def test_sigkill_mid_run_then_restart_gives_bitwise_identical_values(tmp_path, kill_and_resume):
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT)
    saved, evaluated, path, fresh = kill_and_resume(script, tmp_path, total=441, at_least=100)
    assert evaluated == 1 + 441 - saved  # none of the saved points recomputed (1: the origin)
    np.testing.assert_array_equal(pc.load_run(path).losses, pc.load_run(fresh).losses)


def test_the_probes_evaluate_a_point_plan_through_one_engine(tmp_path):
    from probecore._probes.engine import PointPlan, evaluate_plan

    q = _quadratic()
    d = pc.random_directions(q, k=1, rng=0)
    t = np.linspace(-1, 1, 9)
    r = pc.line(q, d, coords=t, chunk_size=4)
    plan = PointPlan(kind="line", origin=q.x0, basis=d.vectors, coeffs=t[:, None])
    out = evaluate_plan(q, plan, chunk_size=4)
    np.testing.assert_array_equal(out.losses, r.losses)
    assert out.n_evaluated == r.n_loss_evals == 9 and out.computed.all()
    np.testing.assert_array_equal(plan.points(2, 3)[0], q.x0 + t[2] * d.vectors[0])
    with pytest.raises(ValueError, match="coeffs must have shape"):
        PointPlan(kind="line", origin=q.x0, basis=d.vectors, coeffs=np.zeros((3, 2)))
    # a kind nobody reads back is stored, but load_run says so instead of guessing
    evaluate_plan(
        q,
        PointPlan(kind="mystery", origin=q.x0, basis=d.vectors, coeffs=t[:, None]),
        store=tmp_path / "m.zarr",
    )
    with pytest.raises(ValueError, match="holds a 'mystery' run"):
        pc.load_run(tmp_path / "m.zarr")


# --------------------------------------------------------------------------- executors


def _make_quadratic():
    return _quadratic()


def test_process_pool_and_threads_equal_serial():
    q = _quadratic()
    D = pc.random_directions(q, k=2, rng=0)
    grid = dict(alphas=np.linspace(-1, 1, 9), betas=np.linspace(-1, 1, 9), chunk_size=10)
    serial = pc.plane(q, D, **grid)
    with ProcessPoolExecutor(2, mp_context=_SPAWN) as ex:
        par = pc.plane(q, D, executor=ex, **grid)
        fac = pc.plane(q, D, executor=ex, objective_factory=_make_quadratic, **grid)
        r_par = pc.rays(q, n_rays=40, rng=1, chunk_size=8, executor=ex)
    with ThreadPoolExecutor(2) as ex:
        thr = pc.plane(q, D, executor=ex, **grid)
    for r in (par, fac, thr):
        np.testing.assert_array_equal(r.losses, serial.losses)
    np.testing.assert_array_equal(r_par.kappa, pc.rays(q, n_rays=40, rng=1, chunk_size=8).kappa)


@pytest.mark.slow
def test_dask_local_cluster_equals_serial(tmp_path):
    distributed = pytest.importorskip("distributed")
    q = _quadratic()
    D = pc.random_directions(q, k=2, rng=0)
    grid = dict(alphas=np.linspace(-1, 1, 9), betas=np.linspace(-1, 1, 9), chunk_size=10)
    serial = pc.plane(q, D, **grid)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: 8787 may be taken by another server
            local_directory=str(tmp_path),
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        r = pc.plane(q, D, executor=client.get_executor(), store=tmp_path / "d.zarr", **grid)
    np.testing.assert_array_equal(r.losses, serial.losses)


# --------------------------------------------------------------------------- plots


def test_plots_write_non_empty_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from probecore import plot

    q = _quadratic()
    D = pc.random_directions(q, k=2, rng=0)
    r = pc.plane(q, D, alphas=np.linspace(-1, 1, 15), betas=np.linspace(-1, 1, 15))
    lines = [pc.line(q, D[i], coords=np.linspace(-1, 1, 21)) for i in range(2)]
    rr = pc.rays(q, n_rays=100, rng=0)
    axes = {
        "contour": plot.contour(r, levels=12),
        "surface": plot.surface(r),
        "profile": plot.profile(*lines, labels=["d1", "d2"]),
        "rays": plot.ray_histogram(rr),
    }
    for name, ax in axes.items():
        ax.figure.savefig(tmp_path / f"{name}.png", dpi=80)
        assert os.path.getsize(tmp_path / f"{name}.png") > 5000, name
    with pytest.raises(TypeError, match="PlaneResult"):
        plot.contour(lines[0])


# --------------------------------------------------------------------------- grid size


class _Counting(AbstractObjective):
    """A small quadratic that counts every evaluation (loss, span, metrics)."""

    def __init__(self) -> None:
        self.q = Quadratic.from_spectrum([1.0, 3.0], rng=0)
        self.dim, self.dtype, self.layout, self.x0 = 2, self.q.dtype, self.q.layout, self.q.x0
        self.calls = 0

    def loss(self, x):
        self.calls += 1
        return self.q.loss(x)

    def grad(self, x):
        return self.q.grad(x)

    def hvp(self, x, v):
        return self.q.hvp(x, v)

    def losses_in_span(self, origin, basis, coeffs):
        self.calls += 1
        return super().losses_in_span(origin, basis, coeffs)

    def metrics(self, x):
        self.calls += 1
        return {"a": 0.0, "b": 1.0}


def test_oversized_plane_is_refused_before_allocating(monkeypatch):
    # issue 13: a 2e4 x 2e4 plane allocated 6 GB and ran 50 s before a MemoryError
    import tracemalloc

    monkeypatch.setenv("PROBECORE_MAX_GRID_BYTES", "2e9")
    obj = _Counting()
    a = np.linspace(-1.0, 1.0, 20_000)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            pc.plane(obj, np.eye(2), alphas=a, betas=a, metrics=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10e6, peak
    assert obj.calls == 0  # not one loss, not even the metrics' discovery
    msg = str(info.value)
    assert "`alphas` × `betas` (20,000 × 20,000)" in msg
    assert "400,000,000 points" in msg
    assert "16.4 GB" in msg  # 4e8 points x 41 bytes
    assert "budget of 2.0 GB (PROBECORE_MAX_GRID_BYTES=2e9)" in msg
    assert "tiles" in msg and "alphas=alphas[i:j]" in msg


def test_default_grid_budget_is_half_the_physical_memory(monkeypatch):
    from probecore._contract.validation import grid_memory_budget

    monkeypatch.delenv("PROBECORE_MAX_GRID_BYTES", raising=False)
    budget, rule = grid_memory_budget()
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = -1
    if physical > 0:
        assert budget == physical // 2 and rule.startswith("half the physical memory")
    else:
        assert budget == 8 * 2**30
    # a 1e6 x 1e6 plane (41 TB) exceeds any machine's budget
    a = np.linspace(-1.0, 1.0, 1_000_000)
    with pytest.raises(ValueError, match="41.0 TB"):
        pc.plane(_Counting(), np.eye(2), alphas=a, betas=a)


def test_grid_budget_estimate_and_normal_grids(monkeypatch):
    obj = _Counting()
    monkeypatch.delenv("PROBECORE_MAX_GRID_BYTES", raising=False)
    r = pc.plane(obj, np.eye(2), alphas=np.linspace(-1, 1, 101), betas=np.linspace(-1, 1, 101))
    assert r.losses.shape == (101, 101) and r.complete
    # an 11 x 11 plane without metrics: 121 points x (8 x 5 + 1) bytes = 4961 bytes
    grid = {"alphas": np.linspace(-1, 1, 11), "betas": np.linspace(-1, 1, 11)}
    monkeypatch.setenv("PROBECORE_MAX_GRID_BYTES", "4961")
    assert pc.plane(obj, np.eye(2), **grid).complete
    monkeypatch.setenv("PROBECORE_MAX_GRID_BYTES", "4960")
    with pytest.raises(ValueError, match=r"121 points, whose arrays would take 5.0 kB"):
        pc.plane(obj, np.eye(2), **grid)
    # two metrics add 2 x 2 floats a point; found by one metrics call, then refused
    monkeypatch.setenv("PROBECORE_MAX_GRID_BYTES", "8000")
    assert pc.plane(obj, np.eye(2), **grid).complete
    obj.calls = 0
    with pytest.raises(ValueError, match=r"121 points, whose arrays would take 8.8 kB"):
        pc.plane(obj, np.eye(2), metrics=True, **grid)
    assert obj.calls == 1


def test_oversized_lines_and_paths_are_refused_naming_the_parameter(monkeypatch):
    import tracemalloc

    monkeypatch.setenv("PROBECORE_MAX_GRID_BYTES", "1e6")
    obj = _Counting()
    coords = np.linspace(-1.0, 1.0, 100_000)
    ts = np.linspace(0.0, 1.0, 100_000)
    a, b = obj.x0, obj.x0 + 1.0
    cases = {
        "line": (lambda: pc.line(obj, np.eye(2)[0], coords=coords), "`coords` asks for 100,000"),
        "interpolate": (lambda: pc.interpolate(obj, a, b, coords=coords), "`coords` asks"),
        "path_n_points": (
            lambda: pc.evaluate_path(obj, a, b, n_points=10**10),
            "`n_points` asks for 10,000,000,000 points",
        ),
        "path_ts": (lambda: pc.evaluate_path(obj, a, b, ts=ts), "`ts` asks for 100,000 points"),
    }
    for name, (call, text) in cases.items():
        tracemalloc.start()
        try:
            with pytest.raises(ValueError) as info:
                call()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert text in str(info.value), name
        assert "budget of 1.0 MB" in str(info.value), name
        assert peak < 1e6, (name, peak)
    assert obj.calls == 0
    monkeypatch.setenv("PROBECORE_MAX_GRID_BYTES", "1e9")
    assert pc.line(obj, np.eye(2)[0], coords=coords).complete


@pytest.mark.parametrize("value", ["lots", "0", "-5", "nan"])
def test_grid_budget_variable_must_be_a_positive_number(monkeypatch, value):
    monkeypatch.setenv("PROBECORE_MAX_GRID_BYTES", value)
    with pytest.raises(ValueError, match="PROBECORE_MAX_GRID_BYTES must be a positive"):
        pc.plane(_Counting(), np.eye(2))
