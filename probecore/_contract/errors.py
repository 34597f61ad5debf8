"""Exceptions raised by probecore for domain failures (not for bad input)."""

from __future__ import annotations

from typing import Any

__all__ = ["ConvergenceError", "NoBackendError", "ObjectiveCheckError"]


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
