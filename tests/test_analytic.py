"""The analytic objectives against independent references.

Rosenbrock is compared with scipy.optimize's implementation, logistic regression with
scikit-learn's log loss and with finite differences, and the quadratic with the spectrum
it was built from. Tolerances are rounding-error bounds (multiples of the unit roundoff
times the magnitude of what was summed) or finite-difference error bounds; each
derivation is next to the test that uses it.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
from scipy import special
from sklearn.metrics import accuracy_score, log_loss

from probecore import Layout
from probecore.analytic import (
    LogisticRegression,
    Quadratic,
    Rosenbrock,
    default_layout,
    digits_logistic_regression,
    nn_like_spectrum,
)
from probecore.testing import check_objective, dense_hessian

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)

# --------------------------------------------------------------------------- Rosenbrock


def _rosen_points(dim: int) -> list[np.ndarray]:
    rng = np.random.default_rng(dim)
    return [
        np.ones(dim),  # the minimum
        np.where(np.arange(dim) % 2 == 0, -1.2, 1.0),  # the classical start
        np.zeros(dim),
        rng.standard_normal(dim),
        1.5 * rng.standard_normal(dim),
        10.0 * rng.standard_normal(dim),  # far out, where the quartic term dominates
    ]


ROSEN_CASES = [(dim, i) for dim in (2, 3, 12) for i in range(len(_rosen_points(dim)))]


@pytest.fixture(params=ROSEN_CASES, ids=lambda c: f"dim={c[0]}-point{c[1]}")
def rosen_case(request):
    dim, i = request.param
    return Rosenbrock(dim), _rosen_points(dim)[i]


# Rounding-error bounds for comparing two implementations of the same formulas. Each entry
# of the gradient/Hessian is a sum of at most three terms, each a product of at most four
# factors; each implementation commits at most ~7 roundings on the way, each of relative
# size eps, measured against the sum of the terms' magnitudes (not against the result,
# which can cancel). Two implementations: 2 * 7 < 16.
ROUNDING_FACTOR = 16


def _rosen_grad_scale(x: np.ndarray) -> np.ndarray:
    """Sum of the magnitudes of the terms in each gradient entry."""
    r_abs = np.abs(x[1:]) + x[:-1] ** 2  # bound on |x_{i+1} - x_i^2| before cancellation
    s = np.zeros_like(x)
    s[:-1] += 400 * np.abs(x[:-1]) * r_abs + 2 * (1 + np.abs(x[:-1]))
    s[1:] += 200 * r_abs
    return s


def _rosen_hess_scale(x: np.ndarray) -> np.ndarray:
    """Entry-wise magnitudes of the terms of the tridiagonal Hessian."""
    d = np.zeros_like(x)
    d[:-1] += 1200 * x[:-1] ** 2 + 400 * np.abs(x[1:]) + 2
    d[1:] += 200
    off = 400 * np.abs(x[:-1])
    return np.diag(d) + np.diag(off, 1) + np.diag(off, -1)


def test_rosenbrock_loss_matches_scipy(rosen_case):
    f, x = rosen_case
    ref = scipy.optimize.rosen(x)
    # Every term of the sum is non-negative, so the loss is its own magnitude scale;
    # summing dim terms adds at most dim roundings to the per-term ones.
    tol = 2 * (f.dim + ROUNDING_FACTOR) * EPS64 * ref
    assert abs(f.loss(x) - ref) <= tol
    if np.all(x == 1.0):
        assert f.loss(x) == 0.0


def test_rosenbrock_grad_matches_scipy(rosen_case):
    f, x = rosen_case
    g = f.grad(x)
    assert g.dtype == np.float64 and g.shape == (f.dim,)
    ref = scipy.optimize.rosen_der(x)
    np.testing.assert_array_less(
        np.abs(g - ref), ROUNDING_FACTOR * EPS64 * _rosen_grad_scale(x) + np.finfo(np.float64).tiny
    )
    if np.all(x == 1.0):
        np.testing.assert_array_equal(g, 0.0)


def test_rosenbrock_hessian_matches_scipy(rosen_case):
    f, x = rosen_case
    H = f.hessian(x)
    ref = scipy.optimize.rosen_hess(x)
    scale = _rosen_hess_scale(x)
    np.testing.assert_array_less(
        np.abs(H - ref), ROUNDING_FACTOR * EPS64 * scale + np.finfo(np.float64).tiny
    )
    np.testing.assert_array_equal(H, H.T)
    # the dense Hessian assembled from HVPs with unit vectors is the same matrix
    np.testing.assert_array_less(
        np.abs(dense_hessian(f, x) - ref),
        ROUNDING_FACTOR * EPS64 * scale + np.finfo(np.float64).tiny,
    )
    if np.all(x == 1.0):
        # positive definite at the minimum
        assert np.linalg.eigvalsh(H)[0] > 0


def test_rosenbrock_hvp_matches_scipy(rosen_case):
    f, x = rosen_case
    rng = np.random.default_rng(123)
    V = rng.standard_normal((3, f.dim))
    scale = _rosen_hess_scale(x)
    for v in V:
        hv = f.hvp(x, v)
        assert hv.dtype == np.float64
        ref = scipy.optimize.rosen_hess_prod(x, v)
        # a product with a tridiagonal matrix adds up to three roundings per entry
        tol = (ROUNDING_FACTOR + 3) * EPS64 * (scale @ np.abs(v))
        np.testing.assert_array_less(np.abs(hv - ref), tol + np.finfo(np.float64).tiny)
    HV = f.hvp_many(x, V)
    np.testing.assert_array_equal(HV, np.stack([f.hvp(x, v) for v in V]))


def test_rosenbrock_default_start_and_float32():
    f = Rosenbrock(7, dtype=np.float32)
    assert f.x0.dtype == np.float32
    np.testing.assert_array_equal(f.x0, np.array([-1.2, 1, -1.2, 1, -1.2, 1, -1.2], np.float32))
    x = f.x0
    assert isinstance(f.loss(x), float)
    assert f.grad(x).dtype == np.float32
    assert f.hvp(x, np.ones(7, np.float32)).dtype == np.float32
    assert f.hvp_many(x, np.eye(7, dtype=np.float32)).dtype == np.float32
    # float32 results are the float64 ones rounded once (they are computed in float64)
    x64 = x.astype(np.float64)
    ref = scipy.optimize.rosen_der(x64)
    np.testing.assert_array_less(
        np.abs(f.grad(x) - ref),
        EPS32 * np.abs(ref) + ROUNDING_FACTOR * EPS64 * _rosen_grad_scale(x64) + 1e-30,
    )


# --------------------------------------------------------------------------- logistic regression


@pytest.fixture(scope="module")
def digits():
    return digits_logistic_regression(l2=1e-2)


@pytest.fixture(scope="module")
def logreg(digits):
    """A 200-example subset: small enough for coordinate-wise finite differences."""
    return digits.subset(np.arange(200))


@pytest.fixture(scope="module")
def logreg_point(logreg):
    return 0.3 * np.random.default_rng(7).standard_normal(logreg.dim)


def _logits(obj: LogisticRegression, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent unpacking: W is (classes, features) row-major, then the bias."""
    k, f = obj.n_classes, obj.n_features
    W = x[: k * f].reshape(k, f)
    b = x[k * f :]
    return W, b, obj.features @ W.T + b


