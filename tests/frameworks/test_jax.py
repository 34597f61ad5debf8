"""The JAX backend (probecore-jax) against dense JAX references.

Collected only when ``PROBECORE_TEST_BACKENDS`` names ``jax``; the conftest then turns on
``jax_enable_x64``.

Tolerances. Two computations of the same float64 quantity that differ only in the order
of their floating-point operations (batching, vmap, forward-over-reverse against
``jax.hessian``) each differ from the exact value by at most ``n·eps`` relative to the sum
of the absolute values of the terms (the standard bound ``γ_n`` for a sum of ``n`` terms,
Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1). Here ``n`` is the longest
chain of additions an output entry sees: the ``N`` examples of the mean plus the
reductions inside one example's forward and backward pass (fan-ins 64 and 32, 10
classes). Relative to the norm of the result this is ``n·eps·κ`` with
``κ = ‖Σ_i |t_i|‖ / ‖Σ_i t_i‖``, which :func:`_kappa` computes from the per-example terms
``t_i``; two computations differ by at most twice that.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.flatten_util import ravel_pytree
from probecore_jax import JaxObjective
from probecore_jax.plugin import probecore_make_objective

import probecore as pc
from frameworks import models_jax as M
from probecore.testing import check_objective

# The MLP keeps (out, in) weights in a plain dict, whose filter axis the backend infers and
# warns about; the tests whose numbers depend on it pass layout=M.MLP_LAYOUT.
pytestmark = pytest.mark.filterwarnings("ignore:probecore-jax inferred the layout:UserWarning")

EPS64 = float(np.finfo(np.float64).eps)
N = M.N_EXAMPLES
#: Longest chain of additions per output entry: the mean over N examples plus the
#: reductions of one example's forward and backward pass (fan-in 64, hidden 32, 10 classes).
N_ADD = N + 64 + M.HIDDEN + 10


# --------------------------------------------------------------------------- references


@pytest.fixture(scope="module")
def data():
    X, y = M.digits()
    return jnp.asarray(X), jnp.asarray(y)


@pytest.fixture(scope="module")
def mlp():
    return M.mlp_objective()


@pytest.fixture(scope="module")
def flat_loss(data):
    """The MLP's loss as a function of the flat vector, built independently of the backend."""
    _, unravel = ravel_pytree(M.init_mlp())

    def f(x):
        return M.mlp_loss(unravel(x), data)

    return f


@pytest.fixture(scope="module")
def dense(mlp, flat_loss):
    """Loss, gradient and Hessian at x0 from JAX directly (float64)."""
    x0 = jnp.asarray(mlp.x0)
    H = np.asarray(jax.jit(jax.hessian(flat_loss))(x0))
    return float(flat_loss(x0)), np.asarray(jax.grad(flat_loss)(x0)), H


@pytest.fixture(scope="module")
def per_example(data):
    """Per-example loss, gradient and HVP functions of the flat vector, for ``κ``."""
    _, unravel = ravel_pytree(M.init_mlp())
    X, y = data

    def f1(x, xi, yi):
        return M.mlp_loss(unravel(x), (xi[None], yi[None]))

    grad1 = jax.grad(f1)

    @jax.jit
    def grads(x):
        return jax.vmap(grad1, (None, 0, 0))(x, X, y)

    @jax.jit
    def hvps(x, v):
        return jax.vmap(lambda xi, yi: jax.jvp(lambda z: grad1(z, xi, yi), (x,), (v,))[1])(X, y)

    return grads, hvps


def _kappa(terms) -> float:
    """``‖Σ|t_i|‖ / ‖Σ t_i‖`` over the rows ``t_i``: how much cancellation the mean has."""
    terms = np.asarray(terms, dtype=np.float64)
    return float(np.linalg.norm(np.abs(terms).sum(0)) / np.linalg.norm(terms.sum(0)))


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------- conformance


def test_check_objective_float64():
    for name, obj in M.make_objectives().items():
        report = check_objective(obj)
        assert report.passed, f"{name}:\n{report}"


@pytest.mark.parametrize("batch_size", [None, 64])
def test_check_objective_float32(batch_size):
    obj = M.mlp_objective(batch_size, dtype=np.float32)
    assert obj.dtype == np.float32 and obj.x0.dtype == np.float32
    report = check_objective(obj)  # default float32 tolerances (eps^(2/3))
    assert report.passed, str(report)
    x = obj.x0
    assert isinstance(obj.loss(x), float)
    assert obj.grad(x).dtype == np.float32
    assert obj.hvp(x, x).dtype == np.float32
    assert obj.hvp_many(x, np.stack([x, x])).dtype == np.float32


