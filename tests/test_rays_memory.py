"""Memory of `rays` and `plane`: O(dim) per worker whatever the chunk size.

Measured with tracemalloc (numpy reports its array buffers to it), so the numbers do not
depend on the machine's load, the allocator or the clock. The objective is a diagonal
quadratic of dimension 100,000 written for this test (``Quadratic`` stores a dense
``dim × dim`` matrix): its vectors are 800 kB each in float64, so vectors of length
``dim`` dominate everything else the run allocates.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import probecore as pc
from probecore import AbstractObjective
from probecore._contract.validation import check_vector
from probecore.analytic import default_layout

DIM = 100_000


class DiagonalQuadratic(AbstractObjective):
    """``½ Σ λ_i x_i²`` with one temporary vector per loss (``λ·x``); default span route.

    Parameters
    ----------
    lam : numpy.ndarray
        The diagonal of the Hessian.
    dtype : numpy dtype
        The objective's dtype.
    """

    def __init__(self, lam: np.ndarray, dtype=np.float64) -> None:
        self.dtype = np.dtype(dtype)
        self.dim = lam.size
        self.lam = lam.astype(self.dtype)
        self.x0 = np.linspace(-1.0, 1.0, self.dim).astype(self.dtype)
        self.layout = default_layout(self.dim)

    def loss(self, x: np.ndarray) -> float:
        """Value at ``x``."""
        x = check_vector("x", x, dim=self.dim, dtype=self.dtype)
        return 0.5 * float(np.dot(self.lam * x, x))

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``λ·x``."""
        return self.lam * check_vector("x", x, dim=self.dim, dtype=self.dtype)

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``λ·v``."""
        return self.lam * check_vector("v", v, dim=self.dim, dtype=self.dtype)


@pytest.fixture(scope="module")
def quadratic() -> DiagonalQuadratic:
    obj = DiagonalQuadratic(np.linspace(0.5, 2.0, DIM))
    pc.rays(obj, n_rays=2, rng=0)  # first-call imports (scipy.stats) are not the run's memory
    return obj


def _traced_peak(fn) -> tuple[int, object]:
    """Peak bytes traced while ``fn()`` runs, above what was allocated before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return peak, out


def test_rays_peak_memory_is_a_few_vectors_whatever_the_chunk_size(quadratic):
    """At most 3 float64 vectors of ``dim`` at any time, for 1 ray a chunk or 64.

    The bound follows from the algorithm, with the default ``losses_in_span`` of
    :class:`~probecore.AbstractObjective` and a float64 objective (the cast of a
    direction to the objective's dtype is then no copy): drawing a direction holds the
    direction and its squares inside ``np.linalg.norm`` (2 vectors); evaluating holds the
    direction, ``coeffs @ basis`` and the point (3), then the direction, the point and the
    loss's ``λ·x`` (3). ``L(x)`` at the start holds a zero basis row, ``coeffs @ basis``
    and the point (3). Half a vector of slack covers the small objects of the run (results,
    per-ray scalars). Before rays were drawn one at a time, a chunk of 64 rays peaked at
    320 vectors and a chunk of 1 at 6.
    """
    vec = DIM * 8
    peaks = {}
    results = {}
    for chunk in (1, 64):
        peaks[chunk], results[chunk] = _traced_peak(
            lambda chunk=chunk: pc.rays(quadratic, n_rays=64, rng=7, chunk_size=chunk)
        )
    for chunk, peak in peaks.items():
        assert peak <= 3.5 * vec, f"chunk {chunk}: peak {peak / vec:.2f} vectors of dim"
    assert abs(peaks[64] - peaks[1]) <= 0.25 * vec, {c: p / vec for c, p in peaks.items()}
    for field in ("losses_plus", "losses_minus", "kappa"):
        np.testing.assert_array_equal(getattr(results[64], field), getattr(results[1], field))


def test_ray_losses_equal_the_batched_evaluation_bit_for_bit(quadratic):
    """Ray by ray, the values are those of one ``losses_in_span`` over a chunk's rays.

    That batched call (directions from :func:`probecore.ray_directions`, coefficients
    ``[eps·I; -eps·I]``) is how chunks were evaluated before: stored runs stay valid.
    """
    n, seed = 6, 11
    r = pc.rays(quadratic, n_rays=n, rng=seed, chunk_size=4)
    D = pc.ray_directions(seed, np.arange(n), DIM)
    coeffs = np.concatenate([r.eps * np.eye(n), -r.eps * np.eye(n)])
    batched = quadratic.losses_in_span(quadratic.x0, D, coeffs)
    np.testing.assert_array_equal(r.losses_plus, batched[:n])
    np.testing.assert_array_equal(r.losses_minus, batched[n:])


