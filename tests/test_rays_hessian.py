"""``rays(curvature="hessian")``: dᵀHd of the same rays from one HVP each, no step."""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import probecore as pc
from probecore import AbstractObjective
from probecore.analytic import Quadratic, default_layout
from probecore.testing import dense_hessian


class _KinkedNoisy(AbstractObjective):
    """``½‖x‖² + s·|x₀ − b| + 1`` plus deterministic noise ``σ·z(x)`` (rounding-like).

    Its Hessian away from the kink is ``I``: ``dᵀHd = 1`` for every unit ``d``. A step
    of ``ε > b`` along a ray with ``d₀ ≠ 0`` crosses the kink, and every finite difference
    carries the noise.
    """

    def __init__(self, dim=20, *, sigma=0.0, s=0.0, b=0.0):
        self.dim, self.dtype = dim, np.dtype(np.float64)
        self.layout = default_layout(dim)
        self.x0 = np.zeros(dim)
        self.sigma, self.s, self.b = sigma, s, b

    def _z(self, x):
        h = hashlib.blake2b(np.asarray(x, dtype=np.float64).tobytes(), digest_size=8)
        return np.random.default_rng(int.from_bytes(h.digest(), "little")).standard_normal()

    def loss(self, x):
        x = np.asarray(x, dtype=np.float64)
        smooth = 0.5 * x @ x + self.s * abs(x[0] - self.b) + 1.0
        return float(smooth + self.sigma * self._z(x))

    def grad(self, x):
        return x + self.s * np.sign(x[0] - self.b) * np.eye(self.dim)[0]

    def hvp(self, x, v):
        return np.asarray(v, dtype=np.float64).copy()


def _quadratic():
    return Quadratic.from_spectrum(np.linspace(-1.0, 3.0, 40), rng=1)


def test_kappa_is_the_rayleigh_quotient_of_the_same_directions():
    q = _quadratic()
    H = dense_hessian(q)
    r = pc.rays(q, n_rays=30, rng=5, curvature="hessian")
    D = pc.ray_directions(5, range(30), q.dim)
    want = np.einsum("ij,jk,ik->i", D, H, D)
    np.testing.assert_allclose(r.kappa, want, rtol=1e-12, atol=1e-14)
    # the finite differences of a quadratic see the same rays (to their rounding)
    fd = pc.rays(q, n_rays=30, rng=5, eps=1e-3, check=False)
    np.testing.assert_allclose(fd.kappa, r.kappa, atol=1e-6)
    assert r.curvature == "hessian" and fd.curvature == "difference"
    assert (r.n_hvps, r.n_loss_evals, r.eps) == (30, 1, 0.0)
    assert fd.n_hvps == 0
    assert np.all(np.isnan(r.losses_plus)) and np.all(np.isnan(r.losses_minus))
    assert r.kinked is None and r.n_kinked is None


def test_no_step_no_kink_and_no_rounding_floor():
    # noise of 1e-9 per loss and a kink at 2e-5: at ε = 1e-4 the differences carry both,
    # dᵀHd carries neither
    f = _KinkedNoisy(sigma=1e-9, s=1.0, b=2e-5)
    with pytest.warns(RuntimeWarning, match="curvature='hessian'"):
        fd = pc.rays(f, n_rays=200, rng=0, eps=1e-4)
    assert fd.n_kinked > 0
    assert not fd.mean_ci[0] <= 1.0 <= fd.mean_ci[1]
    r = pc.rays(f, n_rays=200, rng=0, curvature="hessian")
    np.testing.assert_allclose(r.kappa, 1.0, rtol=1e-14)
    assert r.mean_total_ci[0] <= 1.0 <= r.mean_total_ci[1]
    assert r.negative_fraction == 0.0


def test_interval_covers_the_mean_curvature_at_its_level():
    # Student-t over 40 rays, 300 runs: the count inside is Binomial(300, ~0.95);
    # 3 standard deviations (3.8) below and above 285
    q = _quadratic()
    truth = float(np.trace(dense_hessian(q))) / q.dim
    inside = 0
    for seed in range(300):
        r = pc.rays(q, n_rays=40, rng=seed, curvature="hessian")
        inside += bool(r.mean_total_ci[0] <= truth <= r.mean_total_ci[1])
    sd = math.sqrt(300 * 0.95 * 0.05)
    assert 285 - 3 * sd <= inside <= min(300, 285 + 3 * sd)


def test_chunks_executors_store_resume_and_load(tmp_path):
    q = _quadratic()
    ref = pc.rays(q, n_rays=25, rng=3, curvature="hessian")
    with ThreadPoolExecutor(2) as ex:
        par = pc.rays(q, n_rays=25, rng=3, curvature="hessian", chunk_size=4, executor=ex)
    np.testing.assert_array_equal(par.kappa, ref.kappa)
    path = tmp_path / "rays.zarr"
    first = pc.rays(q, n_rays=25, rng=3, curvature="hessian", chunk_size=4, store=path)
    again = pc.rays(q, n_rays=25, rng=3, curvature="hessian", chunk_size=4, store=path)
    assert (first.n_hvps, again.n_hvps) == (25, 0)
    np.testing.assert_array_equal(again.kappa, ref.kappa)
    loaded = pc.load_run(path)
    assert loaded.curvature == "hessian"
    np.testing.assert_array_equal(loaded.kappa, ref.kappa)
    np.testing.assert_array_equal(loaded.mean_total_ci, ref.mean_total_ci)
    back = pc.load(pc.save(ref, tmp_path / "r.npz"))
    assert back.curvature == "hessian" and back.n_hvps == 25
    np.testing.assert_array_equal(back.kappa, ref.kappa)
    # a finite-difference run does not resume from this store, and says why
    why = "its `curvature` is 'hessian', this run's is 'difference'"
    with pytest.raises(ValueError, match=why):
        pc.rays(q, n_rays=25, rng=3, chunk_size=4, store=path)


def test_arguments_are_checked():
    q = _quadratic()
    with pytest.raises(ValueError, match="`curvature` must be 'difference' or 'hessian'"):
        pc.rays(q, curvature="hvp")
    with pytest.raises(ValueError, match="`eps` is the step of curvature='difference'"):
        pc.rays(q, curvature="hessian", eps=1e-3)
    with pytest.raises(TypeError, match="`check` must be True or False; got str"):
        pc.rays(q, curvature="hessian", check="yes")


def test_one_ray_has_no_interval():
    r = pc.rays(_quadratic(), n_rays=1, rng=0, curvature="hessian")
    assert np.isfinite(r.kappa[0]) and r.n_finite == 1
    assert np.all(np.isnan(r.mean_total_ci)) and np.all(np.isnan(r.negative_fraction_total_ci))
