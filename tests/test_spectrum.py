"""Eigenvalue solvers against numpy.linalg.eigh on spectra drawn by hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import aslinearoperator

import probecore as pc
from probecore.analytic import Quadratic, nn_like_spectrum
from probecore.testing.strategies import spectra, symmetric_matrices

EPS64 = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps


def _wanted(lam: np.ndarray, k: int, which: str) -> np.ndarray:
    if which == "LA":
        return lam[::-1][:k]
    if which == "SA":
        return lam[:k]
    return lam[np.argsort(-np.abs(lam), kind="stable")][:k]


def _true_residuals(A: np.ndarray, r: pc.EigResult) -> np.ndarray:
    Y = r.eigenvectors.astype(np.float64)
    return np.linalg.norm(A @ Y - Y * r.eigenvalues, axis=0)


@given(
    data=symmetric_matrices(min_n=2, max_n=400, max_cond=1e8),
    k=st.integers(1, 6),
    which=st.sampled_from(["LA", "SA"]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60)
def test_lanczos_matches_eigh_float64(data, k, which, seed):
    A, _ = data
    lam = np.linalg.eigvalsh(A)  # the reference: numpy's dense solver on the same matrix
    n = lam.size
    k = min(k, n)
    r = pc.lanczos(A, k=k, which=which, tol=1e-9, rng=seed)
    norm = np.max(np.abs(lam))
    assert r.converged
    # Kahan: k Ritz values with residual matrix R lie within ‖R‖₂ <= sqrt(k)·max‖r_i‖ of k
    # eigenvalues; with no eigenvalue missed these are the wanted ones. tol=1e-9 and k<=6
    # keep that below the 1e-8·‖H‖₂ acceptance bound.
    np.testing.assert_allclose(r.eigenvalues, _wanted(lam, k, which), rtol=0, atol=1e-8 * norm)
    # Ritz values lie inside the spectrum (Cauchy interlacing), up to the rounding of a
    # Rayleigh quotient yᵀAy (n-term sums).
    slack = 4 * n * EPS64 * norm
    assert np.all(r.eigenvalues <= lam[-1] + slack)
    assert np.all(r.eigenvalues >= lam[0] - slack)
    # Reported residuals are the true residuals (recomputed here in float64 from A).
    np.testing.assert_allclose(
        r.residual_norms, _true_residuals(A, r), rtol=0, atol=10 * np.sqrt(n) * EPS64 * norm
    )
    # Eigenvectors are orthonormal.
    Y = r.eigenvectors
    # Twice-reorthogonalized bases keep orthogonality to a small multiple of n·eps.
    np.testing.assert_allclose(Y.T @ Y, np.eye(k), atol=10 * n * EPS64)


@given(
    data=symmetric_matrices(min_n=2, max_n=200, max_cond=1e4),
    k=st.integers(1, 4),
    which=st.sampled_from(["LA", "SA"]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=30)
def test_lanczos_matches_eigh_float32(data, k, which, seed):
    A, lam = data
    n = lam.size
    k = min(k, n)
    A32 = A.astype(np.float32)
    r = pc.lanczos(A32, k=k, which=which, rng=seed)  # default float32 tol 1e-4
    assert r.eigenvalues.dtype == np.float64 and r.eigenvectors.dtype == np.float32
    norm = np.max(np.abs(lam))
    # Storing A in float32 moves eigenvalues by up to ‖A − A32‖₂ <= sqrt(n)·eps32·‖A‖;
    # the solver adds at most sqrt(k)·tol·‖A‖ (Kahan) with tol = 1e-4.
    atol = (np.sqrt(n) * EPS32 + np.sqrt(k) * 1e-4) * norm
    np.testing.assert_allclose(r.eigenvalues, _wanted(lam, k, which), rtol=0, atol=atol)
    assert r.converged


def test_float32_lanczos_goes_on_until_the_true_residuals_pass(monkeypatch):
    """In a float32 basis the Ritz estimates can pass tol·‖A‖ while the true residuals
    are above it (here by 28%: the 3 smallest of a cond-1e4 matrix). The run used to stop
    there and report not converged (a ConvergenceError by default); with the images kept
    it checks the truth, tightens the estimates' tolerance and goes on."""
    import probecore._linalg.eigen as eigen

    rng = np.random.default_rng(320)
    n = int(rng.integers(20, 80))
    lam = np.sort(np.exp(rng.uniform(0, np.log(1e4), n)))
    lam[0], lam[-1] = 1.0, 1e4
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    Q *= np.sign(np.diag(R))
    A = (((Q * lam) @ Q.T + ((Q * lam) @ Q.T).T) / 2).astype(np.float32)
    with monkeypatch.context() as m:
        m.setattr(eigen, "_TIGHTEN", 0)  # the estimates alone decide, as before
        before = pc.lanczos(A, k=3, which="SA", rng=0, raise_on_failure=False)
    assert not before.converged and np.max(before.residual_norms) > 1.1e-4 * 1e4
    r = pc.lanczos(A, k=3, which="SA", rng=0)
    assert r.converged and np.max(r.residual_norms) <= 1e-4 * 1e4
    assert r.n_matvecs > before.n_matvecs
    atol = (np.sqrt(n) * EPS32 + np.sqrt(3) * 1e-4) * 1e4
    np.testing.assert_allclose(r.eigenvalues, lam[:3], rtol=0, atol=atol)


