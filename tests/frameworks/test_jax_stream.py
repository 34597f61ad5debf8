"""Streamed data (``stream=True``): the same objective, one batch on the device at a time."""

from __future__ import annotations

import pickle

import jax.numpy as jnp
import numpy as np
import pytest
from probecore_jax import JaxObjective

import probecore as pc

from . import models_jax as M


class Loader:
    """A re-iterable loader: every ``iter()`` starts a new pass over host (numpy) batches."""

    def __init__(self, X, y, size):
        self.X, self.y, self.size = X, y, size
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        for i in range(0, len(self.y), self.size):
            yield self.X[i : i + self.size], self.y[i : i + self.size]


def _pair(size=64):
    X, y = M.digits()
    kw = dict(metrics_fn=M.mlp_metrics, layout=M.MLP_LAYOUT)
    held = JaxObjective(M.mlp_loss, M.init_mlp(0), M.split(X, y, size), **kw)
    loader = Loader(X, y, size)
    streamed = JaxObjective(M.mlp_loss, M.init_mlp(0), loader, stream=True, **kw)
    return held, streamed, loader


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


def test_streaming_equals_the_held_data_to_1e_12():
    held, streamed, loader = _pair()
    assert streamed.n_examples == held.n_examples and streamed.batch_sizes == held.batch_sizes
    assert streamed._batches is None  # nothing but the first batch is kept
    rng = np.random.default_rng(0)
    x = held.x0 + 0.01 * rng.standard_normal(held.dim)
    V = rng.standard_normal((3, held.dim))
    assert abs(streamed.loss(x) - held.loss(x)) <= 1e-12 * abs(held.loss(x))
    assert _rel(streamed.grad(x), held.grad(x)) <= 1e-12
    assert _rel(streamed.hvp(x, V[0]), held.hvp(x, V[0])) <= 1e-12
    assert _rel(streamed.hvp_many(x, V), held.hvp_many(x, V)) <= 1e-12
    assert streamed.metrics(x) == pytest.approx(held.metrics(x), rel=1e-12)
    top_h, top_s = pc.lanczos(held, k=3, rng=0), pc.lanczos(streamed, k=3, rng=0)
    np.testing.assert_allclose(top_s.eigenvalues, top_h.eigenvalues, rtol=1e-12)
    assert streamed.fingerprint()["data"] == held.fingerprint()["data"]
    passes = loader.passes
    streamed.loss(x)
    assert loader.passes == passes + 1  # read again on every evaluation


def test_a_streamed_subset_and_pickle():
    held, streamed, _ = _pair()
    idx = np.array([3, 150, 7, 299])
    sub_h, sub_s = held.subset(idx), streamed.subset(idx)
    assert sub_s.loss(sub_s.x0) == pytest.approx(sub_h.loss(sub_h.x0), rel=1e-13)
    back = pickle.loads(pickle.dumps(streamed))
    assert back._stream is not None and back.loss(back.x0) == streamed.loss(streamed.x0)


def test_streaming_refuses_what_it_cannot_read_twice():
    X, y = M.digits()
    gen = ((X[i : i + 50], y[i : i + 50]) for i in range(0, 300, 50))
    with pytest.raises(TypeError, match="iterable more than once.*generator"):
        JaxObjective(M.mlp_loss, M.init_mlp(0), gen, stream=True, layout=M.MLP_LAYOUT)
    with pytest.raises(TypeError, match="stream=True needs `data` to be an iterable"):
        JaxObjective(
            M.mlp_loss,
            M.init_mlp(0),
            (jnp.asarray(X), jnp.asarray(y)),
            stream=True,
            layout=M.MLP_LAYOUT,
        )
    loader = Loader(X, y, 60)
    obj = JaxObjective(M.mlp_loss, M.init_mlp(0), loader, stream=True, layout=M.MLP_LAYOUT)
    loader.size = 70  # the data changed under the objective
    with pytest.raises(RuntimeError, match="changed between passes"):
        obj.loss(obj.x0)
