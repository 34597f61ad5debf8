"""The Objective conformance checker."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probecore._contract.errors import ObjectiveCheckError
from probecore._contract.layout import Layout
from probecore._contract.objective import Objective
from probecore._contract.validation import FLOAT_DTYPES, as_rng, check_bool, check_int

__all__ = ["Check", "ObjectiveReport", "check_objective", "dense_hessian"]

_MEMBERS = (
    "dim",
    "dtype",
    "layout",
    "x0",
    "n_examples",
    "loss",
    "grad",
    "loss_and_grad",
    "hvp",
    "hvp_many",
    "losses_in_span",
    "metrics",
    "subset",
)


@dataclass(frozen=True, slots=True)
class Check:
    """Outcome of one conformance check.

    Attributes
    ----------
    name : str
        What was checked (``"gradient"``, ``"hvp_symmetry"``, ...).
    passed : bool
    error : float
        Measured discrepancy (NaN when the check is not numeric).
    tolerance : float
        Allowed discrepancy (NaN when not numeric).
    message : str
        Human-readable explanation, in particular of a failure.
    """

    name: str
    passed: bool
    error: float = float("nan")
    tolerance: float = float("nan")
    message: str = ""


@dataclass(frozen=True, slots=True)
class ObjectiveReport:
    """All checks run by :func:`check_objective`.

    Attributes
    ----------
    checks : tuple of Check
    """

    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The checks that failed."""
        return tuple(c for c in self.checks if not c.passed)

    def __getitem__(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def __str__(self) -> str:
        lines = []
        for c in self.checks:
            status = "ok  " if c.passed else "FAIL"
            num = "" if np.isnan(c.error) else f" (error {c.error:.3g} <= tol {c.tolerance:.3g}?)"
            lines.append(f"{status} {c.name}{num} {c.message}".rstrip())
        return "\n".join(lines)


def dense_hessian(objective: Objective, x: np.ndarray | None = None) -> np.ndarray:
    """The full Hessian at ``x`` from ``dim`` HVPs with unit vectors (float64).

    For tests and small models only: it costs ``dim`` HVPs and ``dim²`` memory.
    """
    x = objective.x0 if x is None else x
    eye = np.eye(objective.dim, dtype=objective.dtype)
    H = np.asarray(objective.hvp_many(x, eye), dtype=np.float64)
    return H.T


def _along(
    fn: Callable[[np.ndarray], Any], x: np.ndarray, d: np.ndarray, dtype: Any, s: float
) -> Any:
    """``fn(x + s·d)`` in the objective's dtype."""
    return fn((x + s * d).astype(dtype))


def _richardson(f: Callable[[float], Any], h: float) -> Any:
    """Central difference with one Richardson step: error O(h⁴)."""
    d1 = (np.asarray(f(h), dtype=np.float64) - np.asarray(f(-h), dtype=np.float64)) / (2 * h)
    h2 = h / 2
    d2 = (np.asarray(f(h2), dtype=np.float64) - np.asarray(f(-h2), dtype=np.float64)) / (2 * h2)
    return (4 * d2 - d1) / 3


def check_objective(
    objective: Objective,
    x: np.ndarray | None = None,
    *,
    rng: int | np.random.Generator | None = 0,
    n_directions: int = 3,
    rtol: float | None = None,
    raise_on_failure: bool = True,
) -> ObjectiveReport:
    r"""Check that ``objective`` honours the :class:`~probecore.Objective` contract.

    Checks, in order: the protocol's members exist; ``dim``, ``dtype``, ``layout`` and
    ``x0`` are consistent; ``loss`` is a finite scalar and ``grad``/``hvp`` have the right
    shape and dtype; ``loss_and_grad`` agrees with ``loss`` and ``grad``; the gradient
    matches finite differences of the loss and the HVP matches finite differences of the
    gradient along ``n_directions`` random directions; ``u·Hv = v·Hu``; ``hvp_many``
    agrees with ``hvp`` and ``losses_in_span`` with ``loss``; repeated calls give the
    same numbers.

    Parameters
    ----------
    objective : Objective
    x : numpy.ndarray, optional
        Point to check at (default ``objective.x0``).
    rng : int, numpy.random.Generator or None
        Source of the random directions.
    n_directions : int
        Directions for the finite-difference checks.
    rtol : float, optional
        Relative tolerance of the finite-difference checks. Default ``eps^(2/3)`` of the
        dtype (about 3.7e-11 in float64, 2.4e-5 in float32): central differences with one
        Richardson step and step ``h = eps^(1/5)·max(1, ‖x‖∞)`` have truncation error
        ``O(h⁴)`` and rounding error ``O(eps/h)``, both well below it.
    raise_on_failure : bool
        Raise :class:`~probecore.ObjectiveCheckError` naming every failed check, or
        return the report.

    Returns
    -------
    ObjectiveReport

    Raises
    ------
    ObjectiveCheckError
        If a check fails and ``raise_on_failure``; ``.report`` holds every result.

    Examples
    --------
    >>> from probecore.analytic import Rosenbrock
    >>> check_objective(Rosenbrock(5)).passed
    True
    """
    n_directions = check_int("n_directions", n_directions, lo=1)
    raise_on_failure = check_bool("raise_on_failure", raise_on_failure)
    gen, _ = as_rng(rng)
    checks: list[Check] = []

    def done() -> ObjectiveReport:
        report = ObjectiveReport(tuple(checks))
        if raise_on_failure and not report.passed:
            names = ", ".join(c.name for c in report.failures)
            raise ObjectiveCheckError(
                f"{type(objective).__name__} failed check_objective ({names}):\n{report}", report
            )
        return report

    missing = [m for m in _MEMBERS if not hasattr(objective, m)]
    checks.append(
        Check("members", not missing, message=f"missing: {', '.join(missing)}" if missing else "")
    )
    if missing:
        return done()

    # -- static attributes
    problems = []
    dim, dtype = objective.dim, objective.dtype
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        problems.append(f"dim must be a positive int, got {dim!r}")
    try:
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            problems.append(f"dtype must be float32 or float64, got {dtype}")
    except TypeError:
        problems.append(f"dtype is not a numpy dtype: {dtype!r}")
    layout = objective.layout
    if not isinstance(layout, Layout):
        problems.append(f"layout must be a probecore.Layout, got {type(layout).__name__}")
    elif not problems and layout.dim != dim:
        problems.append(f"layout covers {layout.dim} entries but dim is {dim}")
    x0 = np.asarray(objective.x0)
    if not problems and (x0.shape != (dim,) or x0.dtype != dtype):
        problems.append(f"x0 must have shape ({dim},) and dtype {dtype}; got {x0.shape} {x0.dtype}")
    checks.append(Check("attributes", not problems, message="; ".join(problems)))
    if problems:
        return done()
    dim = int(dim)
    eps = float(np.finfo(dtype).eps)
    rtol = eps ** (2 / 3) if rtol is None else float(rtol)
    x = x0.copy() if x is None else np.asarray(x, dtype=dtype)

    # -- shapes and dtypes of the outputs
    try:
        L = objective.loss(x)
        g = np.asarray(objective.grad(x))
        u = gen.standard_normal(dim).astype(dtype)
        Hu = np.asarray(objective.hvp(x, u))
    except Exception as exc:
        checks.append(Check("evaluation", False, message=f"{type(exc).__name__}: {exc}"))
        return done()
    problems = []
    if np.ndim(L) != 0 or not np.isfinite(float(L)):
        problems.append(f"loss must be a finite scalar, got {L!r}")
    for name, arr in (("grad", g), ("hvp", Hu)):
        if arr.shape != (dim,):
            problems.append(f"{name} must have shape ({dim},), got {arr.shape}")
        elif arr.dtype != dtype:
            problems.append(f"{name} must have dtype {dtype}, got {arr.dtype}")
        elif not np.all(np.isfinite(arr)):
            problems.append(f"{name} has non-finite entries")
    checks.append(Check("shapes_and_dtypes", not problems, message="; ".join(problems)))
    if problems:
        return done()
    L = float(L)
    gnorm = float(np.linalg.norm(g.astype(np.float64)))

    # -- loss_and_grad consistency
    L2, g2 = objective.loss_and_grad(x)
    err = max(
        abs(float(L2) - L) / max(abs(L), 1.0),
        float(np.linalg.norm(np.asarray(g2, np.float64) - g)) / max(gnorm, 1.0),
    )
    tol = 16 * eps
    checks.append(
        Check(
            "loss_and_grad",
            err <= tol,
            err,
            tol,
            "" if err <= tol else "loss_and_grad disagrees with loss/grad",
        )
    )

    # -- gradient and HVP against finite differences
    h = eps**0.2 * max(1.0, float(np.max(np.abs(x))))
    worst_g, worst_h = 0.0, 0.0
    tol_g = rtol * (gnorm + abs(L) + 1.0)
    tol_h = 0.0
    for _ in range(n_directions):
        d = gen.standard_normal(dim)
        d /= np.linalg.norm(d)
        d = d.astype(dtype)
        fd = _richardson(functools.partial(_along, objective.loss, x, d, dtype), h)
        worst_g = max(worst_g, abs(float(fd) - float(g.astype(np.float64) @ d)))
        Hd = np.asarray(objective.hvp(x, d), dtype=np.float64)
        fdh = _richardson(functools.partial(_along, objective.grad, x, d, dtype), h)
        worst_h = max(worst_h, float(np.linalg.norm(fdh - Hd)))
        tol_h = max(tol_h, rtol * (float(np.linalg.norm(Hd)) + gnorm + 1.0))
    checks.append(
        Check(
            "gradient",
            worst_g <= tol_g,
            worst_g,
            tol_g,
            "" if worst_g <= tol_g else "grad disagrees with finite differences of loss",
        )
    )
    checks.append(
        Check(
            "hvp",
            worst_h <= tol_h,
            worst_h,
            tol_h,
            "" if worst_h <= tol_h else "hvp disagrees with finite differences of grad",
        )
    )

    # -- symmetry
    v = gen.standard_normal(dim).astype(dtype)
    Hv = np.asarray(objective.hvp(x, v), dtype=np.float64)
    Hu64 = Hu.astype(np.float64)
    uHv, vHu = float(u.astype(np.float64) @ Hv), float(v.astype(np.float64) @ Hu64)
    err = abs(uHv - vHu)
    tol = (
        100
        * np.sqrt(dim)
        * eps
        * (np.linalg.norm(Hv) * np.linalg.norm(u) + np.linalg.norm(Hu64) * np.linalg.norm(v))
    )
    tol = max(tol, np.finfo(dtype).tiny)
    checks.append(
        Check(
            "hvp_symmetry",
            err <= tol,
            err,
            tol,
            "" if err <= tol else f"u·Hv = {uHv:.6g} but v·Hu = {vHu:.6g}",
        )
    )

    # -- batched members agree with unbatched ones
    HV = np.asarray(objective.hvp_many(x, np.stack([u, v])), dtype=np.float64)
    err = float(np.linalg.norm(HV - np.stack([Hu64, Hv])))
    tol = 100 * np.sqrt(dim) * eps * (np.linalg.norm(Hu64) + np.linalg.norm(Hv) + 1.0)
    checks.append(
        Check(
            "hvp_many",
            HV.shape == (2, dim) and err <= tol,
            err,
            tol,
            "" if err <= tol else "hvp_many disagrees with hvp",
        )
    )
    basis = np.stack([u, v]) / np.sqrt(dim)
    coeffs = np.array([[0.0, 0.0], [0.5, -0.25], [-1.0, 1.0]])
    span = np.asarray(objective.losses_in_span(x, basis.astype(dtype), coeffs), dtype=np.float64)
    direct = np.array(
        [objective.loss((x + (c @ basis).astype(dtype)).astype(dtype)) for c in coeffs]
    )
    err = float(np.max(np.abs(span - direct))) if span.shape == (3,) else np.inf
    tol = 100 * eps * (np.max(np.abs(direct)) + 1.0)
    checks.append(
        Check(
            "losses_in_span",
            err <= tol,
            err,
            tol,
            "" if err <= tol else "losses_in_span disagrees with loss",
        )
    )

    # -- determinism
    again = (objective.loss(x), np.asarray(objective.grad(x)), np.asarray(objective.hvp(x, u)))
    err = max(
        abs(float(again[0]) - L) / max(abs(L), 1e-300),
        float(np.max(np.abs(again[1] - g))) / max(float(np.max(np.abs(g))), 1e-300),
        float(np.max(np.abs(again[2] - Hu))) / max(float(np.max(np.abs(Hu))), 1e-300),
    )
    tol = 4 * eps
    checks.append(
        Check(
            "determinism",
            err <= tol,
            err,
            tol,
            ""
            if err <= tol
            else "two identical calls gave different results (dropout, unseeded "
            "sampling or a train-mode layer?)",
        )
    )
    return done()
