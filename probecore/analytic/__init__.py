"""Objectives with closed-form answers, for tests, benchmarks and examples.

* :class:`Quadratic` -- ``½ xᵀAx + bᵀx`` with a spectrum you choose (negative, repeated and
  clustered eigenvalues allowed); its Hessian, eigenvalues and trace are known exactly.
* :class:`Rosenbrock` -- the n-dimensional Rosenbrock function with its closed-form
  gradient and tridiagonal Hessian.
* :class:`Ring` -- a loss whose minima form a sphere, for mode connectivity.
* :class:`LogisticRegression` -- multinomial logistic regression with an L2 term on real
  data (scikit-learn's digits via :func:`digits_logistic_regression`); its Hessian
  ``mean_i J_iᵀ (diag(p_i) − p_i p_iᵀ) J_i + λ I_W`` is computed in closed form.

Each has a layout of several named blocks so that per-block tools have something to work on.
"""

from __future__ import annotations

from probecore.analytic._functions import Ring, Rosenbrock
from probecore.analytic._logistic import LogisticRegression, digits_logistic_regression
from probecore.analytic._quadratic import Quadratic, default_layout, nn_like_spectrum

__all__ = [
    "LogisticRegression",
    "Quadratic",
    "Ring",
    "Rosenbrock",
    "default_layout",
    "digits_logistic_regression",
    "nn_like_spectrum",
]
