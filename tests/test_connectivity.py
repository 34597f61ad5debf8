"""Mode connectivity on analytic objectives: curves, their gradients, fits and barriers."""

from __future__ import annotations

import multiprocessing
import textwrap
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import probecore as pc
from probecore.analytic import Quadratic, Ring, Rosenbrock, digits_logistic_regression

A, B = np.array([1.0, 0.0]), np.array([-1.0, 0.0])


def test_ring_linear_barrier_is_exactly_one():
    r = pc.evaluate_path(Ring(), A, B, n_points=11)
    assert r.barrier == 1.0 and r.barrier_mean == 1.0 and r.t_max == 0.5
    assert r.losses[0] == r.losses[-1] == 0.0
    # the grid, then 8 evaluations to refine each of the two maxima (never above 1 here)
    assert r.n_loss_evals == 11 + 2 * 8 and r.kind == "line" and r.refined


def test_fitted_quadratic_bezier_follows_the_ring():
    # For φ(t) = (1 − 2t, 2c·t(1 − t)), E_t (‖φ‖² − 1)² is smallest at c² = 9/2, where
    # the largest loss on the curve is 1/c⁴ = 4/81 ≈ 0.0494: below 0.05, but only just,
    # so the fit must converge to c within about 0.2% (Garipov's step-size decay and
    # stratified t); the segment itself is stationary, so it starts off it.
    fit = pc.fit_curve(Ring(), A, B, epochs=100, init=[[0.0, 0.1]], rng=0)
    theta = fit.points[1]
    assert abs(theta[0]) < 5e-3 and abs(theta[1] - np.sqrt(4.5)) < 5e-3
    r = pc.evaluate_path(Ring(), fit.curve, n_points=2001)
    assert 4 / 81 - 1e-6 <= r.barrier < 0.05
    np.testing.assert_array_equal(fit.points[[0, -1]], np.stack([A, B]))  # endpoints fixed
    assert fit.n_grad_evals == 100 * 50 and fit.history_loss.shape == (5000,)


@pytest.mark.parametrize("kind", ["bezier", "chain"])
@given(n_bends=st.integers(1, 3), t=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_curve_gradient_matches_finite_differences(kind, n_bends, t, seed):
    f = Rosenbrock(4)
    rng = np.random.default_rng(seed)
    P = rng.uniform(-1.5, 1.5, size=(n_bends + 2, 4))
    curve = pc.Curve(kind=kind, points=P)
    value, G = pc.curve_loss_and_grad(f, curve, t)
    assert value == pytest.approx(f.loss(curve.point(t)), rel=1e-14, abs=1e-14)
    # central differences: truncation O(h²)·|f'''|, rounding O(eps·|f|/h); h = 1e-5
    h = 1e-5
    fd = np.zeros_like(G)
    for k in range(n_bends):
        for i in range(4):
            Q = P.copy()
            Q[k + 1, i] += h
            up = f.loss(pc.Curve(kind=kind, points=Q).point(t))
            Q[k + 1, i] -= 2 * h
            down = f.loss(pc.Curve(kind=kind, points=Q).point(t))
            fd[k, i] = (up - down) / (2 * h)
    scale = 1.0 + float(np.max(np.abs(G)))
    np.testing.assert_allclose(G, fd, rtol=0, atol=1e-5 * scale)


@given(n_bends=st.integers(1, 4), ts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_coefficients_partition_unity_and_hit_the_ends(n_bends, ts):
    P = np.arange((n_bends + 2) * 3, dtype=float).reshape(-1, 3) ** 2
    for kind in ("bezier", "chain"):
        c = pc.Curve(kind=kind, points=P)
        C = c.coefficients(ts)
        np.testing.assert_allclose(C.sum(axis=1), 1.0, rtol=0, atol=1e-14)
        assert np.all(C >= -1e-15)
        np.testing.assert_array_equal(c.point(0.0), P[0])
        np.testing.assert_allclose(c.point(1.0), P[-1], rtol=1e-15)
    # the chain passes through its bends at t = k/(n+1)
    chain = pc.Curve(kind="chain", points=P)
    for k in range(1, n_bends + 1):
        np.testing.assert_allclose(chain.point(k / (n_bends + 1)), P[k], rtol=1e-14)


def test_quadratic_bezier_is_the_bernstein_combination():
    P = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 0.0]])
    c = pc.Curve(kind="bezier", points=P)
    for t in (0.1, 0.5, 0.8):
        want = (1 - t) ** 2 * P[0] + 2 * t * (1 - t) * P[1] + t**2 * P[2]
        np.testing.assert_allclose(c.point(t), want, rtol=1e-15)