def test_objective_protocol_and_attributes(mlp):
    assert isinstance(mlp, pc.Objective)
    assert isinstance(mlp, pc.AbstractObjective)
    assert mlp.dim == 32 * 64 + 32 + 10 * 32 + 10 == mlp.layout.dim
    assert mlp.dtype == np.float64
    assert mlp.n_examples == N
    assert mlp.batch_sizes == (N,)
    assert M.mlp_objective(64).batch_sizes == (64, 64, 64, 64, 44)
    x0 = mlp.x0
    x0[:] = 0.0  # a copy: the objective's own point is untouched
    assert np.any(mlp.x0 != 0.0)
    assert "dim=2410" in repr(mlp)


# --------------------------------------------------------------------------- dense references


def test_loss_grad_hvp_match_dense_jax(mlp, dense, per_example):
    L, g, H = dense
    grads, hvps = per_example
    x0 = mlp.x0
    assert abs(mlp.loss(x0) - L) <= 2 * N_ADD * EPS64 * abs(L)  # positive terms: κ = 1

    tol_g = 2 * N_ADD * EPS64 * _kappa(grads(x0))
    assert tol_g <= 1e-10
    assert _rel(mlp.grad(x0), g) <= tol_g
    L2, g2 = mlp.loss_and_grad(x0)
    assert mlp.loss(x0) == L2
    np.testing.assert_array_equal(g2, mlp.grad(x0))

    rng = np.random.default_rng(1)
    for v in (rng.standard_normal(mlp.dim), np.eye(mlp.dim)[7]):
        Hv = H @ v
        # Both sides as above, plus the reference's own dim-term products H @ v.
        kappa_Hv = np.linalg.norm(np.abs(H) @ np.abs(v)) / np.linalg.norm(Hv)
        tol_h = 2 * N_ADD * EPS64 * _kappa(hvps(x0, v)) + mlp.dim * EPS64 * kappa_Hv
        assert tol_h <= 1e-10
        assert _rel(mlp.hvp(x0, v), Hv) <= tol_h
        assert _rel(mlp.hvp_many(x0, v[None])[0], Hv) <= tol_h


def test_lanczos_matches_eigvalsh_of_dense_hessian(mlp, dense):
    H = dense[2]
    # LAPACK's MRRR driver: the same reference as np.linalg.eigvalsh, 10x faster here.
    spectrum = scipy.linalg.eigh(H, eigvals_only=True, driver="evr")
    exact = spectrum[::-1][:5]
    norm = float(max(abs(spectrum[0]), abs(spectrum[-1])))  # ‖H‖₂ of a symmetric matrix
    tol = 1e-8
    res = pc.lanczos(mlp, k=5, tol=tol, rng=0)
    assert res.converged
    # Each Ritz value lies within its residual norm ‖Hy − θy‖ <= tol·‖H‖ of an eigenvalue.
    err = np.abs(res.eigenvalues - exact)
    assert np.all(err <= tol * norm), err / norm
    assert np.all(err <= res.residual_norms + mlp.dim * EPS64 * norm)


