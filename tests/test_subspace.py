"""Effective dimension (Gram route, Frequent Directions sketch) and trajectory PCA."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import probecore as pc
import probecore._geometry.pca as pca
from probecore._geometry.subspace import EffectiveDimension, GradientSketch, effective_dimension
from probecore._geometry.trajectory import TrajectoryPCA, trajectory_directions
from probecore.analytic import Quadratic

EPS = np.finfo(np.float64).eps


def _orthonormal(gen, n, k, *, centered=False):
    """``(n, k)`` orthonormal columns (orthogonal to the ones vector when ``centered``)."""
    X = gen.standard_normal((n, k))
    if centered:
        X -= X.mean(axis=0)
    return np.linalg.qr(X)[0]


def _decaying_history(gen, T, dim, decay, offset=0.0):
    """Rows with a geometrically decaying spectrum along random axes, plus a mean."""
    R = _orthonormal(gen, dim, dim)
    return (gen.standard_normal((T, dim)) * decay ** np.arange(dim)) @ R.T + offset * (
        gen.standard_normal(dim)
    )


# ------------------------------------------------------------ subspace plus noise


@given(
    k=st.integers(1, 12),
    extra_dim=st.integers(0, 150),
    extra_T=st.integers(1, 100),
    log_scale=st.floats(-3.0, 3.0),
    offset=st.floats(0.0, 100.0),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60)
def test_k_dimensional_subspace_plus_small_noise_gives_k(
    k, extra_dim, extra_T, log_scale, offset, seed
):
    gen = np.random.default_rng(seed)
    dim, T = k + extra_dim, k + 1 + extra_T  # centered rank T - 1 >= k
    scale = 10.0**log_scale
    # Signal: centered coefficients with orthonormal columns times an orthonormal basis of
    # a k-dim subspace, so its k non-zero singular values are exactly `scale`.
    S = _orthonormal(gen, T, k, centered=True) @ _orthonormal(gen, dim, k).T
    # Noise with ‖E_c‖_F about 1/(100k) (relative to `scale`).
    E = gen.standard_normal((T, dim)) / (100 * k * np.sqrt(T * dim))
    A = scale * (S + E + offset * gen.standard_normal(dim))
    # The derivation. Singular values move by at most e = ‖E_c‖₂ <= ‖E_c‖_F (Weyl), so
    # the top-k share is >= k(1 − e)²/(√k + e)² and the top-(k−1) share is
    # <= (k − 1)(1 + e)²/(√k − e)². A share of 1 − 1/(2k), halfway between the signal's
    # (k − 1)/k and 1, lies strictly between them when e is well below 1/(8k): the
    # noise's variance is far below the share's margin of 1/(2k). (k = 5 gives 0.9.)
    e = np.linalg.norm(E - E.mean(axis=0))
    share = 1 - 1 / (2 * k)
    assert k * (1 - e) ** 2 / (np.sqrt(k) + e) ** 2 >= share
    assert (k - 1) * (1 + e) ** 2 / (np.sqrt(k) - e) ** 2 < share
    r = effective_dimension(A, share=share)
    assert r.d_eff == k == r.d_eff_lower
    assert r.method == "gram" and r.error_bound == 0.0 and r.centered
    assert r.n_samples == T and r.dim == dim
    assert r.explained_variance.shape == (min(T, dim),)
    assert np.all(np.diff(r.explained_variance) <= 0)
    np.testing.assert_allclose(r.cumulative[-1], 1.0, atol=1e-12)


def test_default_share_on_five_equal_directions():
    gen = np.random.default_rng(0)
    S = _orthonormal(gen, 40, 5, centered=True) @ _orthonormal(gen, 300, 5).T
    E = 1e-6 * gen.standard_normal((40, 300))
    r = effective_dimension(S + E + 3.0)  # share 0.9 = 1 − 1/(2·5)
    assert (r.share, r.d_eff) == (0.9, 5)
    # Each of the five explains a fifth up to the noise (Weyl, as above): four reach
    # about 0.8 < 0.9, five about 1.
    e = np.linalg.norm(E - E.mean(axis=0))
    ratio = r.explained_variance_ratio[:5]
    assert np.all(ratio >= (1 - e) ** 2 / (np.sqrt(5) + e) ** 2)
    assert np.all(ratio <= (1 + e) ** 2 / (np.sqrt(5) - e) ** 2)


def test_exact_tie_with_share_is_reached_despite_rounding():
    # Ten equal components: nine explain exactly 0.9 in exact arithmetic.
    gen = np.random.default_rng(3)
    A = _orthonormal(gen, 30, 10, centered=True) @ _orthonormal(gen, 50, 10).T
    assert effective_dimension(A, share=0.9).d_eff == 9
    assert effective_dimension(A, share=1.0).d_eff == 10


# ------------------------------------------------------------- Gram route = SVD


@given(
    T=st.integers(2, 80),
    dim=st.integers(1, 120),
    center=st.booleans(),
    offset=st.floats(0.0, 10.0),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60)
def test_gram_route_equals_direct_svd(T, dim, center, offset, seed):
    gen = np.random.default_rng(seed)
    A = _decaying_history(gen, T, dim, 0.9, offset)
    C = A - A.mean(axis=0) if center else A
    s = np.linalg.svd(C, compute_uv=False)
    r = effective_dimension(A, center=center)
    norm = T - 1 if center else T
    n = min(T, dim)
    # Both routes are backward stable: forming the Gram matrix perturbs it by at most
    # about max(T, dim)·ε·‖C‖_F² <= max(T, dim)·min(T, dim)·ε·σ₁² (< 3e-12·σ₁² here) and
    # the symmetric eigensolver adds O(n·ε·σ₁²), so 1e-10·σ₁² leaves a margin of 30.
    np.testing.assert_allclose(
        r.explained_variance * norm, s[:n] ** 2, rtol=0, atol=1e-10 * s[0] ** 2
    )
    np.testing.assert_allclose(r.total_variance * norm, np.sum(s**2), rtol=1e-12)
    np.testing.assert_allclose(r.explained_variance_ratio, s[:n] ** 2 / np.sum(s**2), atol=1e-10)
    np.testing.assert_allclose(r.cumulative, np.cumsum(r.explained_variance_ratio), atol=1e-12)


@pytest.mark.parametrize("shape", [(12, 70), (70, 12)])
def test_blocked_accumulation_matches_one_block(shape, monkeypatch):
    gen = np.random.default_rng(5)
    A = _decaying_history(gen, *shape, 0.8, offset=4.0).astype(np.float32)
    whole = effective_dimension(A)
    monkeypatch.setattr(pca, "BLOCK_ENTRIES", 50)  # blocks of 4 columns / 4 rows
    blocked = effective_dimension(A)
    lam = whole.explained_variance
    np.testing.assert_allclose(blocked.explained_variance, lam, rtol=0, atol=1e-12 * lam[0])
    assert blocked.d_eff == whole.d_eff


def test_gram_route_never_forms_a_dim_by_dim_matrix(monkeypatch):
    seen = []
    eigvalsh = np.linalg.eigvalsh

    def spy(a, *args, **kwargs):
        seen.append(np.shape(a))
        return eigvalsh(a, *args, **kwargs)

    monkeypatch.setattr(np.linalg, "eigvalsh", spy)
    A = np.random.default_rng(0).standard_normal((20, 5000))
    effective_dimension(A)
    assert seen == [(20, 20)]


def _centering_tol(A, exact):
    """Error allowed in the covariance eigenvalues of a history with a large mean.

    Storing the rows rounds each entry by up to ε·max|A| (the mean dominates): a
    perturbation of C with ‖δC‖_F <= ε·max|A|·√(T·dim), which moves each covariance
    eigenvalue by at most (2‖C‖₂‖δC‖ + ‖δC‖²)/(T − 1); the Gram route adds the 1e-10·λ₁
    of the SVD test.
    """
    T, dim = A.shape
    dC = EPS * np.abs(A).max() * np.sqrt(T * dim)
    c2 = np.sqrt(exact[0] * (T - 1))
    return (2 * c2 * dC + dC**2) / (T - 1) + 1e-10 * exact[0]


def test_centering_matches_dense_covariance_with_a_large_mean():
    gen = np.random.default_rng(7)
    T, dim, offset = 60, 25, 1e3
    A = _decaying_history(gen, T, dim, 0.85, offset=offset)
    exact = np.linalg.eigvalsh(np.cov(A, rowvar=False))[::-1]
    r = effective_dimension(A)
    tol = _centering_tol(A, exact)
    np.testing.assert_allclose(r.explained_variance, exact, rtol=0, atol=tol)
    np.testing.assert_allclose(
        effective_dimension(A, center=False).total_variance,
        np.mean(np.sum(A**2, axis=1)),
        rtol=1e-12,
    )


# ------------------------------------------------------------- Frequent Directions


def _fd_slack(sk, S):
    # The bound is exact-arithmetic. Each SVD (one per shrink, one for the final
    # truncation) is backward stable: it perturbs BᵀB by about max(2ℓ, dim)·ε·‖B‖₂²
    # <= max(2ℓ, dim)·ε·tr(S); a factor of 10 covers the constants.
    return 10 * (sk.n_shrinks + 1) * max(2 * sk.ell, sk.dim) * EPS * np.trace(S)


@given(
    ell=st.integers(2, 10),
    extra_dim=st.integers(1, 40),
    decay=st.floats(0.5, 1.0),
    offset=st.floats(0.0, 50.0),
    center=st.booleans(),
    one_by_one=st.booleans(),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60)
def test_sketch_within_its_bound_on_twice_its_memory(
    ell, extra_dim, decay, offset, center, one_by_one, seed
):
    # The sketch holds 2·ell rows; the history has 4·ell, twice what it keeps in memory,
    # and dim > 2·ell so that every shrink discards something.
    dim, T = 2 * ell + extra_dim, 4 * ell
    gen = np.random.default_rng(seed)
    A = _decaying_history(gen, T, dim, decay, offset)
    sk = GradientSketch(dim, ell=ell, center=center)
    if one_by_one:
        for a in A:
            sk.update(a)
    else:
        sk.extend(A[: T // 3])
        sk.extend(A[T // 3 :])
    assert sk.n_samples == T and sk.n_shrinks >= 1
    C = A - A.mean(axis=0) if center else A
    S = C.T @ C  # dense, in the test only
    B = sk.sketch
    assert B.shape == (ell, dim)
    bound = sk.error_bound
    slack = _fd_slack(sk, S)
    diff = np.linalg.eigvalsh(S - B.T @ B)
    assert diff[0] >= -slack  # BᵀB never exceeds the exact scatter
    assert diff[-1] <= bound + slack  # ‖AᵀA − BᵀB‖₂ <= error_bound
    assert bound <= np.trace(S) / ell + slack  # the a-priori bound ‖R‖_F²/ell
    # Each explained variance lies within the bound, and the exact d_eff in the bracket.
    norm = T - 1 if center else T
    exact = effective_dimension(A, center=center, share=0.8)
    r = effective_dimension(sk, center=center, share=0.8)
    assert r.method == "frequent-directions" and r.error_bound == pytest.approx(bound / norm)
    lam = np.zeros(max(exact.explained_variance.size, r.explained_variance.size))
    lam[: exact.explained_variance.size] = exact.explained_variance
    gap = lam[: r.explained_variance.size] - r.explained_variance
    assert np.all(gap >= -slack / norm) and np.all(gap <= r.error_bound + slack / norm)
    assert np.all(lam[r.explained_variance.size :] <= r.error_bound + slack / norm)
    np.testing.assert_allclose(r.total_variance, exact.total_variance, rtol=1e-10)
    assert r.d_eff_lower <= exact.d_eff
    assert r.d_eff is None or exact.d_eff <= r.d_eff


@pytest.mark.parametrize("one_by_one", [True, False])
def test_sketch_without_shrinking_is_the_exact_centered_covariance(one_by_one):
    # ell >= T: the rows never fill the 2·ell buffer, so B spans the centered history
    # exactly and only Welford's centering is tested, against the dense covariance.
    gen = np.random.default_rng(11)
    T, dim = 30, 20
    A = _decaying_history(gen, T, dim, 0.8, offset=1e3)
    sk = GradientSketch(dim, ell=T)
    if one_by_one:
        for a in A:
            sk.update(a)
    else:
        sk.extend(A)
    assert sk.n_shrinks == 0 and sk.error_bound == 0.0
    np.testing.assert_allclose(sk.mean, A.mean(axis=0), rtol=1e-14)
    exact = np.linalg.eigvalsh(np.cov(A, rowvar=False))[::-1]
    r = effective_dimension(sk)
    tol = _centering_tol(A, exact)  # the data's own rounding at the mean's scale
    np.testing.assert_allclose(r.explained_variance, exact, rtol=0, atol=tol)
    assert r.d_eff == r.d_eff_lower == effective_dimension(A).d_eff


def test_sketch_pickles_and_keeps_streaming():
    gen = np.random.default_rng(2)
    A = _decaying_history(gen, 40, 30, 0.7)
    a, b = GradientSketch(30, ell=4), GradientSketch(30, ell=4)
    a.extend(A[:20])
    b.extend(A[:20])
    c = pickle.loads(pickle.dumps(a))
    a.extend(A[20:])
    c.extend(A[20:])
    np.testing.assert_array_equal(a.sketch, c.sketch)
    assert a.error_bound == c.error_bound and a.n_samples == c.n_samples == 40
    assert "n_samples=40" in repr(c)


def test_float32_sketch_and_uncentered_sketch():
    gen = np.random.default_rng(4)
    A = _decaying_history(gen, 64, 40, 0.6, offset=2.0)
    for center in (True, False):
        sk32 = GradientSketch(40, ell=12, center=center, dtype=np.float32)
        sk32.extend(A.astype(np.float32))
        assert sk32.sketch.dtype == np.float32
        exact = effective_dimension(A, center=center, share=0.95)
        r = effective_dimension(sk32, center=center, share=0.95)
        assert r.d_eff_lower <= exact.d_eff <= r.d_eff
        assert r.metadata["ell"] == 12


def test_sketch_that_cannot_reach_the_share_says_so():
    gen = np.random.default_rng(8)
    A = gen.standard_normal((80, 60))  # flat spectrum: 4 directions explain ~15%
    sk = GradientSketch(60, ell=4)
    sk.extend(A)
    r = effective_dimension(sk)
    assert r.d_eff is None
    assert 4 < r.d_eff_lower <= effective_dimension(A).d_eff


def test_results_save_and_load(tmp_path):
    gen = np.random.default_rng(1)
    A = _decaying_history(gen, 20, 30, 0.7)
    sk = GradientSketch(30, ell=3)
    sk.extend(A)
    for r in (effective_dimension(A), effective_dimension(sk), trajectory_directions(A)):
        back = pc.load(pc.save(r, tmp_path / type(r).__name__))
        assert type(back) is type(r)
        for name in r._array_fields:
            np.testing.assert_array_equal(getattr(back, name), getattr(r, name))
    assert isinstance(back, TrajectoryPCA)
    assert isinstance(effective_dimension(sk), EffectiveDimension)


# ------------------------------------------------------------------ trajectory PCA


@pytest.mark.parametrize(("T", "dim"), [(30, 200), (60, 8)])  # Gram and feature sides
@pytest.mark.parametrize("center", [True, False])
def test_trajectory_in_a_known_plane_recovers_it(T, dim, center):
    gen = np.random.default_rng(T + dim)
    plane = _orthonormal(gen, dim, 2)
    theta_star = 10.0 * gen.standard_normal(dim)
    steps = gen.standard_normal((T, 2)).cumsum(axis=0)
    W = theta_star + steps @ plane.T
    r = trajectory_directions(W, center=center)
    V = r.vectors
    np.testing.assert_allclose(V @ V.T, np.eye(2), atol=10 * dim * EPS)
    # Rounding of the stored points (ε·max|W| per entry) is the only error: a
    # perturbation of the centered points of Frobenius norm dC turns the plane by at most
    # dC/σ₂ (Wedin), σ₂ the second singular value of the centered path.
    C = W - (W.mean(axis=0) if center else W[-1])
    s = np.linalg.svd(C, compute_uv=False)
    dC = 4 * EPS * np.abs(W).max() * np.sqrt(T * dim)
    angles = scipy.linalg.subspace_angles(V.T, plane)
    assert np.max(angles) <= 10 * dC / s[1]
    # Coordinates put every point back; the final point sits at the origin.
    np.testing.assert_allclose(r.origin + r.coords @ V, W, rtol=0, atol=10 * dC)
    np.testing.assert_allclose(r.coords[-1], 0.0, atol=10 * dC)
    np.testing.assert_allclose(r.explained_variance_ratio.sum(), 1.0, atol=1e-10)
    d = r.directions
    assert d.kind == "pca" and d.orthogonal and len(d) == 2


def test_trajectory_matches_the_reference_code_pca():
    sklearn = pytest.importorskip("sklearn.decomposition")
    gen = np.random.default_rng(6)
    W = gen.standard_normal((25, 400)).cumsum(axis=0)
    r = trajectory_directions(W, k=3)
    # Li et al.'s plot_trajectory: sklearn PCA fitted to the rows θ_i − θ_final.
    ref = sklearn.PCA(n_components=3).fit(W - W[-1])
    cos = np.abs(np.sum(r.vectors * ref.components_, axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-10)
    np.testing.assert_allclose(r.explained_variance, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(
        r.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10
    )
    # Sign convention: each direction's largest entry is positive.
    assert np.all(r.vectors[np.arange(3), np.argmax(np.abs(r.vectors), axis=1)] > 0)


def test_trajectory_origins():
    gen = np.random.default_rng(9)
    W = gen.standard_normal((10, 15)).cumsum(axis=0)
    point = gen.standard_normal(15)
    for origin, expected in (("last", W[-1]), ("first", W[0]), ("mean", W.mean(axis=0))):
        r = trajectory_directions(W, origin=origin)
        np.testing.assert_allclose(r.origin, expected, rtol=1e-14)
        assert r.origin_kind == origin
    r = trajectory_directions(W, origin=point)
    assert r.origin_kind == "given"
    np.testing.assert_allclose(r.coords, (W - point) @ r.vectors.T, atol=1e-12)


def test_gradient_descent_path_over_a_plane():
    # End to end: record a GD trajectory on a quadratic, draw the plane it spans.
    q = Quadratic.from_spectrum(np.linspace(0.1, 2.0, 40), rng=0, linear=True)
    x, path = q.x0.copy(), []
    for _ in range(30):
        path.append(x.copy())
        x = x - 0.3 * q.grad(x)
    path.append(x.copy())
    r = trajectory_directions(np.array(path))
    surface = pc.plane(q, r.directions, x=r.origin, alphas=[-1.0, 0.0, 1.0], betas=[0.0, 1.0])
    assert surface.losses[0, 1] == pytest.approx(q.loss(r.origin), rel=1e-14)
    assert r.explained_variance_ratio.sum() > 0.9


# ---------------------------------------------------------------------- bad input


def _sketch(dim=4, n=0, center=True):
    sk = GradientSketch(dim, ell=2, center=center)
    sk.extend(np.random.default_rng(0).standard_normal((n, dim)))
    return sk


BAD = [
    (lambda: effective_dimension(np.ones(5)), ValueError, "`gradients` must be 2-D"),
    (lambda: effective_dimension(np.ones((1, 5))), ValueError, "at least 2 rows"),
    (lambda: effective_dimension(np.ones((3, 0))), ValueError, "at least 2 rows and 1 col"),
    (lambda: effective_dimension(np.array([[1.0, np.nan], [0, 1]])), ValueError, "row 0"),
    (lambda: effective_dimension(np.ones((3, 2), dtype=int)), TypeError, "floating dtype"),
    (lambda: effective_dimension("grads"), TypeError, "GradientSketch; got str"),
    (lambda: effective_dimension(np.eye(3), share=0.0), ValueError, "`share` must be > 0"),
    (lambda: effective_dimension(np.eye(3), share=1.5), ValueError, "`share` must be <= 1"),
    (lambda: effective_dimension(np.eye(3), share=np.nan), ValueError, "`share` must be finite"),
    (lambda: effective_dimension(np.eye(3), share="0.9"), TypeError, "`share` must be a real"),
    (lambda: effective_dimension(np.eye(3), center=1), TypeError, "`center` must be True"),
    (lambda: effective_dimension(np.ones((4, 3))), ValueError, "zero variance"),
    (lambda: effective_dimension(np.zeros((4, 3)), center=False), ValueError, "all rows are zero"),
    (lambda: effective_dimension(_sketch(n=5), center=False), ValueError, "built with center=True"),
    (lambda: effective_dimension(_sketch(n=1)), ValueError, "has seen 1 gradient"),
    (lambda: GradientSketch(0, ell=2), ValueError, "`dim` must be >= 1"),
    (lambda: GradientSketch(5, ell=0), ValueError, "`ell` must be >= 1"),
    (lambda: GradientSketch(5, ell=2.0), TypeError, "`ell` must be an integer"),
    (lambda: GradientSketch(5, ell=2, dtype=np.int64), ValueError, "`dtype` must be float32"),
    (lambda: _sketch().update(np.ones(3)), ValueError, r"`g` must have shape \(4,\)"),
    (lambda: _sketch().update(np.array([1.0, np.inf, 0, 0])), ValueError, "`g` must be finite"),
    (lambda: _sketch().extend(np.ones((2, 3))), ValueError, r"`G` must have shape \(n, 4\)"),
    (lambda: _sketch().extend(np.ones(4)), ValueError, "`G` must be 2-D"),
    (lambda: trajectory_directions(np.eye(3), k=4), ValueError, r"`k` must be in \[1, 3\]"),
    (lambda: trajectory_directions(np.eye(3), origin="end"), ValueError, "`origin` must be one"),
    (lambda: trajectory_directions(np.eye(3), origin=np.ones(2)), ValueError, r"shape \(3,\)"),
    (lambda: trajectory_directions(np.eye(2), k=2), ValueError, "spans only 1 direction"),
    (lambda: trajectory_directions(np.ones((3, 4))), ValueError, "spans only 0 direction"),
]


@pytest.mark.parametrize(("call", "exc", "match"), BAD, ids=[m for _, _, m in BAD])
def test_bad_input_is_refused_with_the_parameter_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_plots_of_effective_dimension_and_trajectory(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from probecore import plot
    from probecore.analytic import Quadratic

    rng = np.random.default_rng(0)
    G = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 40))
    r = pc.effective_dimension(G)
    ax = plot.explained_variance(r)
    assert ax.get_ylabel() == "explained share" and len(ax.lines) == 3
    q = Quadratic.from_spectrum(np.geomspace(0.1, 1.0, 8), rng=0, linear=True)
    x, path = q.x0.copy(), [q.x0.copy()]
    for _ in range(20):
        x = x - q.grad(x)
        path.append(x.copy())
    t = pc.trajectory_directions(np.array(path))
    grid = np.linspace(-3, 3, 7)
    surface = pc.plane(q, t.directions, x=t.origin, alphas=grid, betas=grid, progress=False)
    ax = plot.trajectory(surface, t)
    ax.figure.savefig(tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000
    with pytest.raises(TypeError, match="TrajectoryPCA"):
        plot.trajectory(surface, r)


def test_share_given_as_a_percentage_is_explained():
    G = np.random.default_rng(0).standard_normal((5, 8))
    with pytest.raises(ValueError, match=r"fraction in \(0, 1\]; got 90 \(for 90% pass 0.9\)"):
        pc.effective_dimension(G, share=90)
