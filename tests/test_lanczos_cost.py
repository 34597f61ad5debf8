"""The cost of ``verify`` and what it still guarantees (issue 15, item 7).

``lanczos(k=1)`` from a random start no longer runs a second Lanczos pass: its own
sequence certifies, with probability ``1 − _MISS_PROBABILITY`` over the start vector, that
no eigenvalue lies beyond the one found by more than ``tol·‖H‖``; the deflated pass, still
run for ``k > 1`` or a given ``v0``, stops as soon as the same certificate holds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import probecore as pc
from probecore._linalg.eigen import _CERT_STEPS, _MISS_PROBABILITY
from probecore._linalg.lanczos import Krylov, expand, min_component, miss_certified
from probecore._linalg.operators import Counted, as_operator
from probecore.analytic import Quadratic, nn_like_spectrum

EPS64 = np.finfo(np.float64).eps


def _close_pair(dim: int, ratio: float, seed: int = 0) -> np.ndarray:
    lam = np.sort(nn_like_spectrum(dim, rng=seed))
    lam[-2] = ratio * lam[-1]
    return lam


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("delta", [1e-4, 0.01, 0.3])
def test_min_component_is_the_quantile_of_a_uniform_unit_vector(dim, delta):
    # Closed forms: on the circle xᵀv = cos φ, φ uniform, so P(|cos φ| < t) = 1 − 2·acos(t)/π
    # and the quantile is sin(πδ/2); on the 2-sphere xᵀv is uniform on [−1, 1]
    # (Archimedes), so the quantile is δ. Beta-quantile inversion is accurate to ~1e-12.
    expect = np.sin(np.pi * delta / 2) if dim == 2 else delta
    assert min_component(dim, delta) == pytest.approx(expect, rel=1e-10)
    assert min_component(1, delta) == 1.0


def _sequence(lam: np.ndarray, v: np.ndarray, steps: int):
    """``steps`` kernel Lanczos steps on ``diag(lam)`` from ``v``: (θ, S, β_j) after each."""
    op = Counted(as_operator(np.diag(lam)), progress=False)
    K = Krylov.start((v / np.linalg.norm(v))[None], steps, np.dtype(np.float64))
    done = int(expand(op, K, 0, steps, check=True)[0])
    out = []
    for j in range(done):
        theta, S = np.linalg.eigh(K.T[0, : j + 1, : j + 1])
        out.append((theta, S, float(K.beta[0, j])))
    return out


@given(
    log_gamma=st.floats(-12, -0.5),
    gap=st.floats(1e-6, 0.5),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=40, deadline=None)
def test_certificate_never_excludes_an_eigenvalue_the_start_vector_sees(log_gamma, gap, seed):
    # A hidden eigenvalue 1 + gap above a bulk in [0, 1], with start component γ = 10^log_gamma.
    # miss_certified is a bound (exact arithmetic plus the rounding term), not a heuristic:
    # whenever it certifies that nothing lies beyond a target below 1 + gap, the start
    # vector's component along that eigenvector must be under gamma_min. Here gamma_min is
    # γ itself, so certifying would contradict the bound.
    n = 300
    rng = np.random.default_rng(seed)
    lam = np.concatenate([np.sort(rng.uniform(0.0, 1.0, n - 1)), [1.0 + gap]])
    v = rng.standard_normal(n)
    v[:-1] *= np.sqrt(1 - 10 ** (2 * log_gamma)) / np.linalg.norm(v[:-1])
    v[-1] = 10**log_gamma
    gamma = 10**log_gamma
    for theta, S, beta in _sequence(lam, v, 40):
        top = float(np.max(theta))
        target = top + 0.5 * (1.0 + gap - top)  # between the top Ritz value and 1 + gap
        if target <= top:
            continue
        rounding = 10 * np.sqrt(theta.size) * EPS64 * (1.0 + gap)
        assert not miss_certified(theta, S, beta, (target,), gamma, rounding)


def test_certificate_holds_once_a_gap_is_resolved():
    # The converse, so that the test above cannot pass by never certifying: with nothing
    # above the top of [0, 1], a sequence from a random start certifies "nothing beyond
    # 1.01" at the default probability within a few steps (Chebyshev growth at relative
    # gap 0.01 takes ~√(1/0.01) = 10 steps per decade).
    n = 300
    rng = np.random.default_rng(0)
    lam = np.linspace(0.0, 1.0, n)
    gmin = min_component(n, _MISS_PROBABILITY)
    ok = [
        miss_certified(theta, S, beta, (1.01,), gmin, 10 * np.sqrt(theta.size) * EPS64)
        for theta, S, beta in _sequence(lam, rng.standard_normal(n), 60)
    ]
    assert any(ok)
    assert ok[-1]


@pytest.mark.parametrize("ratio", [0.5, 0.93, 0.99, 1.0])
def test_lambda_max_costs_at_most_a_few_steps_more_than_without_verify(ratio):
    # k = 1 from a random start: no second pass, only up to _CERT_STEPS extra steps of the
    # same sequence; accuracy stays within tol·‖H‖ (here 1e-8 relative, plus rounding of the
    # Rayleigh quotient, ~n·ε).
    lam = _close_pair(400, ratio)
    A = Quadratic.from_spectrum(lam, rng=1)
    for seed in range(4):
        r = pc.lanczos(A, k=1, rng=seed)
        blind = pc.lanczos(A, k=1, rng=seed, verify=False)
        assert r.converged
        assert r.n_matvecs <= blind.n_matvecs + _CERT_STEPS
        assert abs(r.eigenvalues[0] - lam[-1]) <= (1e-8 + 400 * EPS64) * lam[-1]


def test_lambda_max_default_is_not_dearer_than_arpack_on_a_close_pair():
    # The acceptance figure of issue 15 on a network-like spectrum with λ2/λ1 = 0.93: the
    # default lanczos(k=1) spends no more HVPs than ARPACK at the same tol from the same
    # start vector (method="eigsh" counts ARPACK's products plus one for the residual).
    A = Quadratic.from_spectrum(_close_pair(400, 0.93), rng=1)
    for seed in range(4):
        ours = pc.lanczos(A, k=1, rng=seed)
        arpack = pc.lanczos(A, k=1, rng=seed, method="eigsh")
        assert ours.n_matvecs <= arpack.n_matvecs


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_start_vector_orthogonal_to_the_wanted_eigenvector_is_caught(which):
    # A given v0 with no component along the wanted eigenvector: exact arithmetic keeps
    # the sequence out of it, and the run converges on the next eigenvalue. A given v0 is
    # not random, so no certificate: the deflated pass from a random vector must find it.
    lam = np.concatenate([[-4.0], np.linspace(-1.0, 1.0, 58), [3.0]])
    wanted = {"LA": 3.0, "SA": -4.0, "LM": -4.0}[which]
    next_best = {"LA": 1.0, "SA": -1.0, "LM": 3.0}[which]
    A = np.diag(lam)
    v0 = np.ones(lam.size)
    v0[lam == wanted] = 0.0
    blind = pc.lanczos(A, k=1, which=which, v0=v0, verify=False, rng=0)
    assert blind.eigenvalues[0] == pytest.approx(next_best, abs=1e-8 * 4)
    r = pc.lanczos(A, k=1, which=which, v0=v0, rng=0)
    # tol·‖H‖ = 4e-8 bounds the residual, hence the error (Bauer–Fike)
    assert r.eigenvalues[0] == pytest.approx(wanted, abs=1e-8 * 4)
    assert r.converged


def test_repeated_top_pair_is_found_twice_for_k2():
    # k = 2 with a repeated top eigenvalue: one Krylov sequence sees one copy, so the first
    # run returns (7, 3); the deflated pass must not stop on its certificate before
    # finding the second 7 (a copy above the worst value keeps the certificate false).
    lam = np.concatenate([np.linspace(-1.0, 3.0, 98), [7.0, 7.0]])
    A = Quadratic.from_spectrum(lam, rng=2)
    for seed in range(3):
        r = pc.lanczos(A, k=2, rng=seed)
        np.testing.assert_allclose(r.eigenvalues, [7.0, 7.0], atol=1e-8 * 7)


def test_k1_on_a_repeated_top_pair_needs_no_second_pass():
    # A copy of λ1 does not change the k = 1 answer, so the certificate (nothing *beyond*
    # λ1 + tol·‖H‖) holds and the run costs at most _CERT_STEPS more than verify=False.
    lam = _close_pair(400, 1.0)
    A = Quadratic.from_spectrum(lam, rng=3)
    r = pc.lanczos(A, k=1, rng=0)
    blind = pc.lanczos(A, k=1, rng=0, verify=False)
    assert r.n_matvecs <= blind.n_matvecs + _CERT_STEPS
    assert r.eigenvalues[0] == pytest.approx(lam[-1], rel=1e-8)