def test_batching_does_not_change_loss_grad_hvp(per_example):
    grads, hvps = per_example
    whole = M.mlp_objective()
    x0 = whole.x0
    v = np.random.default_rng(2).standard_normal(whole.dim)
    L, g, Hv = whole.loss(x0), whole.grad(x0), whole.hvp(x0, v)
    tol_g = 2 * N_ADD * EPS64 * _kappa(grads(x0))
    tol_h = 2 * N_ADD * EPS64 * _kappa(hvps(x0, v))
    assert max(tol_g, tol_h) <= 1e-12
    for size in (7, 64):
        obj = M.mlp_objective(size)
        assert sum(obj.batch_sizes) == N and obj.batch_sizes[-1] == N - size * (N // size)
        assert abs(obj.loss(x0) - L) <= 2 * N_ADD * EPS64 * L
        assert _rel(obj.grad(x0), g) <= tol_g
        assert _rel(obj.hvp(x0, v), Hv) <= tol_h
        assert _rel(obj.hvp_many(x0, v[None])[0], Hv) <= tol_h


def test_short_last_batch_is_not_overweighted():
    X, y = M.digits()
    params = M.init_mlp()
    batches = [(X[:290], y[:290]), (X[290:], y[290:])]
    obj = JaxObjective(M.mlp_loss, params, batches)
    by_batch = [float(M.mlp_loss(params, (jnp.asarray(a), jnp.asarray(b)))) for a, b in batches]
    # Rounding of the two-term weighted sum: a few eps of the (positive) loss.
    expected = (290 * by_batch[0] + 10 * by_batch[1]) / 300
    assert obj.loss(obj.x0) == pytest.approx(expected, rel=8 * EPS64)
    assert obj.loss(obj.x0) != pytest.approx(np.mean(by_batch), rel=1e-6)


# --------------------------------------------------------------------------- batched members


def _hvp_bound(per_example, x, v) -> float:
    """Relative bound on the difference of two evaluation orders of ``H(x) v``."""
    return 2 * N_ADD * EPS64 * _kappa(per_example[1](x, v))


def test_hvp_many_equals_stacked_hvp(per_example):
    obj = JaxObjective(M.mlp_loss, M.init_mlp(), M.split(*M.digits(), 64), hvp_chunk=4)
    x = obj.x0 + 0.01
    V = np.random.default_rng(3).standard_normal((11, obj.dim))  # chunks of 4, 4, 3 (pad 4)
    HV = obj.hvp_many(x, V)
    assert HV.shape == V.shape and HV.dtype == np.float64
    for v, hv in zip(V, HV, strict=True):
        assert _rel(hv, obj.hvp(x, v)) <= _hvp_bound(per_example, jnp.asarray(x), v)
    assert obj.hvp_many(x, V[:0]).shape == (0, obj.dim)


def test_hvp_is_bitwise_deterministic_and_cache_follows_the_point(mlp):
    rng = np.random.default_rng(4)
    x1 = mlp.x0
    x2 = x1 + 0.05 * rng.standard_normal(mlp.dim)
    v = rng.standard_normal(mlp.dim)
    a = mlp.hvp(x1, v)
    b = mlp.hvp(x2, v)
    np.testing.assert_array_equal(mlp.hvp(x1, v), a)
    np.testing.assert_array_equal(mlp.hvp(x2, v), b)
    fresh = M.mlp_objective()
    np.testing.assert_array_equal(fresh.hvp(x2, v), b)
    assert _rel(a, b) > 1e-3  # the two points really have different Hessians


def test_without_linearization_cache_same_products(per_example):
    """Above ``linearize_max_bytes`` every HVP recomputes the JVP of the gradient."""
    cached = M.mlp_objective(64)
    cached.linearize_max_bytes = 2**30  # force the cache (off by default on the CPU)
    direct = M.mlp_objective(64)
    direct.linearize_max_bytes = 0
    x = cached.x0
    rng = np.random.default_rng(5)
    V = rng.standard_normal((3, cached.dim))
    for v in V:
        assert _rel(direct.hvp(x, v), cached.hvp(x, v)) <= _hvp_bound(per_example, x, v)
    bound = max(_hvp_bound(per_example, x, v) for v in V)
    assert _rel(direct.hvp_many(x, V), cached.hvp_many(x, V)) <= bound
    assert direct._linearized is None and cached._linearized is not None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_in_span_holds_no_block_of_points_on_a_large_model(dtype):
    """Above 2¹⁶ parameters each point is vmapped alone and formed block by block: a call
    of 64 points holds one point on the host (it used to form the whole chunk, 64 points,
    and their float64 product with the basis), and its points are those of the default
    route, bit for bit."""
    import tracemalloc

    from probecore.backend import SPAN_ROWS_NUMBERS

    X, y = M.digits(40)
    obj = JaxObjective(M.mlp_loss, M.init_mlp(0, hidden=1200), (X, y), dtype=dtype)
    assert obj.dim > SPAN_ROWS_NUMBERS // 2
    rng = np.random.default_rng(1)
    basis = (rng.standard_normal((2, obj.dim)) / np.sqrt(obj.dim)).astype(dtype)
    coeffs = rng.uniform(-1, 1, size=(64, 2))
    coeffs[3] = 0.0
    x0 = obj.x0  # (a copy)
    obj.losses_in_span(x0, basis, coeffs[:2])  # compiled before measuring
    tracemalloc.start()
    try:
        got = obj.losses_in_span(x0, basis, coeffs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one point and span_point's two float64 blocks of 2**15 (with room for small
    # change); the chunk of 64 points alone was 64 of them
    assert peak < 2 * obj.dim * np.dtype(dtype).itemsize + 2 * 8 * 2**15
    # the points evaluated are the default route's, bit for bit
    seen, put = [], obj._params.put
    obj._params.put = lambda points: seen.append(points.copy()) or put(points)
    try:
        again = obj.losses_in_span(x0, basis, coeffs[:5])
    finally:
        del obj._params.put
    points = [pc.backend.span_point(x0, basis, c) for c in coeffs[:5]]
    np.testing.assert_array_equal(np.concatenate(seen), points)
    np.testing.assert_array_equal(again, got[:5])
    # losses: one vmapped lane against loss()'s own compilation, the same sums
    n_add = 40 + 64 + 1200 + 10
    rtol = 2 * n_add * (EPS64 if dtype == np.float64 else float(np.finfo(np.float32).eps))
    np.testing.assert_allclose(got[:5], [obj.loss(p) for p in points], rtol=rtol, atol=0)


def test_losses_in_span_equals_loss_at_the_points(mlp):
    rng = np.random.default_rng(6)
    x = mlp.x0
    basis = rng.standard_normal((2, mlp.dim)) / np.sqrt(mlp.dim)
    coeffs = rng.uniform(-1, 1, size=(70, 2))  # a chunk of 64 and a padded chunk of 6
    got = mlp.losses_in_span(x, basis, coeffs)
    assert got.shape == (70,) and got.dtype == np.float64
    direct = np.array([mlp.loss(x + (c @ basis).astype(mlp.dtype)) for c in coeffs])
    # The same sum of positive terms in another order (vmap): κ = 1.
    np.testing.assert_allclose(got, direct, rtol=2 * N_ADD * EPS64, atol=0)
    assert mlp.losses_in_span(x, basis, coeffs[:0]).shape == (0,)
    with pytest.raises(ValueError, match="coeffs"):
        mlp.losses_in_span(x, basis, coeffs[:, :1])


# --------------------------------------------------------------------------- metrics, subsets


def test_metrics_accuracy():
    X, y = M.digits()
    params = M.init_mlp()
    logits = np.asarray(M.mlp_logits(params, jnp.asarray(X)))
    expected = float(np.mean(np.argmax(logits, axis=1) == y))
    for obj in M.make_objectives().values():
        m = obj.metrics(obj.x0)
        assert set(m) == {"accuracy"} and isinstance(m["accuracy"], float)
        # Σ_b (n_b/N)·acc_b: rounding of a sum of at most 5 batch terms.
        assert m["accuracy"] == pytest.approx(expected, rel=0, abs=8 * EPS64)
    plain = JaxObjective(M.mlp_loss, params, (X, y))
    assert plain.metrics(plain.x0) == {}


def test_metrics_fn_must_return_a_dict_of_scalars():
    X, y = M.digits(50)
    obj = JaxObjective(M.mlp_loss, M.init_mlp(), (X, y), metrics_fn=lambda p, b: b[0][:, 0])
    with pytest.raises(TypeError, match="dict of scalar"):
        obj.metrics(obj.x0)
    obj = JaxObjective(M.mlp_loss, M.init_mlp(), (X, y), metrics_fn=lambda p, b: {"x": b[0]})
    with pytest.raises(TypeError, match="entry 'x'"):
        obj.metrics(obj.x0)


@pytest.mark.parametrize("batch_size", [None, 64])
def test_subset_equals_objective_built_on_the_subset(batch_size):
    X, y = M.digits()
    obj = M.mlp_objective(batch_size)
    idx = np.array([5, 250, 3, 3, 140, 299, 0, *range(100, 180)])  # unsorted, repeated
    sub = obj.subset(idx)
    size = obj.batch_sizes[0]
    ref = JaxObjective(M.mlp_loss, M.init_mlp(), M.split(X[idx], y[idx], size))
    assert sub.n_examples == idx.size and sub.batch_sizes == ref.batch_sizes
    assert sub.layout == obj.layout
    np.testing.assert_array_equal(sub.x0, obj.x0)
    x = obj.x0
    v = np.random.default_rng(7).standard_normal(obj.dim)
    # The same operations on the same data: equal up to the compiled programs' last bits.
    assert sub.loss(x) == pytest.approx(ref.loss(x), rel=4 * EPS64)
    assert _rel(sub.grad(x), ref.grad(x)) <= 4 * EPS64
    assert _rel(sub.hvp(x, v), ref.hvp(x, v)) <= 4 * EPS64
    assert sub.metrics(x)["accuracy"] == pytest.approx(
        ref_accuracy(X[idx], y[idx]), rel=0, abs=8 * EPS64
    )
    # The parent is untouched.
    assert obj.n_examples == N


def ref_accuracy(X, y) -> float:
    logits = np.asarray(M.mlp_logits(M.init_mlp(), jnp.asarray(X)))
    return float(np.mean(np.argmax(logits, axis=1) == y))


def test_subset_validates_indices(mlp):
    with pytest.raises(TypeError, match="integer"):
        mlp.subset(np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="flatnonzero"):
        mlp.subset(np.ones(N, dtype=bool))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        mlp.subset(np.array([], dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 299\]"):
        mlp.subset(np.array([0, 300]))


# --------------------------------------------------------------------------- data forms


def test_data_forms_give_the_same_objective():
    X, y = M.digits()
    params = M.init_mlp()
    batches = M.split(X, y, 64)
    ref = JaxObjective(M.mlp_loss, params, batches)
    x = ref.x0
    from_generator = JaxObjective(M.mlp_loss, params, (b for b in batches))
    assert from_generator.batch_sizes == ref.batch_sizes
    assert from_generator.loss(x) == ref.loss(x)
    as_tuple = JaxObjective(M.mlp_loss, params, tuple(batches))
    assert as_tuple.loss(x) == ref.loss(x)

    def dict_loss(p, batch):
        return M.mlp_loss(p, (batch["x"], batch["y"]))

    dicts = JaxObjective(dict_loss, params, [{"x": a, "y": b} for a, b in batches])
    assert dicts.loss(x) == ref.loss(x)
    single_dict = JaxObjective(dict_loss, params, {"x": X, "y": y})
    assert single_dict.n_examples == N and single_dict.batch_sizes == (N,)


def test_float_data_follow_dtype():
    X, y = M.digits(40)
    obj = JaxObjective(M.mlp_loss, M.init_mlp(), (X.astype(np.float32), y), dtype=np.float64)
    assert obj._batches[0][0].dtype == jnp.float64 and obj._batches[0][1].dtype == jnp.int64
    obj32 = JaxObjective(M.mlp_loss, M.init_mlp(), (X, y), dtype=np.float32)
    assert obj32._batches[0][0].dtype == jnp.float32


def test_pickle_roundtrip():
    obj = M.mlp_objective(64)
    again = pickle.loads(pickle.dumps(obj))
    assert isinstance(again, JaxObjective)
    assert again.layout == obj.layout and again.batch_sizes == obj.batch_sizes
    x = obj.x0
    assert again.loss(x) == obj.loss(x)
    np.testing.assert_array_equal(again.grad(x), obj.grad(x))
    assert again.metrics(x) == obj.metrics(x)


def test_to_params_inverts_the_flattening(mlp):
    params = mlp.to_params(mlp.x0)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(M.init_mlp()), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------- layouts


def _views_match(obj, params):
    """Each block of x0 holds exactly the leaf of the same name."""
    views = obj.layout.views(obj.x0)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = ".".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        if name in views:
            np.testing.assert_array_equal(views[name], np.asarray(leaf, dtype=obj.dtype))


def _sum_of_squares_loss(p, batch):
    leaves = jax.tree.leaves(p)
    return jnp.mean(batch[:, 0]) * sum(jnp.sum(jnp.asarray(a, jnp.float64) ** 2) for a in leaves)


BATCH = np.ones((4, 1))


def test_layout_plain_dict(mlp):
    layout = mlp.layout
    assert [b.name for b in layout] == ["layer1.b", "layer1.w", "layer2.b", "layer2.w"]
    # rank 1 "b" is "other" (no Flax name); "w" is (out, in), declared by M.MLP_LAYOUT
    assert [b.role for b in layout] == ["other", "weight", "other", "weight"]
    assert [b.filter_axis for b in layout] == [0, 0, 0, 0]
    assert [b.shape for b in layout] == [(32,), (32, 64), (10,), (10, 32)]
    assert [b.offset for b in layout] == [0, 32, 32 + 2048, 32 + 2048 + 10]
    _views_match(mlp, M.init_mlp())


def test_layout_flax_style_params():
    rng = np.random.default_rng(8)
    params = {
        "params": {
            "Dense_0": {"kernel": rng.standard_normal((3, 4)), "bias": rng.standard_normal(4)},
            "LayerNorm_0": {"scale": np.ones(4), "bias": np.zeros(4)},
            "Dense_1": {"kernel": rng.standard_normal((4, 2)), "bias": rng.standard_normal(2)},
        }
    }
    obj = JaxObjective(_sum_of_squares_loss, params, BATCH)
    got = [(b.name, b.shape, b.role, b.filter_axis) for b in obj.layout]
    assert got == [
        ("params.Dense_0.bias", (4,), "bias", 0),
        ("params.Dense_0.kernel", (3, 4), "weight", -1),
        ("params.Dense_1.bias", (2,), "bias", 0),
        ("params.Dense_1.kernel", (4, 2), "weight", -1),
        ("params.LayerNorm_0.bias", (4,), "norm", 0),
        ("params.LayerNorm_0.scale", (4,), "norm", 0),
    ]
    _views_match(obj, params)
    # JSON round trip keeps the filter axis.
    assert pc.Layout.from_json(obj.layout.to_json()) == obj.layout


@functools.partial(jax.tree_util.register_dataclass, data_fields=["weight", "bias"], meta_fields=[])
@dataclasses.dataclass
class Linear:
    """An Equinox-like linear layer: a registered dataclass, PyTorch orientation."""

    weight: jax.Array
    bias: jax.Array

    def __call__(self, x):
        return x @ self.weight.T + self.bias


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["layers", "norm"], meta_fields=["activation"]
)
@dataclasses.dataclass
class MLP:
    layers: list
    norm: Linear
    activation: object  # static (a meta field), as Equinox's static fields

    def __call__(self, x):
        for layer in self.layers:
            x = self.activation(layer(x))
        return self.norm(x)


def test_layout_equinox_like_module():
    rng = np.random.default_rng(9)

    def linear(n_out, n_in):
        return Linear(jnp.asarray(rng.standard_normal((n_out, n_in))), jnp.zeros(n_out))

    model = MLP([linear(5, 3), linear(4, 5)], linear(4, 4), jnp.tanh)
    x = rng.standard_normal((6, 3))
    target = rng.standard_normal((6, 4))

    def loss_fn(m, batch):
        inputs, targets = batch
        return jnp.mean((m(inputs) - targets) ** 2)

    # A registered dataclass has no known layer type: rank >= 2 is an inferred (..., in,
    # out) weight (warned about), "bias" a bias; the override declares (out, in).
    with pytest.warns(UserWarning, match=r"3 parameter block\(s\).*layers.0.weight") as w:
        JaxObjective(loss_fn, model, (x, target))
    assert w[0].filename == __file__
    obj = JaxObjective(loss_fn, model, (x, target), layout={"*.weight": 0})
    got = [(b.name, b.shape, b.role, b.filter_axis) for b in obj.layout]
    assert got == [
        ("layers.0.weight", (5, 3), "weight", 0),
        ("layers.0.bias", (5,), "bias", 0),
        ("layers.1.weight", (4, 5), "weight", 0),
        ("layers.1.bias", (4,), "bias", 0),
        ("norm.weight", (4, 4), "weight", 0),
        ("norm.bias", (4,), "bias", 0),
    ]
    assert check_objective(obj).passed
    rebuilt = obj.to_params(obj.x0)
    assert isinstance(rebuilt, MLP) and rebuilt.activation is jnp.tanh


def test_layout_names_roles_of_other_pytrees():
    params = {
        "layers": [{"w": np.ones((2, 3)), "b": np.ones(2)}, {"w": np.ones((1, 2))}],
        "ln_f": {"weight": np.ones(2)},
        "bn1": {"weight": np.ones(2)},
        "embedding": np.ones((3, 2, 2)),
        "gain": np.ones(()),
        "step": np.array(3),  # integer: held fixed, not a parameter
        "temperature": 2.0,  # Python number: held fixed
    }
    # No role from names but Flax's (kernel, bias, scale, embedding): by rank otherwise.
    with pytest.warns(UserWarning, match=r"2 parameter block\(s\).*layers.0.w, layers.1.w"):
        obj = JaxObjective(_sum_of_squares_loss, params, BATCH)
    got = {b.name: (b.role, b.filter_axis) for b in obj.layout}
    assert got == {
        "bn1.weight": ("other", 0),
        "embedding": ("weight", 0),
        "gain": ("other", 0),
        "layers.0.b": ("other", 0),
        "layers.0.w": ("weight", -1),
        "layers.1.w": ("weight", -1),
        "ln_f.weight": ("other", 0),
    }
    assert obj.dim == 2 + 1 + 6 + 2 + 2 + 2 + 12
    single = JaxObjective(lambda p, b: jnp.mean(b) * jnp.sum(p**2), np.ones(3), BATCH)
    assert [b.name for b in single.layout] == ["params"]


def test_non_parameter_leaves_reach_the_loss():
    params = {"w": jnp.ones(3), "scale": jnp.array(2), "fn": None}

    def loss_fn(p, batch):
        return p["scale"] * jnp.mean(batch) * jnp.sum(p["w"] ** 2)

    obj = JaxObjective(loss_fn, params, np.ones((5, 1)))
    assert obj.dim == 3 and [b.name for b in obj.layout] == ["w"]
    assert obj.loss(obj.x0) == 6.0
    np.testing.assert_array_equal(obj.grad(obj.x0), [4.0, 4.0, 4.0])


def test_colliding_names_stay_unique():
    params = {"a.b": np.ones(2), "a": {"b": np.ones(3)}}
    obj = JaxObjective(_sum_of_squares_loss, params, BATCH)
    names = [b.name for b in obj.layout]
    assert len(set(names)) == 2 and all("a" in n for n in names)


# --------------------------------------------------------------------------- plugin


def test_probecore_objective_dispatches_to_jax(data, dense):
    assert "jax" in pc.backend_names()
    obj = pc.objective(M.init_mlp(), M.mlp_loss, data)
    assert isinstance(obj, JaxObjective) and obj.dtype == np.float64
    top = pc.lanczos(obj, k=2, rng=0)
    assert top.converged
    trace = np.trace(dense[2])
    est = pc.hutchpp(obj, n_matvecs=60, rng=0)
    assert abs(est.estimate - trace) <= 5 * est.std_error + 1e-12 * abs(trace)
    density = pc.spectral_density(obj, n_probes=2, n_steps=20, rng=0)
    assert np.all(np.isfinite(density.density)) and density.dim == obj.dim

    obj32 = pc.objective(M.init_mlp(), M.mlp_loss, data, dtype="float32", hvp_chunk=8)
    assert obj32.dtype == np.float32 and obj32.hvp_chunk == 8


def test_plugin_rejects_unknown_options_and_missing_loss(data):
    with pytest.raises(TypeError, match="unknown options for the jax backend: dtpye"):
        pc.objective(M.init_mlp(), M.mlp_loss, data, dtpye=np.float32)
    with pytest.raises(TypeError, match=r"needs `loss_fn\(params, batch\)`"):
        pc.objective(M.init_mlp(), None, data)


def test_plugin_leaves_other_models_alone():
    for model in (
        {"w": np.arange(3)},  # no floating-point array
        {"w": [1.0, 2.0]},  # Python numbers only
        {"w": jnp.ones(3), "s": "text"},  # a leaf that is no array nor number
        {},
        object(),
        pc.analytic.Rosenbrock(3),
    ):
        assert probecore_make_objective(model, M.mlp_loss, None, {}) is None
    with pytest.raises(pc.NoBackendError, match="jax"):
        pc.objective({"w": [1.0, 2.0]}, M.mlp_loss, np.ones((2, 1)))
    # numpy leaves and Python numbers beside a float array are a JAX pytree now
    loss = lambda p, b: jnp.mean(b) * p["n"] * jnp.sum(p["w"] ** 2)  # noqa: E731
    for model in ({"w": np.ones(3), "n": 3}, {"w": jnp.ones(3), "n": 2.0}):
        assert isinstance(probecore_make_objective(model, loss, np.ones((2, 1)), {}), JaxObjective)


def test_plugin_does_not_import_jax():
    code = (
        "import sys, probecore, probecore_jax, probecore_jax.plugin as p;"
        "print(p.probecore_make_objective({'w': [1.0]}, None, None, {}));"
        "print('jax' in probecore.backend_names(), 'jax' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["None", "True", "False"]


# --------------------------------------------------------------------------- errors


def test_error_params_without_leaves():
    with pytest.raises(ValueError, match="`params` has no leaves"):
        JaxObjective(M.mlp_loss, {}, M.digits(10))
    with pytest.raises(ValueError, match="`params` has no leaves"):
        JaxObjective(M.mlp_loss, {"a": [], "b": None}, M.digits(10))


def test_error_params_without_floating_leaves():
    with pytest.raises(TypeError, match="no floating-point array leaves.*int"):
        JaxObjective(M.mlp_loss, {"n": jnp.arange(3)}, M.digits(10))
    with pytest.raises(TypeError, match="complex"):
        JaxObjective(M.mlp_loss, {"z": jnp.ones(2, jnp.complex128)}, M.digits(10))


def test_error_loss_not_scalar():
    def per_example_loss(p, batch):
        return jnp.sum(batch[0] @ p["layer1"]["w"].T, axis=1)

    with pytest.raises(TypeError, match=r"scalar; it returned shape \(10,\)"):
        JaxObjective(per_example_loss, M.init_mlp(), M.digits(10))
    with pytest.raises(TypeError, match="floating-point scalar"):
        JaxObjective(lambda p, b: jnp.sum(b[1]), M.init_mlp(), M.digits(10))


def test_error_batches_of_mismatched_length():
    X, y = M.digits(30)
    with pytest.raises(ValueError, match=r"batch 0 .*shapes \(30, 64\), \(29,\)"):
        JaxObjective(M.mlp_loss, M.init_mlp(), (X, y[:-1]))
    batches = [(X[:10], y[:10]), (X[10:20], y[10:19])]
    with pytest.raises(ValueError, match=r"batch 1 .*shapes \(10, 64\), \(9,\)"):
        JaxObjective(M.mlp_loss, M.init_mlp(), batches)
    with pytest.raises(ValueError, match="batch 1 .*structure"):
        JaxObjective(M.mlp_loss, M.init_mlp(), [(X, y), (X, y, y)])
    with pytest.raises(ValueError, match="no examples"):
        JaxObjective(M.mlp_loss, M.init_mlp(), (X[:0], y[:0]))
    with pytest.raises(ValueError, match="leading dimension"):
        JaxObjective(M.mlp_loss, M.init_mlp(), (X, np.float64(1.0)))
    with pytest.raises(TypeError, match="`data` is required"):
        JaxObjective(M.mlp_loss, M.init_mlp(), None)
    with pytest.raises(ValueError, match="`data` is empty"):
        JaxObjective(M.mlp_loss, M.init_mlp(), [])
    with pytest.raises(TypeError, match="leaf of type str"):
        JaxObjective(M.mlp_loss, M.init_mlp(), [("a", "b")])


def test_error_non_finite_data_is_named():
    X, y = M.digits(30)
    X = np.asarray(X).copy()
    X[4, 9] = np.inf
    with pytest.raises(ValueError, match=r"batch 0 of `data` holds 1 non-finite .* index \(4, 9\)"):
        JaxObjective(M.mlp_loss, M.init_mlp(), (X, y))
    with pytest.raises(ValueError, match=r"batch 1 of `data` holds 1 non-finite"):
        JaxObjective(M.mlp_loss, M.init_mlp(), [(X[10:20], y[10:20]), (X[:10], y[:10])])


def test_error_non_finite_loss_at_x0():
    with pytest.raises(ValueError, match=r"loss at the model's parameters \(x0\) is inf"):
        JaxObjective(lambda p, b: M.mlp_loss(p, b) / 0.0, M.init_mlp(), M.digits(10))
    with pytest.raises(ValueError, match=r"loss at the model's parameters \(x0\) is nan"):
        JaxObjective(lambda p, b: jnp.log(-M.mlp_loss(p, b)), M.init_mlp(), M.digits(10))
    params = M.init_mlp()
    params["layer2"]["b"] = params["layer2"]["b"].at[0].set(jnp.nan)
    with pytest.raises(ValueError, match="`params` must be finite; leaf layer2.b"):
        JaxObjective(M.mlp_loss, params, M.digits(10))


def test_error_non_deterministic_loss():
    counter = itertools.count()

    def noise():
        return np.asarray(1e-9 * next(counter), dtype=np.float64)

    def noisy_loss(p, batch):
        shape = jax.ShapeDtypeStruct((), jnp.float64)
        return M.mlp_loss(p, batch) + jax.pure_callback(noise, shape)

    with pytest.raises(ValueError, match="not deterministic"):
        JaxObjective(noisy_loss, M.init_mlp(), M.digits(10))
    JaxObjective(noisy_loss, M.init_mlp(), M.digits(10), check_determinism=False)


def test_error_dtypes():
    X, y = M.digits(10)
    bf16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), M.init_mlp())
    with pytest.raises(ValueError, match="bfloat16.*float32 and float64"):
        JaxObjective(M.mlp_loss, bf16, (X, y))
    assert JaxObjective(M.mlp_loss, bf16, (X, y), dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="`dtype` must be float32 or float64"):
        JaxObjective(M.mlp_loss, M.init_mlp(), (X, y), dtype=np.float16)


def test_error_float64_needs_x64():
    params = jax.tree.map(np.asarray, M.init_mlp())
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="64-bit mode"):
            JaxObjective(M.mlp_loss, params, M.digits(10))
    finally:
        jax.config.update("jax_enable_x64", True)


