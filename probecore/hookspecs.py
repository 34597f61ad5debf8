"""Hook specifications for probecore plugins.

A plugin is any object or module with a function marked ``@probecore.plugins.hookimpl``
implementing one of these hooks, registered in the entry-point group ``probecore``::

    # pyproject.toml of your plugin
    [project.entry-points.probecore]
    mybackend = "probecore_mybackend.plugin"

Two hooks: :func:`probecore_make_objective` (a backend: models of a framework become
Objectives) and :func:`probecore_add_commands` (subcommands of the ``probecore`` command).
The built-in backends (``probecore-torch``, ``probecore-jax``) and the study
(``probecore-study``, which adds ``probecore study``) use exactly this path.
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


@hookspec
def probecore_add_commands(subparsers: Any) -> None:
    """Add subcommands to the ``probecore`` command.

    Called by :func:`probecore.cli.main` every time it builds its parser, after the
    built-in probe subcommands are added; every implementation is called. Add each
    subcommand with ``subparsers.add_parser(name, help=..., description=...)``, give it
    its options, and set ``func`` to the function that runs it::

        parser = subparsers.add_parser("hello", help="say hello")
        parser.add_argument("--name", default="world")
        parser.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)

    ``func(args)`` receives the parsed :class:`argparse.Namespace` and returns the exit
    status (0 for success). It may raise ``ValueError``, ``TypeError``, ``ImportError``,
    ``OSError`` or :class:`~probecore.ConvergenceError` for a mistake the user can fix:
    ``probecore`` prints the message's first line and exits with status 2.

    This hook runs on every ``probecore`` call, so the module that implements it must be
    cheap to import: import the subcommand's heavy dependencies inside ``func``. A name
    that is already taken (a built-in subcommand or another plugin's) makes argparse
    raise; ``probecore`` reports that, like a plugin that fails to load, as a one-line
    warning and goes on with the subcommands added so far.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers()`` returned for the ``probecore`` command.
    """
