"""probecore-jax: the JAX backend of probecore.

Turns a JAX loss ``loss_fn(params, batch)`` over a parameter pytree and a data set into a
:class:`probecore.Objective` (:class:`JaxObjective`), and registers itself in the
entry-point group ``probecore`` so that ``probecore.objective(params, loss_fn, data)``
finds it.

Importing this package does not import JAX (probecore builds its plugin manager without
importing any framework); :class:`JaxObjective` and :func:`param_layout` import it on
first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probecore_jax._version import __version__

if TYPE_CHECKING:
    from probecore_jax._objective import JaxObjective, param_layout

__all__ = ["JaxObjective", "__version__", "param_layout"]


def __getattr__(name: str) -> Any:
    if name in ("JaxObjective", "param_layout"):
        from probecore_jax import _objective

        return getattr(_objective, name)
    raise AttributeError(f"module 'probecore_jax' has no attribute {name!r}")
