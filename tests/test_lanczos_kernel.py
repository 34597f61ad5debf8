"""The Lanczos kernel in float32 at scale: breakdown relative to ‖T_j‖, not to √n.

Diagonal ``LinearOperator``s (products cost ``O(n)``) with ``n = 10⁵`` and network-like
spectra. The kernel stops a sequence when ``β_j ≤ δ_j = 2(1 + √(j+1))·ε·‖T̂_j‖₁``
(``probecore/_linalg/lanczos.py``); the former SLQ test ``β_j ≤ 100·√n·ε·‖H‖`` was
``3.8·10⁻³‖H‖`` here in float32, above the couplings inside the bulk, so probes stopped
after 12–16 of 30 steps.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator
from scipy.stats import wasserstein_distance

import probecore as pc
from probecore.analytic import Quadratic, nn_like_spectrum

N = 100_000
EPS32 = float(np.finfo(np.float32).eps)


def _diagonal(lam: np.ndarray, dtype) -> LinearOperator:
    d = np.asarray(lam, dtype=dtype)
    n = d.size
    return LinearOperator(
        (n, n), matvec=lambda v: d * v.ravel(), matmat=lambda X: d[:, None] * X, dtype=d.dtype
    )


def _tau_bound(steps: int, lam: np.ndarray) -> float:
    """The kernel's δ_j at the last of ``steps`` steps, with ‖T̂‖₁ bounded by 3‖H‖.

    δ_j = 2(1 + √(j+1))·ε·‖T̂_j‖₁ grows with j, and ‖T̂‖₁ = max |α_i| + β_{i−1} + β_i is at
    most 3‖H‖ since |α_i|, β_i <= ‖H‖.
    """
    return 2 * (1 + np.sqrt(steps)) * EPS32 * 3 * float(np.max(np.abs(lam)))


def _network_spectrum(seed: int, bulk_scale: float, top: float, m: int) -> np.ndarray:
    lam = nn_like_spectrum(N, top=top, bulk_scale=bulk_scale, rng=seed)
    # Precondition of the step-count property: the Jacobi coefficients of a measure on an
    # interval of length W tend to W/4, so the couplings inside the bulk are about a
    # quarter of its width (measured: at least 0.8·W/4). Require a wide margin over τ.
    bulk = lam[:-10]  # nn_like_spectrum puts 10 outliers on top
    assert np.ptp(bulk) / 8 > 10 * _tau_bound(m, lam)
    return lam


@given(
    seed=st.integers(0, 2**16),
    bulk_scale=st.floats(0.01, 0.05),
    top=st.floats(1e-2, 1e4),
)
@settings(max_examples=3)
def test_slq_float32_takes_every_step_on_a_network_spectrum(seed, bulk_scale, top):
    # n distinct eigenvalues >> m: the Krylov space of a probe does not become invariant
    # within m steps, and every coupling (>= W/5) is far above δ_j, so no probe stops.
    m, p = 30, 4
    lam = _network_spectrum(seed, bulk_scale, top, m)
    d = pc.spectral_density(_diagonal(lam, np.float32), n_probes=p, n_steps=m, rng=seed)
    assert d.metadata["steps_taken"] == [m] * p
    assert d.n_matvecs == m * p


@given(seed=st.integers(0, 2**16), bulk_scale=st.floats(0.01, 0.05))
@settings(max_examples=2)
def test_slq_float32_wasserstein_within_float64(seed, bulk_scale):
    # Same probes (same seed), steps and spectrum in both precisions. Float32 rounding
    # moves the quadrature measure by O(poly(m)·ε₃₂·‖H‖) in W1 (Greenbaum: a finite
    # precision run is an exact one for eigenvalues smeared over intervals of that width;
    # measured here: W1₃₂/W1₆₄ = 1 ± 10⁻⁵). The factor 1.5 lets rounding add half of W1₆₄,
    # the Monte Carlo and quadrature error (W1₆₄/2 >= 7·10⁻⁴ = 60·ε₃₂·‖H‖ on these
    # spectra); only truncated sequences get there (the former breakdown test: 1.5–2.8).
    m, p = 30, 4
    lam = _network_spectrum(seed, bulk_scale, 100.0, m)
    w1 = {}
    for dtype in (np.float32, np.float64):
        d = pc.spectral_density(_diagonal(lam, dtype), n_probes=p, n_steps=m, rng=seed)
        nodes, weights = d.pooled()  # weights / n_probes, summing to 1
        w1[dtype] = wasserstein_distance(nodes, lam, u_weights=weights)
    assert w1[np.float32] <= 1.5 * w1[np.float64], w1


@given(
    n_values=st.integers(1, 5),
    scale=st.floats(1e-3, 1e3),
    shift=st.integers(-8, 8),
    shares=st.lists(st.floats(1.0, 2.0), min_size=5, max_size=5),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=8)
def test_slq_float32_stops_at_the_number_of_distinct_eigenvalues(
    n_values, scale, shift, shares, seed
):
    # d equally spaced values (gap = width/(d−1)), each on at least 1/(2d) of the
    # coordinates: the Krylov space of a probe is exactly d-dimensional, and with gaps and
    # weights of the order of the width the earlier steps' rounding is not amplified, so
    # the computed β_{d−1} is the last step's rounding, below τ_{d−1} (kernel docstring).
    d, m, p = n_values, 12, 4
    values = scale * (shift / 4 + np.arange(d) / max(d - 1, 1))
    share = np.asarray(shares[:d]) / np.sum(shares[:d])
    counts = np.floor(share * N).astype(int)
    counts[-1] = N - counts[:-1].sum()
    lam = np.random.default_rng(seed).permutation(np.repeat(values, counts))
    exact = np.unique(lam.astype(np.float32).astype(np.float64))  # the operator's spectrum
    r = pc.spectral_density(_diagonal(lam, np.float32), n_probes=p, n_steps=m, rng=seed)
    assert r.metadata["steps_taken"] == [d] * p
    # Ritz values of a d-dimensional subspace invariant up to the residual β_{d−1} <= τ and
    # the d local errors (<= τ each, ‖F‖ <= √d·τ): each node within (1 + √d)·τ of a value.
    tau = _tau_bound(d, lam)
    nodes = r.nodes[:, :d]
    np.testing.assert_allclose(
        nodes, np.broadcast_to(exact, nodes.shape), rtol=0, atol=(1 + np.sqrt(d)) * tau
    )
    # Weights: ‖P_i v‖² of each probe (replayed from the recorded seed); the
    # eigenvectors of T move by at most (1 + √d)·τ/gap (Davis–Kahan), the squared first
    # components by twice that, and rounding the probe to float32 adds 2ε per weight.
    Z = np.random.default_rng(r.seed).standard_normal((N, p))
    Z /= np.linalg.norm(Z, axis=0)
    expect = np.stack([[np.sum(Z[lam == v, i] ** 2) for v in values] for i in range(p)])
    gap = scale / max(d - 1, 1)
    np.testing.assert_allclose(
        r.weights[:, :d], expect, rtol=0, atol=2 * (1 + np.sqrt(d)) * tau / gap + 2 * EPS32
    )


@given(seed=st.integers(0, 2**16), k=st.integers(1, 5))
@settings(max_examples=2)
def test_lanczos_float32_finds_the_top_eigenvalues_at_scale(seed, k):
    lam = nn_like_spectrum(N, rng=seed)
    r = pc.lanczos(_diagonal(lam, np.float32), k=k, rng=seed)  # default float32 tol 1e-4
    assert r.converged
    # The operator's eigenvalues are the float32 diagonal. Kahan: k Ritz values with
    # residual matrix R lie within ‖R‖₂ <= √k·max‖r_i‖ of k eigenvalues (the wanted ones,
    # none missed); the reported residuals are computed in float64 from float32 products
    # H·y, whose rounding adds up to ε₃₂·‖H‖.
    exact = np.sort(lam.astype(np.float32).astype(np.float64))[::-1][:k]
    bound = np.sqrt(k) * (np.max(r.residual_norms) + EPS32 * exact[0])
    np.testing.assert_allclose(r.eigenvalues, exact, rtol=0, atol=bound)


@given(
    n=st.integers(20, 300),
    steps=st.integers(1, 15),
    p=st.integers(2, 4),
    full=st.booleans(),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=30)
def test_sequences_in_lockstep_equal_sequences_run_alone(n, steps, p, full, seed):
    # One block product per step for all sequences changes nothing in any of them: a
    # diagonal operator's block product is column-wise the vector product.
    from probecore._linalg.lanczos import Krylov, expand  # the kernel (private module)
    from probecore._linalg.operators import Counted

    gen = np.random.default_rng(seed)
    lam = gen.standard_normal(n).astype(np.float32)
    Q = gen.standard_normal((p, n))
    Q = (Q / np.linalg.norm(Q, axis=1, keepdims=True)).astype(np.float32)
    m = min(steps, n)
    together = Krylov.start(Q, m, np.dtype(np.float32), full=full)
    taken = expand(Counted(_diagonal(lam, np.float32)), together, 0, m)
    for i in range(p):
        alone = Krylov.start(Q[i : i + 1], m, np.dtype(np.float32), full=full)
        assert expand(Counted(_diagonal(lam, np.float32)), alone, 0, m)[0] == taken[i]
        np.testing.assert_array_equal(alone.T[0], together.T[i])
        np.testing.assert_array_equal(alone.beta[0], together.beta[i])


@given(dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
@settings(max_examples=6, deadline=None)
def test_slq_measure_is_exact_on_a_dense_operator_with_few_values(dtype, seed):
    # A dense product rounds by up to about √n·ε‖H‖, more than δ_j leaves for it: the
    # probes need not stop at the 5 distinct values (they may run every step, splitting
    # a value's weight among copies of its node), but the measure stays that of H.
    # Bound: each step's residual is below τ_m + √n·ε‖H‖, so the m-step subspace is
    # invariant up to δ = √m·(τ_m + √n·ε‖H‖) (‖F‖); nodes carrying weight sit within δ of
    # an eigenvalue, and a value's total weight moves by at most 2δ/gap (Davis–Kahan on
    # the spectral projector) plus 2ε for rounding the probe.
    n, m, p = 300, 12, 3
    values = np.array([-2.0, 0.5, 1.0, 3.0, 7.0])
    lam = np.repeat(values, n // values.size)
    q = Quadratic.from_spectrum(lam, rng=seed, dtype=dtype)
    r = pc.spectral_density(q, n_probes=p, n_steps=m, rng=seed)
    eps = float(np.finfo(dtype).eps)
    norm = float(np.max(np.abs(values)))
    tau = 2 * (1 + np.sqrt(m)) * eps * 3 * norm
    delta = np.sqrt(m) * (tau + np.sqrt(n) * eps * norm)
    gap = float(np.min(np.diff(values)))
    Z = np.random.default_rng(r.seed).standard_normal((n, p))
    Z /= np.linalg.norm(Z, axis=0)
    w64, U = np.linalg.eigh(q.hessian())
    nearest = np.argmin(np.abs(r.nodes[..., None] - values), axis=-1)
    for i in range(p):
        coeff = U.T @ Z[:, i]
        expect = np.array([np.sum(coeff[np.abs(w64 - v) < gap / 2] ** 2) for v in values])
        got = np.array([r.weights[i, nearest[i] == k].sum() for k in range(values.size)])
        np.testing.assert_allclose(got, expect, rtol=0, atol=2 * delta / gap + 2 * eps)
        heavy = r.weights[i] > 2 * delta / gap + 2 * eps
        off = np.min(np.abs(r.nodes[i, heavy, None] - values), axis=-1)
        assert np.all(off <= delta), (off.max(), delta)
