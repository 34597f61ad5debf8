"""Tools for backend authors and test suites.

* :func:`check_objective` verifies that an object honours the
  :class:`~probecore.Objective` contract: shapes and dtypes, gradient and HVP against
  finite differences, HVP symmetry, batched/unbatched agreement and determinism.
* :mod:`probecore.testing.strategies` has hypothesis strategies (imported on demand, so
  hypothesis is only needed when you use them).
"""

from probecore.testing._check import Check, ObjectiveReport, check_objective, dense_hessian

__all__ = ["Check", "ObjectiveReport", "check_objective", "dense_hessian"]