def _loss_rounding(obj: LogisticRegression, x: np.ndarray) -> float:
    """Bound on the absolute rounding error of one loss evaluation.

    Each logit is a dot product of length ``n_features + 1``: error at most
    ``(n_features + 1)·eps·(|F||W|ᵀ + |b|)``. log-sum-exp and the subtraction of the true
    logit add a few roundings of the logits' size; the mean over examples and the L2
    term a few more relative to the result. ``n_features + 10`` roundings of size ``S``
    (the largest logit magnitude bound) cover all of them.
    """
    W, b, _ = _logits(obj, x)
    S = float(np.max(np.abs(obj.features) @ np.abs(W).T + np.abs(b)))
    reg = 0.5 * obj.l2 * float(np.sum(W * W))
    return (obj.n_features + 10) * EPS64 * (1.0 + S + reg)


def test_logreg_layout_and_shapes(logreg):
    k, f = logreg.n_classes, logreg.n_features
    assert (k, f) == (10, 64)
    assert logreg.dim == k * f + k
    assert [b.name for b in logreg.layout] == ["weight", "bias"]
    assert logreg.layout["weight"].shape == (k, f)
    assert logreg.layout["bias"].role == "bias"
    assert logreg.n_examples == 200
    assert logreg.x0.shape == (logreg.dim,) and logreg.x0.dtype == np.float64


