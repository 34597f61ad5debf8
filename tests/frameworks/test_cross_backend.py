"""The same MLP in PyTorch and in JAX gives the same loss, gradient and HVP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch.nn import functional as F

import probecore as pc

from .models_torch import digits, mlp

# torch block -> JAX block for the same tensor (both in PyTorch's (out, in) orientation)
BLOCKS = {
    "0.weight": "layer1.w",
    "0.bias": "layer1.b",
    "2.weight": "layer2.w",
    "2.bias": "layer2.b",
}


def _jax_loss(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["layer1"]["w"].T + params["layer1"]["b"])
    logits = h @ params["layer2"]["w"].T + params["layer2"]["b"]
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _pair():
    X, y = digits(500)
    model = mlp(hidden=24, seed=3).eval()
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    params = {
        "layer1": {"w": jnp.asarray(sd["0.weight"]), "b": jnp.asarray(sd["0.bias"])},
        "layer2": {"w": jnp.asarray(sd["2.weight"]), "b": jnp.asarray(sd["2.bias"])},
    }
    t_obj = pc.objective(model, F.cross_entropy, (X, y), batch_size=128)
    j_data = (jnp.asarray(X.numpy()), jnp.asarray(y.numpy()))
    j_obj = pc.objective(params, _jax_loss, j_data, layout={"*.w": 0})  # (out, in) weights
    return t_obj, j_obj


def _perm(t_obj, j_obj):
    """Index array p with torch_vector = jax_vector[p]."""
    p = np.empty(t_obj.dim, dtype=np.int64)
    for t_name, j_name in BLOCKS.items():
        tb, jb = t_obj.layout[t_name], j_obj.layout[j_name]
        assert tb.shape == jb.shape
        p[tb.slice] = np.arange(jb.offset, jb.offset + jb.size)
    return p


def test_same_mlp_same_numbers_in_torch_and_jax():
    t_obj, j_obj = _pair()
    assert t_obj.dim == j_obj.dim and t_obj.dtype == j_obj.dtype == np.float64
    p = _perm(t_obj, j_obj)
    np.testing.assert_array_equal(t_obj.x0, j_obj.x0[p])
    rng = np.random.default_rng(0)
    x_t = t_obj.x0 + 0.05 * rng.standard_normal(t_obj.dim)
    x_j = np.empty_like(x_t)
    x_j[p] = x_t
    v_t = rng.standard_normal(t_obj.dim)
    v_j = np.empty_like(v_t)
    v_j[p] = v_t
    # Two float64 implementations of the same sums: agreement to ~1e-14, asserted at 1e-10.
    assert abs(t_obj.loss(x_t) - j_obj.loss(x_j)) <= 1e-10 * abs(t_obj.loss(x_t))
    g_t, g_j = t_obj.grad(x_t), j_obj.grad(x_j)[p]
    assert np.linalg.norm(g_t - g_j) <= 1e-10 * np.linalg.norm(g_t)
    h_t, h_j = t_obj.hvp(x_t, v_t), j_obj.hvp(x_j, v_j)[p]
    assert np.linalg.norm(h_t - h_j) <= 1e-10 * np.linalg.norm(h_t)


def test_same_spectrum_in_torch_and_jax():
    t_obj, j_obj = _pair()
    a = pc.lanczos(t_obj, k=4, rng=0).eigenvalues
    b = pc.lanczos(j_obj, k=4, rng=0).eigenvalues
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-8 * abs(a[0]))
    assert torch.get_default_dtype() == torch.float64 and jax.config.jax_enable_x64


def test_same_seed_same_filter_normalized_direction_in_torch_and_jax():
    t_obj, j_obj = _pair()
    p = _perm(t_obj, j_obj)
    for kwargs in ({}, {"normalization": "none", "bias": "weights"}, {"normalization": "layer"}):
        dt = pc.random_directions(t_obj, k=2, rng=11, **kwargs).vectors
        dj = pc.random_directions(j_obj, k=2, rng=11, **kwargs).vectors
        np.testing.assert_array_equal(dt, dj[:, p])
    # so the same plane comes out of both frameworks
    grid = dict(alphas=np.linspace(-1, 1, 3), betas=np.linspace(-1, 1, 3))
    a = pc.plane(t_obj, pc.random_directions(t_obj, k=2, rng=2), **grid).losses
    b = pc.plane(j_obj, pc.random_directions(j_obj, k=2, rng=2), **grid).losses
    np.testing.assert_allclose(a, b, rtol=1e-10)
