"""Small JAX models for the backend tests (float64; the conftest turns on jax_enable_x64).

The MLP keeps its parameters as a plain dict in PyTorch's orientation
(``w`` has shape ``(out, in)``, the layer computes ``x @ w.T + b``), so that its layout
reads like the torch backend's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from probecore_jax import JaxObjective

N_EXAMPLES = 300
HIDDEN = 32
#: The MLP's weights are (out, in): filter axis 0 (the backend would infer -1 and warn).
MLP_LAYOUT = {"*.w": 0}


def digits(n: int | None = N_EXAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` scikit-learn digits (all 1797 for None), inputs scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    if n is not None:
        X, y = X[:n], y[:n]
    return X / 16.0, y.astype(np.int64)


def init_mlp(seed: int = 0, hidden: int = HIDDEN, n_in: int = 64, n_out: int = 10) -> dict:
    """A 2-layer MLP's parameters, ``{"layer1": {"w", "b"}, "layer2": {"w", "b"}}``.

    Biases are random too, so that no block of the Hessian is special at the start.
    """
    rng = np.random.default_rng(seed)
    layers = {
        "layer1": {
            "w": rng.standard_normal((hidden, n_in)) / np.sqrt(n_in),
            "b": 0.1 * rng.standard_normal(hidden),
        },
        "layer2": {
            "w": rng.standard_normal((n_out, hidden)) / np.sqrt(hidden),
            "b": 0.1 * rng.standard_normal(n_out),
        },
    }
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), layers)


def mlp_logits(params: dict, x: jax.Array) -> jax.Array:
    hidden = jnp.tanh(x @ params["layer1"]["w"].T + params["layer1"]["b"])
    return hidden @ params["layer2"]["w"].T + params["layer2"]["b"]


def mlp_loss(params: dict, batch: tuple) -> jax.Array:
    """Mean softmax cross-entropy over the batch."""
    x, y = batch
    logits = mlp_logits(params, x)
    picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)


def mlp_metrics(params: dict, batch: tuple) -> dict:
    x, y = batch
    hits = jnp.argmax(mlp_logits(params, x), axis=1) == y
    return {"accuracy": jnp.mean(hits.astype(x.dtype))}


def split(X: np.ndarray, y: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(X, y)`` in consecutive batches of ``size`` (the last one shorter)."""
    return [(X[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def mlp_objective(
    batch_size: int | None = None, *, dtype=np.float64, n: int | None = N_EXAMPLES, seed=0
) -> JaxObjective:
    """The MLP on ``n`` digits, in one batch or in batches of ``batch_size``."""
    X, y = digits(n)
    data = (X, y) if batch_size is None else split(X, y, batch_size)
    return JaxObjective(
        mlp_loss, init_mlp(seed), data, dtype=dtype, metrics_fn=mlp_metrics, layout=MLP_LAYOUT
    )


def make_objectives() -> dict[str, JaxObjective]:
    """Small float64 JAX objectives by name (dim 2,410)."""
    return {"mlp": mlp_objective(), "mlp_batched": mlp_objective(64)}
