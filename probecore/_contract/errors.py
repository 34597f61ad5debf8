"""Exceptions raised by probecore for domain failures (not for bad input).

Also :func:`caller_stacklevel`, where probecore's warnings point.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = [
    "ConvergenceError",
    "InvalidResultError",
    "NoBackendError",
    "ObjectiveCheckError",
    "caller_stacklevel",
]

# top-level packages whose frames a warning skips to reach the user's line
_OWN_PACKAGES = frozenset(
    {"probecore", "probecore_torch", "probecore_jax", "probecore_study", "pluggy"}
)


def caller_stacklevel() -> int:
    """The ``stacklevel`` for :func:`warnings.warn` that points at the user's line.

    Called by the function that warns: counts its frames up to the first frame outside
    probecore, its backends and pluggy (the line that called into probecore), whatever
    path led there (a probe through the engine, a backend through a plugin hook). Where
    every frame is probecore's (a worker thread), the outermost frame.
    """
    frame, level = sys._getframe(1), 1  # level 1: the function that warns
    while frame.f_back is not None and (
        frame.f_globals.get("__name__", "").split(".")[0] in _OWN_PACKAGES
    ):
        frame, level = frame.f_back, level + 1
    return level


class ConvergenceError(RuntimeError):
    """An iterative method stopped before meeting its tolerance.

    The partial result (with ``converged=False``) is kept in :attr:`result` so that
    nothing computed is lost; pass ``raise_on_failure=False`` to get it returned instead.

    Attributes
    ----------
    result : object
        The partial result object of the method that failed.
    """

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


class InvalidResultError(ValueError):
    """A file given to :func:`probecore.load` is not a valid probecore result.

    Raised for every way a file can fail to be one -- not an ``.npz`` archive, a missing,
    malformed or tampered JSON header, unknown or missing fields, values of the wrong type,
    arrays that are not numeric, or members declaring more data than the file can hold.
    The message starts with ``"not a probecore result: "`` and names the file and what is
    wrong with it. A subclass of :class:`ValueError`.

    Attributes
    ----------
    path : str
        The file that was refused.
    reason : str
        What is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"not a probecore result: {path!r}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, e.g. across processes
        return (type(self), (self.path, self.reason))


class NoBackendError(LookupError):
    """No installed backend recognised the model passed to :func:`probecore.objective`.

    Attributes
    ----------
    backends : tuple of str
        Names of the backends that are installed and were asked.
    """

    def __init__(self, message: str, backends: tuple[str, ...]) -> None:
        super().__init__(message)
        self.backends = backends


class ObjectiveCheckError(AssertionError):
    """An objective failed :func:`probecore.testing.check_objective`.

    Attributes
    ----------
    report : probecore.testing.ObjectiveReport
        Every check that was run, with its measured error and tolerance.
    """

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report