def test_lanczos_stops_when_the_true_residuals_have_a_floor():
    """Products accurate only to ~1e-7·‖H‖ (float32 products as a float64 operator) with
    tol=1e-9: no step can certify. The run stops once tightening does not lower the true
    residual and reports not converged, in about the products it took before the check
    existed (32), where an unbounded tightening ran for thousands."""
    from scipy.sparse.linalg import LinearOperator

    n = 1000
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.concatenate([rng.uniform(-1.0, 5.0, n - 3), [8.0, 9.0, 10.0]])
    A32 = ((Q * lam) @ Q.T).astype(np.float32)

    def mv(v):
        return (A32 @ np.asarray(v, np.float32)).astype(np.float64)

    op = LinearOperator((n, n), matvec=mv, matmat=mv, dtype=np.float64)
    r = pc.lanczos(op, k=1, rng=0, tol=1e-9, raise_on_failure=False)
    assert not r.converged
    assert r.n_matvecs <= 3 * 32
    assert abs(r.eigenvalues[0] - 10.0) <= 1e-5 * 10.0


@given(lam=spectra(min_n=3, max_n=300, max_cond=1e6), seed=st.integers(0, 2**16))
@settings(max_examples=40)
def test_lanczos_largest_magnitude(lam, seed):
    A = Quadratic.from_spectrum(lam, rng=seed)
    r = pc.lanczos(A, k=2, which="LM", tol=1e-9, rng=seed)
    expect = np.sort(np.abs(_wanted(lam, 2, "LM")))[::-1]
    np.testing.assert_allclose(np.abs(r.eigenvalues), expect, atol=1e-8 * np.max(np.abs(lam)))


def test_lanczos_finds_every_copy_of_a_repeated_top_eigenvalue():
    lam = np.concatenate([np.full(4, 7.0), np.linspace(-1, 3, 96)])
    A = Quadratic.from_spectrum(lam, rng=0)
    r = pc.lanczos(A, k=5, rng=1)
    np.testing.assert_allclose(r.eigenvalues, [7, 7, 7, 7, 3], atol=1e-8 * 7)
    np.testing.assert_allclose(r.eigenvectors.T @ r.eigenvectors, np.eye(5), atol=1e-12)


def test_verification_pass_catches_missed_copies():
    # Exact arithmetic keeps a single Krylov sequence inside span{P_i v0}: one copy of
    # each eigenvalue. Build that situation exactly: A is diagonal and v0 has equal
    # entries on the repeated block, so the other copies are invisible to v0's sequence.
    lam = np.concatenate([np.full(3, 5.0), np.linspace(0.0, 1.0, 27)])
    A = np.diag(lam)
    v0 = np.ones(30)
    blind = pc.lanczos(A, k=3, v0=v0, verify=False, rng=0, raise_on_failure=False)
    assert np.sum(np.isclose(blind.eigenvalues, 5.0, atol=1e-8)) == 1
    r = pc.lanczos(A, k=3, v0=v0, rng=0)
    np.testing.assert_allclose(r.eigenvalues, [5.0, 5.0, 5.0], atol=1e-8 * 5)


def test_lanczos_full_spectrum_and_scaling():
    lam = np.array([-3.0, -1.0, 0.0, 0.0, 2.0, 5.0])
    A = Quadratic.from_spectrum(lam, rng=3).hessian()
    r = pc.lanczos(A, k=6, which="SA", rng=0)
    np.testing.assert_allclose(r.eigenvalues, lam, atol=1e-12 * 5)
    # eigs(cA) = c·eigs(A)
    r2 = pc.lanczos(-2.5 * A, k=2, which="LA", rng=0)
    np.testing.assert_allclose(r2.eigenvalues, [7.5, 2.5], atol=1e-10)


