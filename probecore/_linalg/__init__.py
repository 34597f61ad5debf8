"""Layer 1, linear algebra: the Hessian as an operator and the estimators built on it.

``operators`` (the Hessian at a point as a counted ``LinearOperator``), ``lanczos`` (the one
Lanczos kernel), ``power`` (power iteration), ``eigen`` (thick-restart Lanczos, ARPACK),
``trace`` (Hutchinson, Hutch++), ``density`` (stochastic Lanczos quadrature), ``results``.
"""
