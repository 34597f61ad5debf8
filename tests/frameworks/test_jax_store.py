"""Stored runs of JAX objectives know their data, loss function, parameters and precision."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from probecore_jax import JaxObjective

import probecore as pc

from . import models_jax as M

# The MLP keeps (out, in) weights in a plain dict, whose filter axis the backend infers and
# warns about; the tests whose numbers depend on it pass layout=M.MLP_LAYOUT.
pytestmark = pytest.mark.filterwarnings("ignore:probecore-jax inferred the layout:UserWarning")

pytest.importorskip("zarr")


def _mse_loss(params, batch):
    x, y = batch
    onehot = jnp.eye(10)[y]
    return jnp.mean((M.mlp_logits(params, x) - onehot) ** 2)


def test_resume_with_other_data_loss_parameters_or_precision_is_refused(tmp_path):
    X, y = M.digits(120)
    f = JaxObjective(M.mlp_loss, M.init_mlp(0), (X, y))
    path = tmp_path / "rays"
    first = pc.rays(f, n_rays=8, rng=0, chunk_size=3, store=path)
    X2 = X.copy()
    X2[5, 9] += 0.25
    others = {
        r"data \(digest\)": JaxObjective(M.mlp_loss, M.init_mlp(0), (X2, y)),
        "loss function": JaxObjective(_mse_loss, M.init_mlp(0), (X, y)),
        r"precision \(dtype\)": JaxObjective(M.mlp_loss, M.init_mlp(0), (X, y), dtype=np.float32),
    }
    for what, other in others.items():
        with pytest.raises(ValueError, match=f"another objective: its {what}"):
            pc.rays(other, n_rays=8, rng=0, chunk_size=3, store=path)
    again = pc.rays(
        JaxObjective(M.mlp_loss, M.init_mlp(0), (X, y)), n_rays=8, rng=0, chunk_size=3, store=path
    )
    assert again.n_loss_evals == 1 and np.array_equal(again.kappa, first.kappa)


def test_a_subset_has_its_own_data_digest():
    f = M.mlp_objective(n=60)
    assert f.subset(np.arange(30)).fingerprint()["data"] != f.fingerprint()["data"]
    assert f.subset(np.arange(60)).fingerprint()["data"] == f.fingerprint()["data"]


def _activation():
    def act(x):  # a new function object (another address) on every call
        return jnp.tanh(x)

    return act


def test_functions_in_static_pytree_data_do_not_change_the_fingerprint():
    import jax

    @jax.tree_util.register_pytree_node_class
    class Layer:
        def __init__(self, w, act):
            self.w, self.act = w, act

        def tree_flatten(self):
            return (self.w,), (self.act,)

        @classmethod
        def tree_unflatten(cls, aux, children):
            return cls(children[0], *aux)

    X, y = M.digits(40)

    def loss(layer, batch):
        x, t = batch
        logits = layer.act(x @ layer.w)
        return jnp.mean((logits - jnp.eye(10)[t]) ** 2)

    w = np.random.default_rng(0).standard_normal((64, 10)) * 0.1
    a = JaxObjective(loss, Layer(jnp.asarray(w), _activation()), (X, y)).fingerprint()
    b = JaxObjective(loss, Layer(jnp.asarray(w), _activation()), (X, y)).fingerprint()
    assert a == b  # as in a new process, where the function has another address