def test_digits_splits():
    train = digits_logistic_regression(split="train")
    test = digits_logistic_regression(split="test")
    everything = digits_logistic_regression(split="all")
    assert everything.n_examples == 1797
    assert train.n_examples + test.n_examples == 1797
    assert abs(test.n_examples / 1797 - 0.25) < 0.01
    assert everything.features.min() >= 0.0 and everything.features.max() <= 1.0


def test_logreg_loss_at_zero_is_log_k(logreg):
    # all logits vanish: every class has probability 1/k
    L = logreg.loss(np.zeros(logreg.dim))
    assert abs(L - np.log(10)) <= 4 * EPS64 * np.log(10)


@pytest.mark.parametrize("point", ["zero", "random"])
def test_logreg_loss_matches_sklearn_log_loss(logreg, logreg_point, point):
    x = np.zeros(logreg.dim) if point == "zero" else logreg_point
    W, _, z = _logits(logreg, x)
    proba = special.softmax(z, axis=1)
    # log_loss clips probabilities to [eps, 1 - eps]; none is that close to 0 or 1 here
    assert proba.min() > 1e3 * EPS64 and proba.max() < 1 - 1e3 * EPS64
    ref = log_loss(logreg.labels, proba, labels=np.arange(10)) + 0.5 * logreg.l2 * np.sum(W**2)
    # sklearn takes -log of the softmax (relative error of p: a few eps, so a few eps
    # absolute in -log p), we subtract the logit from log-sum-exp; both within the
    # per-evaluation bound derived in _loss_rounding.
    assert abs(logreg.loss(x) - ref) <= 2 * _loss_rounding(logreg, x)


def test_logreg_loss_and_grad_agree_with_loss_and_grad(logreg, logreg_point):
    L, g = logreg.loss_and_grad(logreg_point)
    assert logreg.loss(logreg_point) == L
    np.testing.assert_array_equal(g, logreg.grad(logreg_point))


# Central differences (f(x+h) - f(x-h)) / 2h along a coordinate e_j:
#   truncation error <= h²/6 · max |f'''| on [x-h, x+h];
#   rounding error   <= (δ₊ + δ₋) / 2h = δ/h, where δ bounds the absolute error of one
#   evaluation of f.
# f''' along e_j: the loss is a mean over examples of log-sum-exp of logits that move
# with speed F_ij (|F_ij| <= 1: pixels are in [0, 1], the bias input is 1); the third
# derivative of log-sum-exp is the third joint cumulant of the one-hot class indicator
# under the softmax, whose centred entries lie in [-1, 1], so |cumulant| <= 1. The L2
# term is quadratic. Hence |f'''| <= 1, and the same bound holds for the second
# derivative of each gradient entry along e_j (a mixed third derivative).
FD_STEP = 1e-5
FD_THIRD_DERIVATIVE_BOUND = 1.0


def _central_differences(f, x: np.ndarray, h: float) -> np.ndarray:
    out = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        out.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.array(out)


def test_logreg_grad_matches_finite_differences(logreg, logreg_point):
    x = logreg_point
    g = logreg.grad(x)
    fd = _central_differences(logreg.loss, x, FD_STEP)
    # the loss at x ± h e_j is bounded like at x (|h| is negligible against |x|)
    tol = FD_STEP**2 / 6 * FD_THIRD_DERIVATIVE_BOUND + _loss_rounding(logreg, x) / FD_STEP
    err = np.abs(g - fd)
    assert err.max() <= tol, (err.max(), tol)
    # the test has teeth: the tolerance is far below the size of the gradient
    assert tol < 1e-3 * np.abs(g).max()


def _hessian_rounding(obj: LogisticRegression) -> float:
    """Bound on |a - b| for two evaluations of a Hessian entry from the same softmax.

    Each entry is a mean over the n examples of ``p_c(δ_cd − p_d)·F̃_i·F̃_j`` (plus λ on
    the weight diagonal); every term has magnitude <= 1/4 (``p_c p_d <= 1/4`` when
    ``p_c + p_d <= 1``, ``p(1 − p) <= 1/4``) and ``|F̃| <= 1``. A sum of n terms with a
    few roundings each is within ``(n + 5)·eps·(1/4)·n`` of the exact sum, i.e. ``(n + 5)
    ·eps/4`` after dividing by n; two evaluations differ by at most twice that.
    """
    return 2 * (obj.n_examples + 5) * EPS64 / 4