def test_path_on_a_quadratic_equals_the_closed_form():
    q = Quadratic.from_spectrum([3.0, 1.0, 0.5], rng=2)
    a, b = q.x0 + np.array([1.0, 0.0, 0.0]), q.x0 + np.array([0.0, -2.0, 1.0])
    ts = np.linspace(0, 1, 9)
    r = pc.evaluate_path(q, a, b, ts=ts)
    want = [q.loss((1 - t) * a + t * b) for t in ts]
    np.testing.assert_allclose(r.losses, want, rtol=1e-12)
    assert r.barrier == pytest.approx(max(want) - max(want[0], want[-1]), rel=1e-12)
    assert r.barrier_mean == pytest.approx(max(want) - (want[0] + want[-1]) / 2, rel=1e-12)


def test_metrics_and_their_barriers_on_real_data():
    f = digits_logistic_regression()
    rng = np.random.default_rng(0)
    a = f.x0
    b = f.x0 + rng.standard_normal(f.dim)
    r = pc.evaluate_path(f, a, b, n_points=5)
    acc = r.metric("accuracy")
    assert acc.shape == (5,) and r.n_metric_evals == 5 + 1  # + finding the names
    assert r.metric_barriers["accuracy"] == pytest.approx(min(acc[0], acc[-1]) - acc.min())
    none = pc.evaluate_path(f, a, b, n_points=5, metrics=False)
    assert none.metric_names == () and none.n_metric_evals == 0