@given(
    data=symmetric_matrices(min_n=3, max_n=120, max_cond=1e6, allow_repeats=False),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=20)
def test_eigsh_method_matches_eigh(data, seed):
    A, lam = data
    k = min(3, lam.size - 1)
    gaps = np.diff(lam[::-1][: k + 1])
    if np.min(np.abs(gaps)) < 1e-6 * np.max(np.abs(lam)):
        return  # ARPACK, like any single-vector Krylov method, can miss near-repeated values
    r = pc.lanczos(A, k=k, method="eigsh", tol=1e-12, rng=seed)
    np.testing.assert_allclose(r.eigenvalues, lam[::-1][:k], atol=1e-8 * np.max(np.abs(lam)))
    np.testing.assert_allclose(
        r.residual_norms,
        _true_residuals(A, r),
        atol=10 * np.sqrt(lam.size) * EPS64 * np.max(np.abs(lam)),
    )


@given(lam=spectra(min_n=2, max_n=300, max_cond=1e8), seed=st.integers(0, 2**16))
@settings(max_examples=60)
def test_power_iteration_meets_its_tolerance(lam, seed):
    # Make the dominant eigenvalue unique and separated: |λ2/λ1| <= 0.9.
    top = np.max(np.abs(lam))
    others = np.clip(lam, -0.9 * top, 0.9 * top)
    lam = np.concatenate([others[:-1], [np.sign(lam[np.argmax(np.abs(lam))]) * top]])
    A = Quadratic.from_spectrum(lam, rng=seed).hessian()
    tol = 1e-8
    r = pc.power_iteration(A, tol=tol, residual_tol=1e-4, maxiter=10_000, rng=seed)
    assert r.converged
    exact = lam[np.argmax(np.abs(lam))]
    ratio = np.max(np.abs(others[:-1])) / top if lam.size > 1 else 0.0
    # The Rayleigh-quotient error decays by ρ² per step, so the last change c bounds the
    # remaining error by c·ρ²/(1 − ρ²); the rest is rounding.
    bound = tol * abs(r.eigenvalue) * ratio**2 / (1 - ratio**2) + 100 * EPS64 * top
    assert abs(r.eigenvalue - exact) <= bound
    # Reported residual is the true residual, and bounds the distance to the spectrum.
    v = r.eigenvector
    true_res = np.linalg.norm(A @ v - r.eigenvalue * v)
    assert abs(true_res - r.residual_norm) <= 10 * np.sqrt(lam.size) * EPS64 * top
    assert np.min(np.abs(lam - r.eigenvalue)) <= r.residual_norm + 10 * EPS64 * top
    assert r.n_matvecs == r.n_iter


def test_power_iteration_reports_non_convergence():
    A = np.diag([1.0, -0.99, 0.5])  # |λ2/λ1| = 0.99: error shrinks 2% per step
    with pytest.raises(pc.ConvergenceError, match="did not converge") as info:
        pc.power_iteration(A, maxiter=20, rng=0)
    assert info.value.result.converged is False
    assert info.value.result.n_matvecs == 20
    r = pc.power_iteration(A, maxiter=20, rng=0, raise_on_failure=False)
    assert r.converged is False and r.history.size == 20


@pytest.mark.parametrize("tol, residual_tol", [(1e-10, 1e-6), (None, 1e-6), (1e-10, None)])
def test_power_iteration_started_in_the_null_space_starts_again(tol, residual_tol):
    """H v0 = 0 says nothing of λmax: a Gaussian restart finds it (it returned λ = 0)."""
    A = np.diag([5.0, 1.0, 0.0, 0.0])
    v0 = np.array([0.0, 0.0, 1.0, 1.0])  # in the null space
    r = pc.power_iteration(A, v0=v0, rng=0, tol=tol, residual_tol=residual_tol)
    assert r.converged and r.eigenvalue == pytest.approx(5.0, rel=1e-6)
    assert abs(r.eigenvector[0]) == pytest.approx(1.0, rel=1e-3)


def test_power_iteration_of_the_zero_operator_is_zero_after_random_starts():
    r = pc.power_iteration(np.zeros((4, 4)), rng=0)
    assert r.converged and r.eigenvalue == 0.0
    assert r.n_matvecs == 1 + 2  # the start and the two Gaussian restarts, each H v = 0