def test_logreg_closed_form_hessian_matches_hvps(logreg, logreg_point):
    for x in (logreg.x0, logreg_point):
        H = logreg.hessian(x)
        assert H.shape == (logreg.dim, logreg.dim) and H.dtype == np.float64
        Hd = dense_hessian(logreg, x)
        tol = _hessian_rounding(logreg)
        assert np.max(np.abs(H - Hd)) <= tol
        # the brief's 1e-12 relative accuracy follows from this bound
        assert tol <= 1e-12 * np.max(np.abs(H))


def test_logreg_hessian_matches_finite_differences_of_grad(logreg, logreg_point):
    x = logreg_point
    H = logreg.hessian(x)
    fd = _central_differences(logreg.grad, x, FD_STEP)  # row j: d grad / d x_j
    # Rounding in one gradient evaluation: an absolute error δ in the logits moves each
    # softmax probability by at most 2δ (|∂p_c/∂z_d| summed over d is <= 2p_c <= 2), with
    # δ bounded by _loss_rounding; then each entry is a mean of n products of size <= 1
    # plus λW, within (n + 10)·eps.
    delta_g = 2 * _loss_rounding(logreg, x) + (logreg.n_examples + 10) * EPS64
    tol = FD_STEP**2 / 6 * FD_THIRD_DERIVATIVE_BOUND + delta_g / FD_STEP
    err = np.abs(fd - H)
    assert err.max() <= tol, (err.max(), tol)
    assert tol < 1e-3 * np.abs(H).max()


def test_logreg_hessian_is_symmetric_psd_plus_l2_on_weights(digits, logreg_point):
    obj = digits.subset(np.arange(200))
    unreg = LogisticRegression(obj.features, obj.labels, n_classes=10, l2=0.0)
    k, f = obj.n_classes, obj.n_features
    n_w = k * f
    on_weights = np.r_[np.ones(n_w), np.zeros(k)]
    for x in (obj.x0, logreg_point):
        H = obj.hessian(x)
        H0 = unreg.hessian(x)
        tol = _hessian_rounding(obj)
        assert np.max(np.abs(H - H.T)) <= tol
        # the penalty adds exactly λ to the weight diagonal and nothing else
        # (one rounding of an entry of size <= 1/4 + λ)
        np.testing.assert_allclose(
            H - H0, obj.l2 * np.diag(on_weights), rtol=0, atol=2 * EPS64 * (0.25 + obj.l2)
        )
        # the data part is PSD: Weyl + backward-stable eigvalsh, error <= dim·eps·‖H‖
        lam0 = np.linalg.eigvalsh((H0 + H0.T) / 2)
        assert lam0[0] >= -obj.dim * EPS64 * np.abs(lam0).max() - obj.dim * tol
        # ... with the exact null direction of softmax: adding a constant to every bias
        ones_b = np.r_[np.zeros(n_w), np.ones(k)]
        assert np.max(np.abs(H @ ones_b)) <= k * tol
        # ... and shifting every class's weights by one vector changes only the penalty
        w = np.random.default_rng(3).standard_normal(f)
        shift = np.r_[np.tile(w, k), np.zeros(k)]
        np.testing.assert_allclose(
            H @ shift, obj.l2 * shift, rtol=0, atol=obj.dim * tol * np.abs(shift).max()
        )
        # so the full Hessian is PSD with smallest eigenvalue 0 (the bias shift)
        lam = np.linalg.eigvalsh((H + H.T) / 2)
        assert lam[0] >= -obj.dim * EPS64 * np.abs(lam).max() - obj.dim * tol
        assert lam[0] <= k * tol


def test_logreg_subset_equals_object_built_on_subset(digits, logreg_point):
    idx = np.array([5, 3, 100, 7, 999, 42, 1200, 0, 17])
    sub = digits.subset(idx)
    direct = LogisticRegression(
        digits.features[idx], digits.labels[idx], n_classes=10, l2=digits.l2
    )
    assert sub.n_examples == idx.size
    assert sub.l2 == digits.l2 and sub.n_classes == 10
    np.testing.assert_array_equal(sub.x0, digits.x0)
    for x in (np.zeros(digits.dim), logreg_point):
        assert sub.loss(x) == direct.loss(x)
        np.testing.assert_array_equal(sub.grad(x), direct.grad(x))
    # a subset is a different objective than the full one
    assert sub.loss(logreg_point) != digits.loss(logreg_point)


