"""An example target for the probecore CLI: an MLP written as a plain JAX function.

    probecore sharpness examples/jax_digits.py:mlp --eps 1e-3

Returns the parameter pytree, ``loss_fn(params, batch)`` giving the batch mean, the data,
and the layout of the weights (``x @ W``: output units on the last axis, which a plain
pytree cannot tell); ``probecore.objective`` picks the JAX backend.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits


def loss_fn(params, batch):
    """Mean softmax cross-entropy of the MLP over a batch."""
    x, y = batch
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    logits = h @ params["w2"] + params["b2"]
    picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)


def mlp():
    """An MLP 64-32-10 at a fixed random initialization, float32, on 1,347 digits."""
    X, y = load_digits(return_X_y=True)
    X, y = (X[:1347] / 16.0).astype(np.float32), y[:1347].astype(np.int32)
    rng = np.random.default_rng(0)
    params = {  # leaves must be jax arrays: that is how the JAX backend knows the model
        "w1": jnp.asarray(rng.standard_normal((64, 32)) / 8.0, jnp.float32),
        "b1": jnp.zeros(32, jnp.float32),
        "w2": jnp.asarray(rng.standard_normal((32, 10)) / np.sqrt(32), jnp.float32),
        "b2": jnp.zeros(10, jnp.float32),
    }
    return {
        "model": params,
        "loss_fn": loss_fn,
        "data": (X, y),
        "options": {"layout": {"w1": -1, "w2": -1}},  # (in, out) weights: x @ W
    }
