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
OPTIONS = ("dtype", "metrics_fn", "hvp_chunk", "check_determinism")


def _is_jax_pytree(model: Any) -> bool:
    """Whether ``model`` is a non-empty pytree whose leaves are all ``jax.Array``."""
    jax = sys.modules.get("jax")
    if jax is None:  # JAX never imported: no object can be a JAX array
        return False
    try:
        leaves = jax.tree_util.tree_leaves(model)
    except Exception:  # a broken custom pytree of someone else's: not ours to judge
        return False
    return bool(leaves) and all(isinstance(leaf, jax.Array) for leaf in leaves)


@hookimpl
def probecore_make_objective(
    model: Any, loss_fn: Any, data: Any, options: Mapping[str, Any]
) -> Any:
    """A :class:`~probecore_jax.JaxObjective` for a JAX parameter pytree, else None.

    Parameters
    ----------
    model : pytree
        The parameters (every leaf a ``jax.Array``); anything else is left to other
        backends.
    loss_fn : callable
        ``loss_fn(params, batch)``, the mean loss over a batch.
    data : batch or iterable of batches
        See :class:`~probecore_jax.JaxObjective`.
    options : Mapping[str, Any]
        ``dtype``, ``metrics_fn``, ``hvp_chunk``, ``check_determinism``.

    Returns
    -------
    JaxObjective or None
    """
    if not _is_jax_pytree(model):
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
