"""The probecore hook implementation of the JAX backend (entry point ``jax``).

Loaded by probecore's plugin manager, which must not import JAX: this module imports it
only when a model could be a JAX pytree, which is never the case if JAX was not imported.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from probecore.backend import hookimpl

__all__ = ["OPTIONS", "probecore_make_objective"]

#: Keyword options of :func:`probecore.objective` that the JAX backend understands.
OPTIONS = (
    "dtype",
    "metrics_fn",
    "hvp_chunk",
    "check_determinism",
    "layout",
    "device",
    "stream",
    "devices",
)


def _is_jax_model(model: Any) -> bool:
    """Whether ``model`` is a JAX model this backend takes.

    An Equinox module holding a floating-point array, a Flax NNX module or ``State``
    (Flax and Equinox are looked up in ``sys.modules``, never imported), or a pytree whose
    leaves are all jax arrays, numpy arrays or Python numbers, at least one of them a
    floating-point array. Never when JAX was not imported.
    """
    jax = sys.modules.get("jax")
    if jax is None:  # JAX never imported: no object can be a JAX model
        return False
    import numpy as np

    def is_float_array(leaf: Any) -> bool:
        return isinstance(leaf, jax.Array | np.ndarray | np.generic) and bool(
            jax.numpy.issubdtype(leaf.dtype, jax.numpy.floating)  # bfloat16 included
        )

    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(model, eqx.Module):
        try:
            return any(is_float_array(leaf) for leaf in jax.tree_util.tree_leaves(model))
        except Exception:  # pragma: no cover - a broken module: not ours to judge
            return False
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module | nnx.State):
        return True
    try:
        leaves = jax.tree_util.tree_leaves(model)
    except Exception:  # a broken custom pytree of someone else's: not ours to judge
        return False
    allowed = (jax.Array, np.ndarray, np.generic, bool, int, float)
    return all(isinstance(leaf, allowed) for leaf in leaves) and any(
        is_float_array(leaf) for leaf in leaves
    )


@hookimpl
def probecore_make_objective(
    model: Any, loss_fn: Any, data: Any, options: Mapping[str, Any]
) -> Any:
    """A :class:`~probecore_jax.JaxObjective` for a JAX model, else None.

    Parameters
    ----------
    model : pytree, Equinox module, Flax NNX module or NNX State
        An Equinox module, a Flax NNX module or ``State``, or a pytree of jax/numpy
        arrays and Python numbers holding at least one floating-point array (Flax linen
        variables included); anything else is left to other backends.
    loss_fn : callable
        ``loss_fn(params, batch)``, the mean loss over a batch.
    data : batch or iterable of batches
        See :class:`~probecore_jax.JaxObjective`.
    options : Mapping[str, Any]
        ``dtype``, ``metrics_fn``, ``hvp_chunk``, ``check_determinism``, ``layout``,
        ``device``, ``stream``, ``devices``.

    Returns
    -------
    JaxObjective or None
    """
    if not _is_jax_model(model):
        return None
    if not callable(loss_fn):
        raise TypeError(
            "the jax backend needs `loss_fn(params, batch)` returning the mean loss over a "
            f"batch; got {type(loss_fn).__name__}. Call probecore.objective(params, loss_fn, "
            "data)."
        )
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown options for the jax backend: {', '.join(unknown)}; it takes "
            f"{', '.join(OPTIONS)}."
        )
    from probecore_jax._objective import JaxObjective

    return JaxObjective(loss_fn, model, data, **dict(options))