def test_error_arguments():
    X, y = M.digits(10)
    with pytest.raises(TypeError, match="`loss_fn` must be a callable"):
        JaxObjective("mse", M.init_mlp(), (X, y))
    with pytest.raises(TypeError, match="`metrics_fn` must be None or a callable"):
        JaxObjective(M.mlp_loss, M.init_mlp(), (X, y), metrics_fn={"acc": 1})
    with pytest.raises(ValueError, match="`hvp_chunk` must be >= 1"):
        JaxObjective(M.mlp_loss, M.init_mlp(), (X, y), hvp_chunk=0)
    with pytest.raises(TypeError, match="`check_determinism` must be True or False"):
        JaxObjective(M.mlp_loss, M.init_mlp(), (X, y), check_determinism="yes")


def test_error_vectors(mlp):
    x = mlp.x0
    with pytest.raises(ValueError, match=r"`x` must have shape \(2410,\)"):
        mlp.loss(x[:-1])
    with pytest.raises(TypeError, match="`x` must have a floating dtype"):
        mlp.grad(np.zeros(mlp.dim, dtype=int))
    bad = x.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="`x` must be finite"):
        mlp.hvp(bad, x)
    with pytest.raises(ValueError, match="`v` must have shape"):
        mlp.hvp(x, x[:5])
    with pytest.raises(ValueError, match=r"`V` must have shape \(k, 2410\)"):
        mlp.hvp_many(x, x[None, :5])
    with pytest.raises(TypeError, match="`V` must be a 2-D numpy array"):
        mlp.hvp_many(x, [x])
    with pytest.raises(ValueError, match="`origin` must have shape"):
        mlp.losses_in_span(x[:3], x[None], np.zeros((1, 1)))
    # A float32 x is cast to the objective's float64.
    assert mlp.loss(x.astype(np.float32)) == mlp.loss(x.astype(np.float32).astype(np.float64))


def test_threads_evaluate_each_at_its_own_point(mlp):
    """JAX objectives keep no mutable point (pure functions, a linearization cache swapped
    atomically): a thread-pool executor gives the serial plane and HVPs bit for bit."""
    from concurrent.futures import ThreadPoolExecutor

    D = pc.random_directions(mlp, k=2, rng=0)
    axis = np.linspace(-2.0, 2.0, 9)
    serial = pc.plane(mlp, D, alphas=axis, betas=axis, chunk_size=2, progress=False).losses
    rng = np.random.default_rng(1)
    xs = [mlp.x0 + 0.05 * rng.standard_normal(mlp.dim) for _ in range(6)]
    v = rng.standard_normal(mlp.dim)
    with ThreadPoolExecutor(4) as pool:
        threaded = pc.plane(
            mlp, D, alphas=axis, betas=axis, chunk_size=2, executor=pool, progress=False
        ).losses
        together = list(pool.map(lambda x: mlp.hvp(x, v), xs))
    np.testing.assert_array_equal(threaded, serial)
    for x, hv in zip(xs, together, strict=True):
        np.testing.assert_array_equal(hv, mlp.hvp(x, v))
