"""Plugin discovery: the plugin manager, :func:`objective` and :func:`backend_names`.

The manager is built on first use, not at import time: it adds the hook specifications,
registers the built-in ``objective`` backend (which accepts anything that already
implements :class:`~probecore.Objective`), loads the entry-point group ``probecore``
(unless the environment variable ``PROBECORE_DISABLE_PLUGIN_AUTOLOAD`` is set) and checks
that every registered hook implementation matches a specification.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import pluggy

from probecore import hookspecs
from probecore._contract.errors import NoBackendError
from probecore._contract.objective import Objective

__all__ = ["ENTRY_POINT_GROUP", "backend_names", "get_plugin_manager", "hookimpl", "objective"]

ENTRY_POINT_GROUP = "probecore"
hookimpl = pluggy.HookimplMarker("probecore")


class _ObjectivePassthrough:
    """Built-in backend: an object that already is an Objective is used as is."""

    @hookimpl(trylast=True)
    def probecore_make_objective(
        self, model: Any, loss_fn: Any, data: Any, options: Mapping[str, Any]
    ) -> Objective | None:
        if not isinstance(model, Objective):
            return None
        if loss_fn is not None or data is not None or options:
            given = [n for n, v in (("loss_fn", loss_fn), ("data", data)) if v is not None]
            given += list(options)
            raise TypeError(
                f"{type(model).__name__} is already a probecore Objective; it takes no "
                f"{', '.join(given)}."
            )
        return model


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first call.

    Returns
    -------
    pluggy.PluginManager
        With the built-in backend and every entry-point plugin (backends, subcommands) registered.
    """
    pm = pluggy.PluginManager("probecore")
    pm.add_hookspecs(hookspecs)
    pm.register(_ObjectivePassthrough(), name="objective")
    if not os.environ.get("PROBECORE_DISABLE_PLUGIN_AUTOLOAD"):
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    return pm


def backend_names() -> tuple[str, ...]:
    """Names of the registered backends, in registration order.

    A backend is a plugin that implements ``probecore_make_objective``; a plugin that only
    adds subcommands (``probecore-study``) is not one.
    """
    pm = get_plugin_manager()
    backends = {id(impl.plugin) for impl in pm.hook.probecore_make_objective.get_hookimpls()}
    return tuple(
        name
        for name, plugin in pm.list_name_plugin()
        if plugin is not None and id(plugin) in backends
    )


def objective(model: Any, loss_fn: Any = None, data: Any = None, **options: Any) -> Objective:
    """Turn a model into an :class:`~probecore.Objective` through the installed backends.

    Parameters
    ----------
    model : object
        Your model: a ``torch.nn.Module`` (with ``probecore-torch`` installed), a JAX
        parameter pytree (with ``probecore-jax``), or an existing Objective.
    loss_fn : callable, optional
        The loss in the backend's convention.
    data : object, optional
        The data the loss averages over.
    **options
        Backend options (for example ``dtype``, ``device``, and ``layout``, which every
        built-in backend takes: roles and filter axes by block name, see
        ``docs/models.md``), passed to the backend unchanged; each backend rejects options
        it does not know.

    Returns
    -------
    Objective

    Raises
    ------
    NoBackendError
        If no installed backend recognises ``model``; the message lists the backends.

    Examples
    --------
    >>> from probecore.analytic import Rosenbrock
    >>> objective(Rosenbrock(4)).dim
    4
    """
    pm = get_plugin_manager()
    result = pm.hook.probecore_make_objective(
        model=model, loss_fn=loss_fn, data=data, options=dict(options)
    )
    if result is None:
        names = backend_names()
        raise NoBackendError(
            f"no installed backend recognises a model of type "
            f"{type(model).__module__}.{type(model).__qualname__}. Installed backends: "
            f"{', '.join(names)}. Install the backend for your framework "
            "(pip install probecore-torch / probecore-jax) or write one (see docs/plugins.md).",
            names,
        )
    if not isinstance(result, Objective):
        raise TypeError(
            f"a backend returned {type(result).__name__}, which does not implement the "
            "probecore.Objective protocol."
        )
    return result