def test_logreg_subset_rejects_bad_indices(logreg):
    with pytest.raises(ValueError, match="`indices`"):
        logreg.subset(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="`indices`"):
        logreg.subset(np.array([logreg.n_examples]))
    with pytest.raises(ValueError, match="`indices`"):
        logreg.subset(np.array([], dtype=int))


def test_logreg_metrics_accuracy(logreg, logreg_point):
    for x in (logreg.x0, logreg_point):
        m = logreg.metrics(x)
        assert set(m) == {"accuracy"}
        assert 0.0 <= m["accuracy"] <= 1.0
        _, _, z = _logits(logreg, x)
        assert m["accuracy"] == accuracy_score(logreg.labels, np.argmax(z, axis=1))


def test_logreg_minimize_reaches_stationary_point(logreg):
    x = logreg.minimize()
    assert x.dtype == np.float64 and x.shape == (logreg.dim,)
    assert np.linalg.norm(logreg.grad(x)) < 1e-6
    assert logreg.loss(x) < logreg.loss(logreg.x0)
    # a linear model fits 200 digit images almost perfectly (chance is 0.1)
    assert logreg.metrics(x)["accuracy"] > 0.9


def test_logreg_float32(digits):
    obj32 = digits_logistic_regression(l2=1e-2, dtype=np.float32).subset(np.arange(50))
    obj64 = digits.subset(np.arange(50))
    x = (0.3 * np.random.default_rng(1).standard_normal(obj32.dim)).astype(np.float32)
    assert obj32.x0.dtype == np.float32
    g = obj32.grad(x)
    assert g.dtype == np.float32
    assert obj32.hvp(x, x).dtype == np.float32
    assert obj32.hvp_many(x, np.stack([x, x])).dtype == np.float32
    # computed in float64 and rounded once on output
    g64 = obj64.grad(x.astype(np.float64))
    np.testing.assert_allclose(g, g64, rtol=EPS32, atol=1e-30)
    assert obj32.loss(x) == obj64.loss(x.astype(np.float64))


# --------------------------------------------------------------------------- quadratic

SPECTRA = {
    "mixed_signs": [3.0, -1.0, 0.5, -7.0, 2.0],
    "repeated": [2.0, 2.0, 2.0, -1.0, -1.0, 5.0, 0.0],
    "clustered": [1.0, 1.0 + 1e-10, 1.0 + 2e-10, 1.0 + 3e-10, 50.0, -4.0],
    "all_negative": [-1.0, -2.0, -3.0],
    "nn_like": list(nn_like_spectrum(60, rng=1)),
}


@pytest.fixture(params=list(SPECTRA), ids=str)
def spectrum(request) -> np.ndarray:
    return np.asarray(SPECTRA[request.param])


def _spectral_tol(lam: np.ndarray) -> float:
    """Error bound on eigenvalues of A = Q diag(λ) Qᵀ formed in floating point.

    Forming A (QR's Q is orthogonal to O(n·eps), the product sums n terms) perturbs it by
    E with ‖E‖₂ <= c·n·eps·max|λ|; eigvalsh is backward stable with the same kind of
    bound; Weyl's inequality moves each eigenvalue by at most ‖E‖₂. c = 4 covers both.
    """
    return 4 * lam.size * EPS64 * np.abs(lam).max()


def test_quadratic_from_spectrum_has_that_spectrum(spectrum):
    q = Quadratic.from_spectrum(spectrum, rng=0)
    A = q.hessian()
    np.testing.assert_array_equal(A, A.T)
    np.testing.assert_array_equal(q.eigenvalues, np.sort(spectrum))
    np.testing.assert_allclose(
        np.linalg.eigvalsh(A), np.sort(spectrum), rtol=0, atol=_spectral_tol(spectrum)
    )
    # trace = sum of eigenvalues (the diagonal sums n terms: n more roundings)
    assert abs(np.trace(A) - spectrum.sum()) <= _spectral_tol(spectrum) * spectrum.size
    # the stored eigenvectors are orthonormal and diagonalise A
    Q = q.eigenvectors
    np.testing.assert_allclose(
        Q.T @ Q, np.eye(spectrum.size), rtol=0, atol=4 * spectrum.size * EPS64
    )
    np.testing.assert_allclose(A @ Q, Q * q.eigenvalues, rtol=0, atol=_spectral_tol(spectrum))


