"""Hook specifications for probecore backends.

A backend is any object or module with a function marked ``@probecore.plugins.hookimpl``
implementing one of these hooks, registered in the entry-point group ``probecore``::

    # pyproject.toml of your backend
    [project.entry-points.probecore]
    mybackend = "probecore_mybackend.plugin"

The built-in backends (``probecore-torch``, ``probecore-jax``) use exactly this path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from probecore._contract.objective import Objective

hookspec = pluggy.HookspecMarker("probecore")


@hookspec(firstresult=True)
def probecore_make_objective(
    model: Any, loss_fn: Any, data: Any, options: Mapping[str, Any]
) -> Objective | None:
    """Turn a user's model into an :class:`~probecore.Objective`, or return None.

    Called by :func:`probecore.objective`; the first backend that returns something
    other than None wins. Return None if you do not recognise ``model`` — never raise
    for a model of another framework. Raise ``TypeError``/``ValueError`` when the model
    is yours but the other arguments are wrong.

    Parameters
    ----------
    model : object
        The user's model (a ``torch.nn.Module``, a JAX parameter pytree, ...).
    loss_fn : callable or None
        The loss, in the backend's convention.
    data : object or None
        The data set (a loader, a tuple of arrays, an iterable of batches, ...).
    options : Mapping[str, Any]
        Backend options given as keywords to :func:`probecore.objective` (``dtype``,
        ``device``, ...). A backend must reject options it does not know.
    """