def test_lanczos_reports_non_convergence_with_partial_result():
    A = Quadratic.from_spectrum(nn_like_spectrum(500, rng=0), rng=0)
    with pytest.raises(pc.ConvergenceError) as info:
        pc.lanczos(A, k=10, ncv=12, maxiter=1, tol=1e-12, rng=0)
    partial = info.value.result
    assert partial.converged is False and partial.eigenvalues.shape == (10,)
    r = pc.lanczos(A, k=10, ncv=12, maxiter=1, tol=1e-12, rng=0, raise_on_failure=False)
    assert not r.converged


def test_hessian_operator_counts_hvps_and_batches():
    q = Quadratic.from_spectrum(nn_like_spectrum(80, rng=0), rng=0)
    H = pc.HessianOperator(q)
    assert H.dtype == np.float64 and H.n_hvps == 0  # dtype given: no probing HVP
    H.matmat(np.ones((80, 3)))
    H @ np.ones(80)
    assert H.n_hvps == 4
    r = pc.lanczos(H, k=3, rng=0)
    assert H.n_hvps == 4 + r.n_matvecs
    np.testing.assert_allclose(r.eigenvalues, q.eigenvalues[::-1][:3], atol=1e-8 * 100)


def test_lanczos_on_objective_pair_and_linear_operator():
    q = Quadratic.from_spectrum(np.linspace(-2, 9, 40), rng=0)
    a = pc.lanczos((q, q.x0), k=2, rng=0).eigenvalues
    b = pc.lanczos(aslinearoperator(q.hessian()), k=2, rng=0).eigenvalues
    c = pc.lanczos(q, k=2, rng=0).eigenvalues
    np.testing.assert_allclose(a, [9, 9 - 11 / 39], atol=1e-10)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(a, b, atol=1e-10)


def test_same_seed_same_result():
    A = Quadratic.from_spectrum(nn_like_spectrum(200, rng=0), rng=0)
    r1, r2 = pc.lanczos(A, k=4, rng=7), pc.lanczos(A, k=4, rng=7)
    np.testing.assert_array_equal(r1.eigenvalues, r2.eigenvalues)
    assert r1.seed == 7 and r1.n_matvecs == r2.n_matvecs


@pytest.mark.parametrize("verify", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_residuals_from_stored_images_equal_those_from_fresh_hvps(monkeypatch, verify, seed):
    # A small basis keeps H·v of its vectors and combines them into H·y; past the memory
    # budget, k fresh HVPs give H·y instead. Both are true residuals; only the cost differs.
    A = Quadratic.from_spectrum(nn_like_spectrum(300, rng=seed), rng=seed).hessian()
    k = 3
    kept = pc.lanczos(A, k=k, ncv=8, tol=1e-10, rng=seed, verify=verify)  # forces restarts
    monkeypatch.setattr("probecore._linalg.eigen._IMAGE_BYTES", 0)
    fresh = pc.lanczos(A, k=k, ncv=8, tol=1e-10, rng=seed, verify=verify)
    np.testing.assert_array_equal(kept.eigenvalues, fresh.eigenvalues)
    assert fresh.n_matvecs == kept.n_matvecs + k
    atol = 10 * np.sqrt(300) * EPS64 * np.max(np.abs(kept.eigenvalues))
    for r in (kept, fresh):
        np.testing.assert_allclose(r.residual_norms, _true_residuals(A, r), rtol=0, atol=atol)


@pytest.mark.parametrize("method", ["lanczos", "eigsh"])
def test_eig_result_records_the_tolerance_applied(method, tmp_path):
    """One meaning of `converged`: true residuals within max(tol, 10·√n·ε)·‖H‖."""
    n = 400
    A = np.diag(np.linspace(1.0, 3.0, n))
    r64 = pc.lanczos(A, k=2, tol=1e-8, method=method, rng=0)
    assert r64.tol_applied == pytest.approx(1e-8)
    r32 = pc.lanczos(
        A.astype(np.float32), k=2, tol=1e-8, method=method, rng=0, raise_on_failure=False
    )
    floor = 10 * np.sqrt(n) * np.finfo(np.float32).eps  # 2.4e-5: above the asked 1e-8
    assert r32.tol == 1e-8 and r32.tol_applied == pytest.approx(floor, rel=1e-6)
    anorm = np.max(np.abs(r32.eigenvalues))
    assert r32.converged == bool(np.all(r32.residual_norms <= r32.tol_applied * anorm))
    pc.save(r32, tmp_path / "eig")
    assert pc.load(tmp_path / "eig.npz").tol_applied == r32.tol_applied