def test_data_objective_is_fitted_on_mini_batches():
    f = digits_logistic_regression()
    rng = np.random.default_rng(1)
    b = f.x0 + 0.5 * rng.standard_normal(f.dim)
    fit = pc.fit_curve(f, f.x0, b, epochs=2, batch_size=256, rng=0)
    n_batches = -(-f.n_examples // 256)
    assert fit.n_grad_evals == 2 * n_batches
    assert fit.n_examples_seen == 2 * f.n_examples
    same = pc.fit_curve(f, f.x0, b, epochs=2, batch_size=256, rng=0)
    np.testing.assert_array_equal(fit.points, same.points)  # reproducible from rng


def test_results_save_and_load(tmp_path):
    fit = pc.fit_curve(Ring(), A, B, epochs=2, init=[[0.0, 0.5]], rng=3)
    path = pc.evaluate_path(Ring(), fit.curve, n_points=7)
    for res in (fit, path, fit.curve):
        back = pc.load(pc.save(res, tmp_path / type(res).__name__))
        assert type(back) is type(res)
    back = pc.load(tmp_path / "CurveFit.npz")
    np.testing.assert_array_equal(back.curve.points, fit.points)
    assert back.seed == 3 and back.optimizer == "adam"


def test_mismatched_endpoints_and_bad_input_are_refused():
    ring = Ring()
    with pytest.raises(ValueError, match="has 3 entries but `objective` has dim 2"):
        pc.evaluate_path(ring, A, np.zeros(3))
    with pytest.raises(ValueError, match="float32 but `objective` is float64"):
        pc.fit_curve(ring, A, B.astype(np.float32))
    with pytest.raises(ValueError, match="`kind`"):
        pc.fit_curve(ring, A, B, kind="spline")
    with pytest.raises(ValueError, match="`n_bends` must be >= 1"):
        pc.fit_curve(ring, A, B, n_bends=0)
    with pytest.raises(ValueError, match="`lr` must be > 0"):
        pc.fit_curve(ring, A, B, lr=0.0)
    with pytest.raises(ValueError, match="`momentum` must be < 1"):
        pc.fit_curve(ring, A, B, optimizer="sgd", momentum=1.0)
    with pytest.raises(ValueError, match="`init` must be 'midpoint' or a finite array"):
        pc.fit_curve(ring, A, B, init=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="`ts` must lie in"):
        pc.evaluate_path(ring, A, B, ts=[0.5, 1.5])
    with pytest.raises(TypeError, match="`end` is required"):
        pc.evaluate_path(ring, A)
    with pytest.raises(TypeError, match="probecore Objective"):
        pc.evaluate_path(object(), A, B)


def test_layouts_of_objective_endpoints_are_compared_block_by_block():
    from probecore import Layout

    wide = Layout.from_shapes([("w", (2, 3), "weight"), ("b", (2,), "bias")])
    other = Layout.from_shapes([("w", (3, 2), "weight"), ("b", (2,), "bias")])
    f = Quadratic.from_spectrum(np.ones(8), rng=0, layout=wide)
    g = Quadratic.from_spectrum(np.ones(8), rng=1, layout=other)
    with pytest.raises(ValueError, match=r"block 0 is 'w' with shape \(3, 2\) in `end`"):
        pc.fit_curve(f, f, g)


def test_paths_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from probecore import plot

    f = digits_logistic_regression()
    b = f.x0 + np.random.default_rng(0).standard_normal(f.dim)
    line = pc.evaluate_path(f, f.x0, b, n_points=5)
    curve = pc.evaluate_path(f, pc.Curve(kind="bezier", points=np.stack([f.x0, f.x0, b])))
    axes = plot.paths(line, curve)
    assert len(axes) == 2 and len(axes[0].lines) == 2 and axes[1].get_ylabel() == "accuracy"
    out = tmp_path / "paths.png"
    axes[0].figure.savefig(out)
    assert out.stat().st_size > 1000
    with pytest.raises(ValueError, match="`metric` 'f1'"):
        plot.paths(line, metric="f1")
    with pytest.raises(TypeError, match="PathResult"):
        plot.paths(fit_result := pc.fit_curve(Ring(), A, B, epochs=1, init=[[0, 0.5]]))
    assert fit_result.epochs == 1


def test_full_batch_fits_take_steps_per_epoch_and_record_their_settings():
    f = digits_logistic_regression()
    b = f.x0 + 0.1 * np.random.default_rng(2).standard_normal(f.dim)
    fit = pc.fit_curve(f, f.x0, b, epochs=2, batch_size=None, steps_per_epoch=7, rng=0)
    assert fit.n_grad_evals == 14 and fit.batch_size is None and fit.steps_per_epoch == 7
    assert fit.n_examples_seen == 14 * f.n_examples and fit.schedule == "garipov"
    r = pc.evaluate_path(f, fit, n_points=3)  # a CurveFit is accepted as the path
    assert r.kind == "bezier"
    back = pc.load(pc.save(r, str(pytest.importorskip("tempfile").mkdtemp()) + "/p"))
    assert back.metric_names == r.metric_names == ("accuracy",)


def test_objectives_without_subsets_get_a_clear_message():
    class NoSubset(Ring):
        n_examples = 10

    with pytest.raises(TypeError, match="pass batch_size=None"):
        pc.fit_curve(NoSubset(), A, B, batch_size=4, init=[[0, 0.5]])


def test_curve_input_messages():
    with pytest.raises(ValueError, match="finite floats"):
        pc.Curve(kind="bezier", points=np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 0.0]]))
    c = pc.Curve(kind="bezier", points=np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(TypeError, match="one number for `point`"):
        c.point([0.2, 0.5])

    class Module:  # looks like a torch module: has parameters()
        def parameters(self):
            return iter(())

    with pytest.raises(TypeError, match=r"pass `probecore.objective\(model, loss_fn, data\)`"):
        pc.evaluate_path(Ring(), A, Module())


# --------------------------------------------------------------------------- the engine


def _logreg():
    """A small classifier with an accuracy metric, built without scikit-learn (fast to spawn)."""
    from probecore.analytic import LogisticRegression

    rng = np.random.default_rng(5)
    features = rng.standard_normal((200, 8))
    labels = np.argmax(features[:, :3], axis=1)
    return LogisticRegression(features, labels, n_classes=3, l2=1e-2)


def _bezier(f):
    rng = np.random.default_rng(0)
    bend = f.x0 + 0.5 * rng.standard_normal(f.dim)
    return pc.Curve(kind="bezier", points=np.stack([f.x0, bend, f.x0 + rng.standard_normal(f.dim)]))


def _assert_same_path(r, want):
    np.testing.assert_array_equal(r.ts, want.ts)
    np.testing.assert_array_equal(r.losses, want.losses)
    np.testing.assert_array_equal(r.metric_values, want.metric_values)
    assert (r.barrier, r.barrier_mean, r.t_max) == (want.barrier, want.barrier_mean, want.t_max)
    assert r.metric_barriers == want.metric_barriers and r.metric_names == want.metric_names
    assert r.kind == want.kind and r.complete


def test_chunked_path_equals_unchunked():
    f = _logreg()
    curve = _bezier(f)
    whole = pc.evaluate_path(f, curve, n_points=13)
    chunked = pc.evaluate_path(f, curve, n_points=13, chunk_size=4)
    _assert_same_path(chunked, whole)
    assert chunked.n_loss_evals - 2 * 8 == chunked.n_metric_evals - 1 == 13
    assert whole.metric_names == ("accuracy",) and whole.metadata["store"] is None


def _make_logreg():
    return _logreg()


def test_path_on_a_process_pool_equals_serial():
    f = _logreg()
    curve = _bezier(f)
    serial = pc.evaluate_path(f, curve, n_points=11, chunk_size=3)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        pooled = pc.evaluate_path(f, curve, n_points=11, chunk_size=3, executor=ex)
        built = pc.evaluate_path(
            f, curve, n_points=11, chunk_size=3, executor=ex, objective_factory=_make_logreg
        )
    _assert_same_path(pooled, serial)
    _assert_same_path(built, serial)
    assert pooled.n_loss_evals == 11 + 2 * 8  # refined in this process
    with pytest.raises(ValueError, match="pass an `executor` too"):
        pc.evaluate_path(f, curve, objective_factory=_make_logreg)


def test_stored_path_resumes_where_it_stopped_and_loads_back(tmp_path, monkeypatch):
    f = _logreg()
    curve = _bezier(f)
    kw = dict(n_points=21, chunk_size=4, refine=0)  # load_run reads barriers off the grid
    fresh = pc.evaluate_path(f, curve, **kw)
    calls = {"n": 0}
    original = type(f).losses_in_span

    def flaky(self, origin, basis, coeffs):
        calls["n"] += 1
        if calls["n"] == 5:  # call 1 is the loss at the origin, the store's fingerprint
            raise KeyboardInterrupt  # Ctrl-C during the fourth chunk
        return original(self, origin, basis, coeffs)

    monkeypatch.setattr(type(f), "losses_in_span", flaky)
    path = tmp_path / "path.zarr"
    with pytest.raises(KeyboardInterrupt):
        pc.evaluate_path(f, curve, store=path, metadata={"pair": "a-b"}, **kw)
    partial = pc.load_run(path)
    assert type(partial) is pc.PathResult and partial.computed.sum() == 12
    assert not partial.complete and np.isnan(partial.losses[~partial.computed]).all()
    assert np.isnan(partial.metric("accuracy")[~partial.computed]).all()
    np.testing.assert_array_equal(partial.losses[:12], fresh.losses[:12])
    assert np.isnan(partial.barrier) and np.isnan(partial.metric_barriers["accuracy"])
    monkeypatch.setattr(type(f), "losses_in_span", original)
    resumed = pc.evaluate_path(f, curve, store=path, metadata={"pair": "a-b"}, **kw)
    # a stored call evaluates the loss at the start once more: the store's fingerprint
    assert resumed.n_loss_evals - 1 == resumed.n_metric_evals - 1 == 21 - 12
    _assert_same_path(resumed, fresh)
    again = pc.evaluate_path(f, curve, store=path, metadata={"pair": "a-b"}, **kw)
    assert again.n_loss_evals - 1 == again.n_metric_evals - 1 == 0
    _assert_same_path(again, fresh)
    back = pc.load_run(path)
    _assert_same_path(back, fresh)
    assert back.n_loss_evals == 0 and back.metadata["store"] == str(path)
    assert back.metadata["user"] == {"pair": "a-b"} and back.metadata["curve"]["n_bends"] == 1
    assert back.metadata["objective"]["dim"] == f.dim
    # another curve, other ts or other metrics on the same store are refused
    other = pc.Curve(kind="chain", points=curve.points)
    with pytest.raises(ValueError, match="holds a different run"):
        pc.evaluate_path(f, other, store=path, **kw)
    with pytest.raises(ValueError, match="holds a different run"):
        pc.evaluate_path(f, curve, store=path, n_points=5, chunk_size=4)
    with pytest.raises(ValueError, match="holds a different run"):
        pc.evaluate_path(f, curve, store=path, metrics=False, **kw)


def test_stored_straight_path_loads_back_with_its_barriers(tmp_path):
    r = pc.evaluate_path(Ring(), A, B, n_points=11, chunk_size=2, store=tmp_path / "r.zarr")
    back = pc.load_run(tmp_path / "r.zarr")
    _assert_same_path(back, r)
    assert back.barrier == 1.0 and back.kind == "line" and back.metric_names == ()


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import probecore as pc
    from probecore.analytic import Quadratic

    store = sys.argv[1]
    marker = os.path.join(os.path.dirname(store), "stalled-once")
    stall = not os.path.exists(marker)  # only the first run stalls, after four chunks
    # (call 1 is the loss at the origin, which identifies the objective to the store)
    open(marker, "a").close()

    class Stalls(Quadratic):
        calls = 0

        def losses_in_span(self, origin, basis, coeffs):
            Stalls.calls += 1
            while stall and Stalls.calls > 5:
                time.sleep(1)  # waits here until it is killed
            return super().losses_in_span(origin, basis, coeffs)

    q = Stalls.from_spectrum(np.linspace(1.0, 3.0, 30), rng=0, linear=True)
    b = q.x0 + np.random.default_rng(1).standard_normal(q.dim)
    bend = 0.5 * (q.x0 + b) + np.random.default_rng(2).standard_normal(q.dim)
    curve = pc.Curve(kind="bezier", points=np.stack([q.x0, bend, b]))
    r = pc.evaluate_path(
        q, curve, n_points=61, chunk_size=5, store=store, progress=False, refine=0
    )
    print(r.n_loss_evals)
    """
)


def test_sigkill_mid_path_then_restart_evaluates_only_the_missing_points(tmp_path, kill_and_resume):
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT)
    saved, evaluated, path, fresh = kill_and_resume(script, tmp_path, total=61, at_least=20)
    # none of the saved points recomputed; one evaluation at the start: the fingerprint
    assert saved == 20 and evaluated == 1 + 61 - 20
    resumed, again = pc.load_run(path), pc.load_run(fresh)
    assert resumed.complete
    _assert_same_path(resumed, again)


def test_path_progress_bar(capfd):
    quiet = pc.evaluate_path(Ring(), A, B, n_points=9, chunk_size=2, progress=False)
    assert "path" not in capfd.readouterr().err
    shown = pc.evaluate_path(Ring(), A, B, n_points=9, chunk_size=2, progress=True)
    assert "path" in capfd.readouterr().err
    _assert_same_path(shown, quiet)
    with pytest.raises(TypeError, match="`progress`"):
        pc.evaluate_path(Ring(), A, B, progress="yes")


def test_path_results_saved_before_paths_were_stored_load_as_complete():
    r = pc.PathResult(
        ts=np.array([0.0, 1.0]), losses=np.zeros(2), barrier=0.0, barrier_mean=0.0, t_max=0.0
    )
    assert r.computed.tolist() == [True, True] and r.complete


class _OverflowAtTheEnd(pc.AbstractObjective):
    """``½‖x‖²``, but infinite (overflow) where ``x[0] > 0.9``."""

    dim, dtype = 2, np.dtype(np.float64)
    layout = pc.Layout.single(2)
    x0 = np.zeros(2)

    def loss(self, x):
        return np.inf if x[0] > 0.9 else 0.5 * float(x @ x)

    def grad(self, x):
        return np.asarray(x, dtype=np.float64)

    def hvp(self, x, v):
        return np.asarray(v, dtype=np.float64)


@pytest.mark.parametrize("end", [np.array([1.0, 0.0]), np.array([0.95, 0.0])])
def test_a_path_ending_at_an_infinite_loss_has_an_infinite_barrier(end):
    r = pc.evaluate_path(_OverflowAtTheEnd(), np.zeros(2), end, n_points=5, metrics=False)
    assert np.isinf(r.losses[-1])
    assert r.barrier == np.inf and r.barrier_mean == np.inf
    assert r.t_max == 1.0


class _Bump(pc.AbstractObjective):
    """``L(x) = −(x − 0.37)²`` in one dimension: along 0 → 1 a peak between grid points."""

    dim, dtype, x0 = 1, np.dtype(np.float64), np.zeros(1)
    layout = pc.Layout.from_shapes([("x", (1,), "other")])

    def loss(self, x):
        return float(-((x[0] - 0.37) ** 2))

    def grad(self, x):
        return np.array([-2.0 * (x[0] - 0.37)])

    def hvp(self, x, v):
        return -2.0 * np.asarray(v, dtype=np.float64)


def test_barriers_are_refined_between_grid_points():
    """Golden-section search finds the peak at t = 0.37 that an 11-point grid misses.

    After the two first evaluations each of the 6 more shrinks the bracket [0.3, 0.5] by
    0.618: the peak is located within 0.2·0.618**6 = 0.011, so the loss there is within
    0.011² of the true maximum 0 (the grid's best, at t = 0.4, is −9e-4 below it).
    """
    bump, a, b = _Bump(), np.zeros(1), np.ones(1)
    grid = pc.evaluate_path(bump, a, b, n_points=11, refine=0)
    fine = pc.evaluate_path(bump, a, b, n_points=11)
    ends = (-(0.37**2), -(0.63**2))
    assert not grid.refined and fine.refined
    assert grid.t_max == pytest.approx(0.4) and grid.n_loss_evals == 11
    width = 0.2 * 0.618**6
    assert abs(fine.t_max - 0.37) <= width
    assert 0.0 - width**2 <= fine.barrier_mean + np.mean(ends) <= 0.0
    assert fine.barrier_mean > grid.barrier_mean and fine.n_loss_evals == 11 + 16
    # Entezari et al.'s barrier: the excess over the interpolated ends, −t² + t here,
    # is largest at t = 0.5 (on the grid): 0.25; refinement keeps it
    assert grid.barrier_interp == pytest.approx(0.25, abs=1e-15)
    assert fine.barrier_interp == pytest.approx(0.25, abs=1e-15)
    with pytest.raises(ValueError, match="`refine` must be 0"):
        pc.evaluate_path(bump, a, b, refine=1)