def test_ray_directions_are_drawn_as_before():
    """Each row is a standard normal draw of ray ``i``'s stream over its own norm."""
    seed, idx, dim = 3, [0, 5, 2], 1001
    got = pc.ray_directions(seed, idx, dim)
    ref = np.stack(
        [
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,))).standard_normal(dim)
            for i in idx
        ]
    )
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_array_equal(got, ref)
    for row, i in enumerate(idx):
        np.testing.assert_array_equal(pc.ray_directions(seed, [i], dim)[0], got[row])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plane_peak_memory_is_a_few_vectors_whatever_the_chunk_size(dtype):
    """A 21×21 plane through the default ``losses_in_span`` holds O(dim), not O(chunk·dim).

    Each point is formed alone (``span_point``): the point in the objective's dtype and,
    for float32, two float64 work vectors (float64 accumulates in the point itself); the
    loss adds ``λ·x``; the chunk's basis in the objective's dtype may be one more copy
    of the two directions. That is at most 4 float64 vectors (measured: 3.0-3.5). Before,
    one chunk of 441 points formed a ``(441, dim)`` float64 block and the points: 441
    float64 vectors and more.
    """
    obj = DiagonalQuadratic(np.linspace(0.5, 2.0, DIM), dtype=dtype)
    dirs = pc.random_directions(obj, k=2, rng=0, normalization="none")
    axis = np.linspace(-1.0, 1.0, 21)
    vec = DIM * 8  # one float64 vector
    peaks, grids = {}, {}
    for chunk in (1, 441):
        peaks[chunk], grids[chunk] = _traced_peak(
            lambda chunk=chunk: pc.plane(obj, dirs, alphas=axis, betas=axis, chunk_size=chunk)
        )
    for chunk, peak in peaks.items():
        assert peak <= 4 * vec, f"chunk {chunk}: peak {peak / vec:.2f} float64 vectors"
    assert abs(peaks[441] - peaks[1]) <= 0.5 * vec, {c: p / vec for c, p in peaks.items()}
    np.testing.assert_array_equal(grids[441].losses, grids[1].losses)
    # the points are those of the batched expression, to the rounding of one product
    A, B = np.meshgrid(axis, axis, indexing="ij")
    coeffs = np.stack([A.ravel(), B.ravel()], axis=1)[::40]
    points = obj.x0 + (coeffs @ dirs.vectors).astype(obj.dtype)
    expected = [obj.loss(p) for p in points]
    got = obj.losses_in_span(obj.x0, dirs.vectors, coeffs)
    np.testing.assert_allclose(got, expected, rtol=8 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_span_points_equal_span_point_row_for_row_bit_for_bit(dtype, k):
    """A block formed together is, row for row, the point formed alone: every pattern of
    zero coefficients (the origin, the axes of a plane) included."""
    from probecore.backend import span_point, span_points

    rng = np.random.default_rng(k)
    dim = 1_000
    origin = rng.standard_normal(dim).astype(dtype)
    basis = rng.standard_normal((k, dim)).astype(dtype)
    coeffs = rng.standard_normal((40, k))
    coeffs[rng.random((40, k)) < 0.3] = 0.0  # mixed patterns
    coeffs[0] = 0.0
    coeffs[1] = -0.0
    out = span_points(origin, basis, coeffs, out=np.empty((40, dim), dtype))
    ref = np.stack([span_point(origin, basis, c) for c in coeffs])
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.view(f"u{out.itemsize}"), ref.view(f"u{ref.itemsize}"))
    # one pattern for every row takes the whole-block route
    full = rng.uniform(0.5, 1.0, (7, k))
    np.testing.assert_array_equal(
        span_points(origin, basis, full, out=np.empty((7, dim), dtype)),
        np.stack([span_point(origin, basis, c) for c in full]),
    )
    assert span_points(origin, basis, coeffs[:0], out=np.empty((0, dim), dtype)).shape == (0, dim)
    with pytest.raises(ValueError, match="`out` must be"):
        span_points(origin, basis, coeffs, out=np.empty((39, dim), dtype))
    with pytest.raises(ValueError, match=rf"`coeffs` must have shape \(n_points, {k}\)"):
        span_points(origin, basis, np.ones((4, k + 1)), out=np.empty((4, dim), dtype))
    with pytest.raises(ValueError, match="`coeffs` must have shape"):
        span_points(origin, basis, np.ones(k), out=np.empty((1, dim), dtype))
    with pytest.raises(ValueError, match="must not overlap"):
        span_points(origin, basis, coeffs[:1], out=origin[None])
