"""The error estimates of ``rays(check=True)``: centre rounding, truncation bias, kinks."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import probecore as pc
from probecore import AbstractObjective
from probecore.analytic import default_layout

EPS = 1e-4


class _Function(AbstractObjective):
    """``½‖x − x*‖² + w·Σx⁴ + s·|x₀ − b| + 1``, plus noise ``σ·z(x)`` that imitates rounding.

    ``z(x)`` is a standard normal drawn from a hash of ``x``'s bytes: deterministic (the
    same point always gives the same value, like a rounded loss) and independent between
    points. At ``x0 = 0`` the Hessian (away from the kink) is ``I + 12w·diag(x²) = I``,
    so ``dᵀHd = 1`` for every unit direction.
    """

    def __init__(self, dim=20, *, sigma=0.0, w=0.0, s=0.0, b=0.0, key=0):
        self.dim, self.dtype = dim, np.dtype(np.float64)
        self.layout = default_layout(dim)
        self.x0 = np.zeros(dim)
        self.sigma, self.w, self.s, self.b, self.key = sigma, w, s, b, key

    def _z(self, x):
        h = hashlib.blake2b(
            np.asarray(x, dtype=np.float64).tobytes(),
            digest_size=8,
            key=self.key.to_bytes(8, "little"),
        )
        return np.random.default_rng(int.from_bytes(h.digest(), "little")).standard_normal()

    def loss(self, x):
        x = np.asarray(x, dtype=np.float64)
        smooth = 0.5 * x @ x + self.w * np.sum(x**4) + self.s * abs(x[0] - self.b) + 1.0
        return float(smooth + self.sigma * self._z(x))

    def grad(self, x):
        return x + 4 * self.w * x**3 + self.s * np.sign(x[0] - self.b) * np.eye(self.dim)[0]

    def hvp(self, x, v):
        return v + 12 * self.w * x**2 * v


def _centre_key(sigma, want=2.0):
    """A noise key whose z at the origin is about ``want`` (a centre error of ~2σ)."""
    for key in range(1000):
        f = _Function(sigma=sigma, key=key)
        if abs(f._z(f.x0) - want) < 0.3:
            return key
    raise AssertionError("no key")


def test_centre_rounding_is_measured_corrected_and_inside_the_total_interval():
    # σ = 1e-10 at ε = 1e-4: every κ carries noise √2σ/ε² = 0.014 and the centre shifts them
    # all by −2σz₀/ε² = −0.04 (z₀ ≈ 2), ~10 standard errors of the mean of 200 rays.
    sigma = 1e-10
    f = _Function(sigma=sigma, key=_centre_key(sigma))
    true_shift = -2 * sigma * f._z(f.x0) / EPS**2
    inside, inside_total = 0, 0
    for seed in range(40):
        r = pc.rays(f, n_rays=200, eps=EPS, rng=seed)
        assert r.n_kinked == 0 and r.n_center == 32
        # σ̂ from 32 pairs (31 dof, MAD-trimmed): relative error ~ 1/√62 ≈ 13%; 4 sd ≈ 50%
        assert 0.5 * sigma <= r.loss_noise <= 1.5 * sigma
        # what is left of the shift has standard deviation center_error: 4 sd
        assert abs(r.center_shift - true_shift) <= 4 * r.center_error
        inside += r.mean_ci[0] <= 1.0 <= r.mean_ci[1]
        inside_total += r.mean_total_ci[0] <= 1.0 <= r.mean_total_ci[1]
    assert inside <= 5  # the shared shift puts the truth outside the t-interval
    # the total intervals are 95% (or wider): 40 seeds, P(fewer than 34 inside) < 0.3%
    assert inside_total >= 34


def test_truncation_bias_is_the_richardson_estimate_and_widens_the_interval():
    # L = ½‖x‖² + Σx⁴ + 1 at 0: κ(ε) = 1 + 2ε²Σd⁴ exactly (degree 4), κ(ε/2) = 1 + ε²Σd⁴/2,
    # so 4/3·(κ(ε) − κ(ε/2)) = 2ε²Σd⁴ is the bias exactly, up to rounding (~1e-14 / ε²).
    f = _Function(w=1.0)
    eps = 0.3
    r = pc.rays(f, n_rays=100, eps=eps, rng=0)
    D = pc.ray_directions(0, np.arange(100), f.dim)
    bias = 2 * eps**2 * np.sum(D**4, axis=1)
    np.testing.assert_allclose(r.kappa, 1.0 + bias, rtol=0, atol=1e-12)
    assert r.truncation_bias == pytest.approx(bias.mean(), rel=1e-9)
    assert r.n_kinked == 0
    assert not r.mean_ci[0] <= 1.0 <= r.mean_ci[1]  # the finite step's bias, not sampling
    assert r.mean_total_ci[0] <= 1.0 <= r.mean_total_ci[1]


def test_rays_across_a_kink_are_flagged_and_left_out_of_the_total_interval():
    # |x₀ − b| with b = 0.3ε: ray i crosses the kink within ±ε iff |d_i0|·ε > b, where the
    # kink adds 2s(|d_i0|ε − b)/ε² (up to 1.4 at s = 1e-3, against κ = 1) to the second
    # difference; at ε/2 it crosses iff |d_i0| > 0.6. Rays that do not cross are exact.
    eps, b = 1e-3, 3e-4
    f = _Function(dim=6, s=1e-3, b=b)
    with pytest.warns(
        RuntimeWarning, match=r"rays changed curvature between ε = 0.001 and ε/2"
    ) as w:
        r = pc.rays(f, n_rays=200, eps=eps, rng=0)
    assert w[0].filename == __file__  # through the engine, still the caller's line
    alpha = np.abs(pc.ray_directions(0, np.arange(200), f.dim)[:, 0])
    cross = alpha * eps > b
    assert cross.sum() > 20 and (~cross).sum() > 20
    assert not r.kinked[~cross].any()
    # the kink terms at both steps; a ray is flagged when they differ by more than
    # KINK_RELATIVE (0.1) of its curvature (rounding is ~1e-16/ε² here): the crossings
    # missed are those near the ends (|d_0|ε ≈ b) and near |t| = ε/3 (|d_0| = 0.9), where
    # both steps see about the same kink
    k1 = 2 * 1e-3 * np.maximum(alpha * eps - b, 0) / eps**2
    k2 = 8 * 1e-3 * np.maximum(alpha * eps / 2 - b, 0) / eps**2
    gap = np.abs(k1 - k2)
    big = np.maximum(1 + k1, 1 + k2)
    assert np.array_equal(r.kinked, gap > 0.1 * big)
    assert r.kinked.sum() >= 0.5 * cross.sum()
    assert r.n_kinked == int(r.kinked.sum())
    assert r.mean_total_ci[0] <= 1.0 <= r.mean_total_ci[1]
    assert r.mean_ci[0] > 1.0  # every crossing adds curvature: the plain mean is biased up


def test_counts_check_off_and_saved_results():
    f = _Function(sigma=1e-12)
    r = pc.rays(f, n_rays=40, rng=1, chunk_size=7)
    plain = pc.rays(f, n_rays=40, rng=1, check=False)
    assert r.n_loss_evals == 4 * 40 + 2 * 32 + 1 and plain.n_loss_evals == 2 * 40 + 1
    np.testing.assert_array_equal(plain.kappa, r.kappa)  # the same rays, the same L(x)
    assert plain.kinked is None and plain.mean_total_ci is None and np.isnan(plain.center_error)
    few = pc.rays(f, n_rays=5, rng=1)
    assert few.n_center == 5 and few.n_loss_evals == 4 * 5 + 2 * 5 + 1
    with pytest.raises(TypeError, match="`check` must be True or False; got str"):
        pc.rays(f, n_rays=5, check="yes")


def test_saved_result_and_resumed_store_keep_the_checks(tmp_path):
    f = _Function(sigma=1e-12)
    r = pc.rays(f, n_rays=30, rng=2, chunk_size=8)
    back = pc.load(pc.save(r, tmp_path / "r"))
    np.testing.assert_array_equal(back.kinked, r.kinked)
    np.testing.assert_array_equal(back.kappa_half, r.kappa_half)
    np.testing.assert_array_equal(back.mean_total_ci, r.mean_total_ci)
    assert back.center_error == r.center_error and back.n_kinked == r.n_kinked
    path = tmp_path / "r.zarr"
    stored = pc.rays(f, n_rays=30, rng=2, chunk_size=8, store=path)
    again = pc.rays(f, n_rays=30, rng=2, chunk_size=8, store=path)
    assert again.n_loss_evals == 1  # the half steps and jitter pairs are stored columns
    np.testing.assert_array_equal(again.kappa_half, stored.kappa_half)
    np.testing.assert_array_equal(again.mean_total_ci, r.mean_total_ci)
    np.testing.assert_array_equal(pc.load_run(path).kappa, r.kappa)
    # a run without the check (the layout of the stores before it) resumes as one
    old = tmp_path / "old.zarr"
    pc.rays(f, n_rays=6, rng=2, store=old, check=False)
    assert pc.rays(f, n_rays=6, rng=2, store=old, check=False).n_loss_evals == 1
    with pytest.raises(ValueError, match="check"):
        pc.rays(f, n_rays=6, rng=2, store=old)