def test_quadratic_from_spectrum_is_reproducible(spectrum):
    a = Quadratic.from_spectrum(spectrum, rng=5, linear=True)
    b = Quadratic.from_spectrum(spectrum, rng=5, linear=True)
    c = Quadratic.from_spectrum(spectrum, rng=6, linear=True)
    np.testing.assert_array_equal(a.hessian(), b.hessian())
    np.testing.assert_array_equal(a.b, b.b)
    np.testing.assert_array_equal(a.x0, b.x0)
    assert not np.array_equal(a.x0, c.x0)


def test_quadratic_value_and_gradient(spectrum):
    q = Quadratic.from_spectrum(spectrum, rng=1, linear=True)
    n = spectrum.size
    x = np.random.default_rng(2).standard_normal(n)
    Q, lam = q.eigenvectors, q.eigenvalues
    # independent evaluation through the eigen-decomposition
    y = Q.T @ x
    g_ref = Q @ (lam * y) + q.b
    L_ref = 0.5 * np.sum(lam * y * y) + q.b @ x + q.c
    scale = np.abs(lam).max() * np.linalg.norm(x)
    tol = 2 * _spectral_tol(lam) * np.linalg.norm(x) + 4 * n * EPS64 * (scale + np.linalg.norm(q.b))
    assert np.linalg.norm(q.grad(x) - g_ref) <= tol
    assert abs(q.loss(x) - L_ref) <= tol * np.linalg.norm(x) + 4 * n * EPS64 * abs(q.c)
    # hvp is A v everywhere; b and c do not enter it
    v = np.random.default_rng(3).standard_normal(n)
    assert np.linalg.norm(q.hvp(x, v) - Q @ (lam * (Q.T @ v))) <= tol * np.linalg.norm(v)
    # the gradient vanishes at the stationary point -A⁻¹b when A is invertible
    if np.abs(lam).min() > 0:
        x_star = np.linalg.solve(q.hessian(), -q.b)
        cond = np.abs(lam).max() / np.abs(lam).min()
        assert np.linalg.norm(q.grad(x_star)) <= 8 * n * EPS64 * cond * np.linalg.norm(q.b)


def test_quadratic_constructor_with_explicit_terms():
    A = np.array([[2.0, 1.0], [1.0, 3.0]])
    q = Quadratic(A, b=np.array([1.0, -1.0]), c=4.0, x0=np.array([0.5, 0.5]))
    x = np.array([1.0, 2.0])
    # 0.5·(2 + 4 + 12) + (1 − 2) + 4 = 12, all exact in binary
    assert q.loss(x) == 12.0
    np.testing.assert_array_equal(q.grad(x), [5.0, 6.0])
    np.testing.assert_array_equal(q.hvp(x, np.array([1.0, 0.0])), [2.0, 1.0])
    np.testing.assert_array_equal(q.x0, [0.5, 0.5])
    assert q.eigenvalues is None


def test_quadratic_float32_returns_float32():
    lam = nn_like_spectrum(30, rng=4)
    q32 = Quadratic.from_spectrum(lam, rng=0, linear=True, dtype=np.float32)
    q64 = Quadratic.from_spectrum(lam, rng=0, linear=True)
    assert q32.dtype == np.float32
    assert q32.x0.dtype == np.float32
    x = q32.x0
    g = q32.grad(x)
    assert g.dtype == np.float32 and g.shape == (30,)
    assert q32.hvp(x, x).dtype == np.float32
    assert q32.hvp_many(x, np.stack([x, x])).dtype == np.float32
    assert q32.loss_and_grad(x)[1].dtype == np.float32
    assert isinstance(q32.loss(x), float)
    # float32 arithmetic on rounded A, x and b: matrix-vector error <= (n + 2)·eps32·|A||x|
    x64 = x.astype(np.float64)
    ref = q64.grad(x64)
    tol = (30 + 2) * EPS32 * (np.abs(q64.hessian()) @ np.abs(x64) + np.abs(q64.b))
    np.testing.assert_array_less(np.abs(g - ref), tol)
    # the Hessian is still reported in float64
    assert q32.hessian().dtype == np.float64


