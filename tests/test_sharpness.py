"""ε-sharpness against closed forms, exact box maxima and a rescaling symmetry."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probecore as pc
from probecore._geometry.sharpness import SharpnessResult, epsilon_sharpness
from probecore.analytic import Quadratic, Rosenbrock
from probecore.testing import check_objective

EPS64 = np.finfo(np.float64).eps


def _widths(x, eps, adaptive=False, eta=0.0):
    return eps * (np.abs(np.asarray(x, dtype=np.float64)) + (eta if adaptive else 1.0))


def _separable(h, b, x):
    """``½ Σ h z² + bᵀz + c`` with ``c`` chosen so that the loss is non-negative."""
    h, b = np.asarray(h), np.asarray(b)
    c = float(np.sum(np.where(h > 0, b * b / (2 * np.where(h > 0, h, 1.0)), 0.0)))
    return Quadratic(np.diag(h), b=b, c=c, x0=np.asarray(x))


def _coordinate_maxima(h, a, w):
    """``max_{|z| <= w} a z + ½ h z²`` per coordinate, and the maximizer."""
    interior = np.clip(-a / np.where(h < 0, h, -1.0), -w, w)
    vertex = np.where(a < 0, -w, w)
    z = np.where(h < 0, interior, vertex)
    return a * z + 0.5 * h * z * z, z


class _Counting:
    """Wraps an objective and counts calls of each method."""

    def __init__(self, objective):
        self._o = objective
        self.calls = {"loss": 0, "grad": 0, "loss_and_grad": 0}

    def __getattr__(self, name):
        return getattr(self._o, name)

    def loss(self, x):
        self.calls["loss"] += 1
        return self._o.loss(x)

    def grad(self, x):
        self.calls["grad"] += 1
        return self._o.grad(x)

    def loss_and_grad(self, x):
        self.calls["loss_and_grad"] += 1
        return self._o.loss_and_grad(x)


# ------------------------------------------------------------------- closed forms

dims = st.integers(1, 12)
values = st.floats(-3.0, 3.0, allow_nan=False)


@given(
    data=st.data(),
    n=dims,
    eps=st.floats(1e-4, 0.3),
    adaptive=st.booleans(),
)
@settings(max_examples=60)
def test_separable_convex_quadratic_equals_closed_form(data, n, eps, adaptive):
    h = np.array(data.draw(st.lists(st.floats(0.1, 10.0), min_size=n, max_size=n)))
    b = np.array(data.draw(st.lists(values, min_size=n, max_size=n)))
    x = np.array(data.draw(st.lists(values, min_size=n, max_size=n)))
    q = _separable(h, b, x)
    gtol, ftol = 1e-8, 1e-10
    r = epsilon_sharpness(q, eps=eps, adaptive=adaptive, gtol=gtol, ftol=ftol)
    loss0 = q.loss(x)
    w = _widths(x, eps, adaptive)
    # Each coordinate goes to the vertex along the sign of h x + b (the gradient).
    inc, z = _coordinate_maxima(h, h * x + b, w)
    exact = inc.sum() / (1 + loss0)
    assert r.converged, r.message
    # L-BFGS-B's own value tolerance (ftol relative to φ, see the docstring) plus the
    # rounding of the loss difference.
    tol = ftol * max(exact, r.metadata["phi_ref"]) + 16 * EPS64 * (1 + abs(loss0))
    assert abs(r.value - exact) <= tol, (r.value, exact)
    assert r.max_loss == q.loss(x + r.perturbation)
    # coordinates whose gain is above the rounding of the loss must sit at their vertex
    # (a box of width 1e-20 changes the loss by less than one ulp: any point will do)
    moved = np.abs(h * x + b) * w > 16 * EPS64 * (1 + abs(loss0))
    np.testing.assert_allclose(r.perturbation[moved], z[moved], rtol=1e-12, atol=0)


def _concave_gap_bound(h, a, w, y, scale, ref, gtol):
    """Bound on ``max φ − φ(y)`` for a separable quadratic, from projected gradients.

    L-BFGS-B minimizes ``f(u) = −φ(x + w⊙u)/φ₁`` over ``u ∈ [−1, 1]ⁿ`` and stops by its
    ``pgtol`` test when every component of the projected-gradient step
    ``P(u − ∇f) − u`` is at most ``gtol``. For a concave coordinate (curvature
    ``k = w²|h|/((1+L)φ₁)`` in ``f``) the gain still available is at most ``s²/(2k)``
    when the step ``s`` is the gradient, and at most ``s·max|∂f/∂u|`` when it is the
    distance to a bound. Each step is taken as at least ``gtol`` (what the test
    guarantees) and at least its value at ``y`` (what holds when L-BFGS-B stopped
    otherwise, at the rounding limit).
    """
    u = y / w
    grad_u = -(w * (a + h * y)) / (scale * ref)
    step = np.maximum(np.abs(np.clip(u - grad_u, -1.0, 1.0) - u), gtol)
    k = w**2 * np.abs(h) / (scale * ref)
    dmax = w * (np.abs(a) + np.abs(h) * w) / (scale * ref)
    return ref * np.sum(np.where(h < 0, np.maximum(step**2 / (2 * k), step * dmax), 0.0))


@given(data=st.data(), n=dims, eps=st.floats(1e-3, 0.5))
@settings(max_examples=60)
def test_separable_indefinite_quadratic_within_the_projected_gradient_bound(data, n, eps):
    # Coordinates with h < 0 have interior maxima, so L-BFGS-B has real work to do.
    mag = np.array(data.draw(st.lists(st.floats(0.1, 10.0), min_size=n, max_size=n)))
    sign = np.array(data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n)))
    h = mag * sign
    b = np.array(data.draw(st.lists(values, min_size=n, max_size=n)))
    x = np.array(data.draw(st.lists(values, min_size=n, max_size=n)))
    # Put the maximizer of each concave coordinate at a drawn place inside the box,
    # z* = frac·w, by choosing its linear term (z* = −(h x + b)/h).
    frac = np.array(data.draw(st.lists(st.floats(-0.95, 0.95), min_size=n, max_size=n)))
    w = _widths(x, eps)
    b = np.where(h < 0, -h * (x + frac * w), b)
    q = Quadratic(np.diag(h), b=b, x0=x)
    q.c = 0.5 - q.loss(x)  # L(x) = 0.5: only 1 + L(x) > 0 is required
    gtol = 1e-7
    r = epsilon_sharpness(q, eps=eps, gtol=gtol, ftol=0.0)
    assert r.message.startswith("CONVERGENCE") or r.message.startswith("ABNORMAL"), r.message
    loss0 = q.loss(x)
    a = h * x + b
    inc, z = _coordinate_maxima(h, a, w)
    exact = inc.sum() / (1 + loss0)
    y = r.perturbation
    # Convex coordinates start at their maximizing vertex and never leave it.
    convex = (h > 0) & (a != 0)
    np.testing.assert_array_equal(y[convex], z[convex])
    gap = _concave_gap_bound(h, a, w, y, 1 + loss0, r.metadata["phi_ref"], gtol)
    rounding = 64 * EPS64 * (1 + abs(loss0) + np.sum(np.abs(a) * w + np.abs(h) * w * w))
    assert -rounding <= exact - r.value <= gap + rounding, (r.value, exact, gap)


# --------------------------------------------------------- lower bounds elsewhere


def _box_qp_max(A, a, w):
    """Exact max of ``aᵀz + ½zᵀAz`` over ``|z| <= w`` by enumerating the faces (small n)."""
    n = a.size
    best = -np.inf
    for signs in itertools.product((-1, 0, 1), repeat=n):
        s = np.array(signs)
        free = s == 0
        z = s * w
        if free.any():
            Aff = A[np.ix_(free, free)]
            rhs = -(a[free] + A[np.ix_(free, ~free)] @ z[~free])
            try:
                z[free] = np.linalg.solve(Aff, rhs)
            except np.linalg.LinAlgError:
                continue
            if np.any(np.abs(z[free]) > w[free]):
                continue
        best = max(best, a @ z + 0.5 * z @ A @ z)
    return best


def _vertex_baseline(objective, x, w, n_random, seed):
    """φ at the gradient-sign vertex and at ``n_random`` random vertices of the box."""
    gen = np.random.default_rng(seed)
    loss0, g = objective.loss_and_grad(x)
    signs = [np.where(g < 0, -1.0, 1.0)] + [
        gen.choice([-1.0, 1.0], x.size) for _ in range(n_random)
    ]
    return max((objective.loss(x + s * w) - loss0) / (1 + loss0) for s in signs)


@pytest.mark.parametrize("seed", range(4))
def test_indefinite_quadratic_is_a_valid_lower_bound_above_vertex_baseline(seed):
    q = Quadratic.from_spectrum([3.0, 1.0, -2.0], rng=seed, linear=True)
    q.c = 20.0
    eps = 0.2
    x = q.x0
    w = _widths(x, eps)
    r = epsilon_sharpness(q, eps=eps, n_starts=8, rng=seed)
    loss0 = q.loss(x)
    assert np.all(np.abs(r.perturbation) <= w)
    assert r.max_loss == q.loss(x + r.perturbation)
    assert r.value == (r.max_loss - loss0) / (1 + loss0)
    exact = _box_qp_max(q.hessian(), q.grad(x), w) / (1 + loss0)
    assert r.value <= exact + 1e-12
    assert r.value >= _vertex_baseline(q, x, w, 64, seed)
    # With 8 starts in 3 dimensions the global maximum is found in these cases.
    assert r.value >= exact * (1 - 1e-6)


@pytest.mark.parametrize("eps", [1e-3, 1e-2])
def test_rosenbrock_lower_bound_above_vertex_baseline(eps):
    f = Rosenbrock(8)
    x = f.x0
    w = _widths(x, eps)
    r = epsilon_sharpness(f, eps=eps)
    assert r.converged, r.message
    assert np.all(np.abs(r.perturbation) <= w)
    assert r.max_loss == f.loss(x + r.perturbation)
    assert r.value >= _vertex_baseline(f, x, w, 256, 0)


# ------------------------------------------------------------ scale invariance


class _Products(pc.AbstractObjective):
    """``L(a, b) = ½‖M(a⊙b) − t‖² + ½‖a⊙b‖²/10 + 1``: unchanged by ``(a, b) → (αa, b/α)``."""

    def __init__(self, k, seed, x0):
        gen = np.random.default_rng(seed)
        self.k, self.dim, self.dtype = k, 2 * k, np.dtype(np.float64)
        self.M = gen.standard_normal((k, k))
        self.t = gen.standard_normal(k)
        self.x0 = np.asarray(x0, dtype=np.float64)
        self.layout = pc.Layout.single(self.dim)

    def _split(self, x):
        return x[: self.k], x[self.k :]

    def loss(self, x):
        a, b = self._split(x)
        p = a * b
        r = self.M @ p - self.t
        return float(0.5 * r @ r + 0.05 * p @ p + 1.0)

    def grad(self, x):
        a, b = self._split(x)
        p = a * b
        dp = self.M.T @ (self.M @ p - self.t) + 0.1 * p
        return np.concatenate([b * dp, a * dp])

    def hvp(self, x, v):
        a, b = self._split(x)
        va, vb = self._split(v)
        p = a * b
        dp = self.M.T @ (self.M @ p - self.t) + 0.1 * p
        jp = b * va + a * vb
        hp = self.M.T @ (self.M @ jp) + 0.1 * jp
        return np.concatenate([b * hp + vb * dp, a * hp + va * dp])


def test_products_objective_is_correct():
    f = _Products(3, 0, np.random.default_rng(1).standard_normal(6))
    report = check_objective(f)
    assert report.passed, str(report)


@pytest.mark.parametrize("seed", range(3))
def test_adaptive_sharpness_is_invariant_under_rescaling_keskar_is_not(seed):
    k = 4
    gen = np.random.default_rng(seed + 10)
    x = gen.standard_normal(2 * k)
    alpha = np.array([10.0, 0.1, 3.0, 0.5])
    f = _Products(k, seed, x)
    x_scaled = np.concatenate([alpha * x[:k], x[k:] / alpha])
    assert f.loss(x_scaled) == pytest.approx(f.loss(x), rel=1e-13)
    eps = 1e-2
    adaptive = [epsilon_sharpness(f, x=z, eps=eps, adaptive=True) for z in (x, x_scaled)]
    keskar = [epsilon_sharpness(f, x=z, eps=eps) for z in (x, x_scaled)]
    assert all(r.converged for r in adaptive + keskar)
    # In box coordinates both adaptive problems are the same function of u, so L-BFGS-B
    # takes the same steps; only the rounding of the two evaluations differs.
    assert adaptive[1].value == pytest.approx(adaptive[0].value, rel=1e-9)
    assert adaptive[1].n_iter == adaptive[0].n_iter
    np.testing.assert_allclose(
        adaptive[1].perturbation,
        np.concatenate([alpha, 1 / alpha]) * adaptive[0].perturbation,
        rtol=1e-8,
        atol=0,
    )
    assert abs(keskar[1].value - keskar[0].value) > 0.1 * keskar[0].value


def test_eta_one_is_keskars_box():
    f = Rosenbrock(6)
    a = epsilon_sharpness(f, eps=1e-2, adaptive=True, eta=1.0)
    b = epsilon_sharpness(f, eps=1e-2)
    assert a.value == b.value and a.eta == b.eta == 1.0
    assert a.adaptive and not b.adaptive


# ------------------------------------------------------------------- cost, options


@pytest.mark.parametrize("n_starts", [1, 3])
def test_cost_counts_every_loss_and_grad_call(n_starts):
    f = _Counting(Rosenbrock(6))
    r = epsilon_sharpness(f, eps=1e-2, n_starts=n_starts, rng=0)
    assert r.n_loss_evals == f.calls["loss_and_grad"] > 1
    assert f.calls["loss"] == f.calls["grad"] == 0
    starts = r.metadata["starts"]
    assert len(starts) == n_starts and r.n_iter == sum(s["n_iter"] for s in starts)


def test_maxiter_10_as_in_the_paper():
    # A concave, ill-conditioned quadratic: its maximum in a large box is interior and
    # L-BFGS-B needs several dozen iterations to reach it.
    q = Quadratic.from_spectrum(-np.logspace(0, 3, 40), rng=0, linear=True)
    q.c = 1e4
    r10 = epsilon_sharpness(q, eps=2.0, maxiter=10)
    full = epsilon_sharpness(q, eps=2.0)
    assert r10.n_iter == 10 < full.n_iter <= full.metadata["maxiter"]
    assert not r10.converged and "ITERATIONS REACHED LIMIT" in r10.message
    assert full.converged, full.message
    # Same start, same deterministic iterations: the long run extends the short one.
    assert full.value > r10.value > 0
    assert r10.n_loss_evals < full.n_loss_evals


def test_random_starts_are_reproducible_and_keep_the_best():
    f = Rosenbrock(6)
    one = epsilon_sharpness(f, eps=0.05)
    a = epsilon_sharpness(f, eps=0.05, n_starts=4, rng=7)
    b = epsilon_sharpness(f, eps=0.05, n_starts=4, rng=7)
    assert a.seed == 7 and one.seed is None
    assert a.value == b.value and np.array_equal(a.perturbation, b.perturbation)
    assert a.value >= one.value
    assert a.value >= max(s["value"] for s in a.metadata["starts"]) - 1e-15
    assert a.metadata["starts"][0]["value"] == pytest.approx(one.value, rel=1e-15)
    gen = np.random.default_rng(3)
    c = epsilon_sharpness(f, eps=0.05, n_starts=2, rng=gen)
    assert "bit_generator_state" in c.seed


def test_float32_objective_stays_in_box_and_dtype():
    q = Quadratic(np.diag([2.0, 1.0, 0.5]), c=1.0, x0=np.array([1.0, -2.0, 0.3]), dtype="float32")
    r = epsilon_sharpness(q, eps=1e-3)
    assert r.perturbation.dtype == np.float32
    w = (1e-3 * (np.abs(q.x0) + 1)).astype(np.float32)
    assert np.all(np.abs(r.perturbation) <= w)
    assert r.max_loss == q.loss(q.x0 + r.perturbation)
    assert r.converged, r.message


def test_zero_box_is_a_single_point():
    q = Quadratic(np.diag([1.0, 2.0]), c=1.0)
    f = _Counting(q)
    r = epsilon_sharpness(f, x=np.zeros(2), adaptive=True)  # η = 0 at x = 0
    assert r.value == 0.0 and r.converged and r.n_loss_evals == 1 == f.calls["loss_and_grad"]
    assert "single point" in r.message


def test_result_fields_percent_and_round_trip(tmp_path):
    q = Quadratic(np.diag([2.0, 1.0]), c=1.0, x0=np.array([1.0, -2.0]))
    r = epsilon_sharpness(q, eps=0.1, adaptive=True, eta=0.01)
    assert isinstance(r, SharpnessResult)
    assert r.percent == 100 * r.value
    assert r.eps == 0.1 and r.eta == 0.01 and r.loss0 == q.loss(q.x0)
    with pytest.raises(ValueError, match="read-only"):
        r.perturbation[0] = 1.0
    back = pc.load(pc.save(r, tmp_path / "sharp"))
    assert isinstance(back, SharpnessResult)
    assert back.value == r.value and back.message == r.message
    np.testing.assert_array_equal(back.perturbation, r.perturbation)
    assert back.metadata["starts"] == r.metadata["starts"]


def test_non_finite_loss_in_the_box_raises():
    class Barrier(pc.AbstractObjective):
        dim, dtype, x0 = 1, np.dtype(np.float64), np.array([0.9])
        layout = pc.Layout.single(1)

        def loss(self, x):
            return float(-np.log(1.0 - x[0])) if x[0] < 1 else float("inf")

        def grad(self, x):
            return np.array([1.0 / (1.0 - x[0])]) if x[0] < 1 else np.array([np.inf])

    with pytest.raises(FloatingPointError, match="reduce `eps`"):
        epsilon_sharpness(Barrier(), eps=0.1)


# ------------------------------------------------------------------- bad inputs


def _param(name):
    return re.escape(f"`{name}`")


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": -1e-3}, ValueError, "eps"),
        ({"eps": float("nan")}, ValueError, "eps"),
        ({"eps": float("inf")}, ValueError, "eps"),
        ({"eps": "1e-3"}, TypeError, "eps"),
        ({"x": np.zeros(3)}, ValueError, "x"),
        ({"x": np.array([np.nan, 0.0])}, ValueError, "x"),
        ({"x": np.array([1, 2])}, TypeError, "x"),
        ({"maxiter": 0}, ValueError, "maxiter"),
        ({"maxiter": 2.5}, TypeError, "maxiter"),
        ({"n_starts": 0}, ValueError, "n_starts"),
        ({"adaptive": "yes"}, TypeError, "adaptive"),
        ({"eta": -0.1, "adaptive": True}, ValueError, "eta"),
        ({"eta": 0.01}, ValueError, "eta"),
        ({"gtol": -1.0}, ValueError, "gtol"),
        ({"ftol": float("nan")}, ValueError, "ftol"),
        ({"rng": -1}, ValueError, "rng"),
        ({"rng": "seed", "n_starts": 2}, TypeError, "rng"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, exc, name):
    q = Quadratic(np.diag([1.0, 2.0]), c=1.0)
    with pytest.raises(exc, match=_param(name)):
        epsilon_sharpness(q, **kwargs)


def test_bad_objective_and_negative_loss():
    with pytest.raises(TypeError, match=_param("objective")):
        epsilon_sharpness(np.eye(2))
    q = Quadratic(np.diag([1.0, 2.0]), c=-5.0)
    with pytest.raises(ValueError, match=r"1 \+ L\(x\).*got L\(x\) = -5\.0"):
        epsilon_sharpness(q)


def test_sharpness_progress_bar_counts_evaluations(capfd):
    q = pc.analytic.Quadratic.from_spectrum(np.linspace(1.0, 3.0, 20), rng=0)
    quiet = pc.epsilon_sharpness(q, eps=1e-2, progress=False)
    assert "epsilon_sharpness" not in capfd.readouterr().err
    shown = pc.epsilon_sharpness(q, eps=1e-2, progress=True)
    err = capfd.readouterr().err
    assert "epsilon_sharpness" in err and "eval" in err
    assert shown.value == quiet.value and shown.n_loss_evals == quiet.n_loss_evals
    with pytest.raises(TypeError, match="`progress`"):
        pc.epsilon_sharpness(q, progress="yes")
