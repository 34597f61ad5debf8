"""Landscape probes on JAX objectives: Flax-style kernels, direct evaluation, factories."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
from probecore_jax import JaxObjective

import probecore as pc
from probecore.testing import dense_hessian

from . import models_jax as M


def _flax_like():
    rng = np.random.default_rng(8)
    params = {
        "params": {
            "Dense_0": {"kernel": rng.standard_normal((64, 12)), "bias": rng.standard_normal(12)},
            "LayerNorm_0": {"scale": np.ones(12), "bias": np.zeros(12)},
            "Dense_1": {"kernel": rng.standard_normal((12, 10)), "bias": rng.standard_normal(10)},
        }
    }

    def loss(p, batch):
        x, y = batch
        q = p["params"]
        h = jnp.tanh(x @ q["Dense_0"]["kernel"] + q["Dense_0"]["bias"])
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        h = (h - mu) / jnp.sqrt(var + 1e-5) * q["LayerNorm_0"]["scale"] + q["LayerNorm_0"]["bias"]
        logits = h @ q["Dense_1"]["kernel"] + q["Dense_1"]["bias"]
        picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

    X, y = M.digits(100)
    return JaxObjective(loss, params, (X, y)), loss, params, (X, y)


def test_filter_normalization_on_flax_kernels_uses_the_last_axis():
    obj, *_ = _flax_like()
    d = pc.random_directions(obj, k=2, rng=0)
    for row in d.vectors:
        for b in obj.layout:
            if b.role == "weight":
                assert b.filter_axis == -1
                got = np.linalg.norm(row[b.slice].reshape(b.shape), axis=0)
                want = np.linalg.norm(obj.x0[b.slice].reshape(b.shape), axis=0)
                np.testing.assert_allclose(got, want, rtol=1e-12)
            else:
                assert np.all(row[b.slice] == 0), b.name


def test_plane_matches_direct_jax_evaluation():
    obj, loss, params, batch = _flax_like()
    d = pc.random_directions(obj, k=2, rng=3)
    a, b = np.linspace(-1, 1, 4), np.linspace(-1, 1, 3)
    r = pc.plane(obj, d, alphas=a, betas=b, chunk_size=5)
    _, unravel = jax.flatten_util.ravel_pytree(params)
    for i, bj in enumerate(b):
        for j, ai in enumerate(a):
            point = unravel(jnp.asarray(obj.x0 + ai * d.vectors[0] + bj * d.vectors[1]))
            want = float(loss(point, batch))
            np.testing.assert_allclose(r.losses[i, j], want, rtol=1e-12)


def _make_mlp_objective():
    return M.mlp_objective()


def test_objective_factory_on_workers_equals_serial():
    obj = M.mlp_objective()
    d = pc.random_directions(obj, k=2, rng=0)
    grid = dict(alphas=np.linspace(-1, 1, 5), betas=np.linspace(-1, 1, 5), chunk_size=7)
    serial = pc.plane(obj, d, **grid)
    with ThreadPoolExecutor(2) as ex:
        par = pc.plane(obj, d, executor=ex, objective_factory=_make_mlp_objective, **grid)
    np.testing.assert_allclose(par.losses, serial.losses, rtol=1e-13)
    rays = pc.rays(obj, n_rays=300, rng=0)
    trace = np.trace(dense_hessian(obj)) / obj.dim
    assert rays.mean_ci[0] - 1e-6 <= trace <= rays.mean_ci[1] + 1e-6


def test_hessian_rays_equal_the_dense_rayleigh_quotients():
    obj = M.mlp_objective()
    r = pc.rays(obj, n_rays=20, rng=2, curvature="hessian")
    D = pc.ray_directions(2, range(20), obj.dim)
    want = np.einsum("ij,jk,ik->i", D, dense_hessian(obj), D)
    np.testing.assert_allclose(r.kappa, want, rtol=1e-10, atol=1e-14)
    assert (r.n_hvps, r.n_loss_evals) == (20, 1)