# --------------------------------------------------------------------------- nn_like_spectrum


@pytest.mark.parametrize("dim", [12, 200])
def test_nn_like_spectrum_shape(dim):
    lam = nn_like_spectrum(dim, top=40.0, rng=0)
    assert lam.shape == (dim,) and lam.dtype == np.float64
    assert np.all(np.diff(lam) >= 0)
    assert lam[-1] == 40.0
    # ten outliers in [top/10, top], everything else in the bulk far below
    assert np.sum(lam >= 4.0) == 10
    assert np.all(lam[:-10] < 4.0)
    assert lam[0] > -1.0  # negatives are small
    if dim >= 100:
        # each bulk value is negative with probability 0.2: none among 190 has
        # probability 0.8^190 ≈ 4e-19
        assert np.sum(lam < 0) >= 1


def test_nn_like_spectrum_options():
    lam = nn_like_spectrum(300, negative_fraction=0.0, rng=0)
    assert lam.min() >= 0
    lam = nn_like_spectrum(300, negative_fraction=1.0, n_outliers=0, rng=0)
    assert lam.max() < 0
    a = nn_like_spectrum(50, rng=9)
    np.testing.assert_array_equal(a, nn_like_spectrum(50, rng=9))
    np.testing.assert_array_equal(a, nn_like_spectrum(50, rng=np.random.default_rng(9)))
    # the fraction of negatives follows negative_fraction (binomial: 4 sd = 0.09 at n=290)
    frac = np.mean(nn_like_spectrum(300, rng=1)[:290] < 0)
    assert abs(frac - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 290)


# --------------------------------------------------------------------------- default_layout


@pytest.mark.parametrize("dim", range(1, 80))
def test_default_layout_covers_dim(dim):
    layout = default_layout(dim)
    assert isinstance(layout, Layout)
    assert layout.dim == dim
    assert sum(b.size for b in layout) == dim
    if dim < 6:
        assert len(layout) == 1
    else:
        assert len(layout) >= 2
        assert layout["weight"].role == "weight" and len(layout["weight"].shape) == 2
        assert layout["bias"].role == "bias"
        assert layout["bias"].shape == (layout["weight"].shape[0],)
        assert all(b.size > 0 for b in layout)


def test_default_layout_used_by_objectives():
    assert Quadratic.from_spectrum(np.arange(1.0, 21.0), rng=0).layout == default_layout(20)
    assert Rosenbrock(12).layout == default_layout(12)
    custom = Layout.from_shapes([("a", (3,), "other"), ("b", (2,), "bias")])
    assert Rosenbrock(5, layout=custom).layout is custom


# --------------------------------------------------------------------------- conformance


def _conformance_objectives(dtype):
    base = digits_logistic_regression(l2=1e-2, dtype=dtype)
    rng = np.random.default_rng(0)
    return {
        "quadratic": Quadratic.from_spectrum(
            nn_like_spectrum(40, rng=1), rng=2, linear=True, dtype=dtype
        ),
        "quadratic_indefinite": Quadratic.from_spectrum(
            [-5.0, -1.0, 0.0, 2.0, 2.0, 9.0], rng=3, linear=True, dtype=dtype
        ),
        "rosenbrock": Rosenbrock(12, dtype=dtype),
        "rosenbrock_2d": Rosenbrock(2, dtype=dtype),
        "logreg": base.subset(np.arange(150)),
        "logreg_random_x0": LogisticRegression(
            base.features[:100],
            base.labels[:100],
            n_classes=10,
            l2=1e-2,
            x0=0.3 * rng.standard_normal(base.dim),
            dtype=dtype,
        ),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_analytic_objectives_pass_check_objective(dtype):
    for name, obj in _conformance_objectives(dtype).items():
        assert obj.dtype == dtype, name
        report = check_objective(obj)  # raises ObjectiveCheckError on failure
        assert report.passed, name
        names = {c.name for c in report.checks}
        assert {"gradient", "hvp", "hvp_symmetry", "determinism"} <= names


def test_rosenbrock_passes_check_objective_away_from_start():
    f = Rosenbrock(9)
    for x in (np.ones(9), np.random.default_rng(0).standard_normal(9)):
        assert check_objective(f, x).passed
