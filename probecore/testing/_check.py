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

    A check has one of three outcomes: passed, failed, or inconclusive (neither: the
    check could not decide, for instance because finite differences of a non-smooth
    loss are no reliable reference; ``message`` says why).

    Attributes
    ----------
    name : str
        What was checked (``"gradient"``, ``"hvp_symmetry"``, ...).
    passed : bool
        True only when the check passed (False when it failed or was inconclusive).
    error : float
        Measured discrepancy (NaN when the check is not numeric or was inconclusive).
    tolerance : float
        Allowed discrepancy (NaN when not numeric).
    message : str
        Human-readable explanation, in particular of a failure or of why the check was
        inconclusive.
    inconclusive : bool
        True when the check could not decide; then ``passed`` is False too.
    """

    name: str
    passed: bool
    error: float = float("nan")
    tolerance: float = float("nan")
    message: str = ""
    inconclusive: bool = False

    @property
    def failed(self) -> bool:
        """Whether the check failed (not passed, and not inconclusive)."""
        return not self.passed and not self.inconclusive

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"inconclusive"``."""
        if self.passed:
            return "passed"
        return "inconclusive" if self.inconclusive else "failed"


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
        """Whether every check passed (an inconclusive check has not passed)."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The checks that failed (inconclusive ones are in :attr:`inconclusive`)."""
        return tuple(c for c in self.checks if c.failed)

    @property
    def inconclusive(self) -> tuple[Check, ...]:
        """The checks that could not decide; each ``message`` says why."""
        return tuple(c for c in self.checks if c.inconclusive)

    def __getitem__(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def __str__(self) -> str:
        lines = []
        for c in self.checks:
            status = {"passed": "ok  ", "failed": "FAIL", "inconclusive": "????"}[c.status]
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


#: A mismatch fails only when it exceeds the tolerance by more than this many times the
#: finite-difference reference's own error estimate (see :func:`_fd_table`).
_KAPPA = 8.0
#: Each unreliable stencil makes the next direction's step this much smaller, at most
#: ``_MAX_SHRINK`` times.
_SHRINK = 4.0
_MAX_SHRINK = 2
#: Directions tried per requested direction before a check is called inconclusive.
_TRIES = 3


def _richardson(f: Callable[[float], Any], h: float) -> Any:
    """Central difference with one Richardson step: error O(h⁴)."""
    d1 = (np.asarray(f(h), dtype=np.float64) - np.asarray(f(-h), dtype=np.float64)) / (2 * h)
    h2 = h / 2
    d2 = (np.asarray(f(h2), dtype=np.float64) - np.asarray(f(-h2), dtype=np.float64)) / (2 * h2)
    return (4 * d2 - d1) / 3


def _fd_table(
    f: Callable[[float], Any], f0: np.ndarray, h: float
) -> tuple[np.ndarray, float, float]:
    r"""Richardson estimate of ``f'(0)`` at step ``h`` and two measures of its reliability.

    Evaluates ``f(±h_k)``, ``h_k = h/2^k`` for ``k = 0..3``. With central differences
    ``D_k`` and Richardson estimates ``R_k = (4 D_{k+1} - D_k)/3`` the reference is
    ``R_0`` (what :func:`_richardson` returns). Two measures say how far to trust it:

    * the *spread* ``max(‖R_0 - R_1‖, ‖R_1 - R_2‖)``: on a smooth ``f`` it is
      ``O(h⁴)`` plus rounding, like the error of ``R_0``; a kink or jump crossed by the
      stencil makes the estimates at different steps disagree;
    * the *kink* ``‖64 e_2 - 20 e_1 + e_0‖ / (7h)`` with the even parts
      ``e_k = (f(h_k) + f(-h_k))/2 - f(0)``: it annihilates the ``s²`` and ``s⁴`` terms
      of a smooth ``f`` (what is left is ``O(h⁵)`` plus rounding) and equals ``|J|/2``
      when the slope of ``f`` jumps by ``J`` at 0: one-sided derivatives that differ,
      which the spread cannot see since every ``D_k`` is then off by the same amount.

    Parameters
    ----------
    f : callable
        ``s -> f(x + s·d)``, scalar or vector.
    f0 : numpy.ndarray
        ``f(0)``, already computed.
    h : float
        Largest step.

    Returns
    -------
    reference : numpy.ndarray
        ``R_0`` (float64).
    spread, kink : float
    """
    steps = [h / 2.0**k for k in range(4)]
    plus = [np.asarray(f(s), dtype=np.float64) for s in steps]
    minus = [np.asarray(f(-s), dtype=np.float64) for s in steps]
    D = [(p - m) / (2 * s) for p, m, s in zip(plus, minus, steps, strict=True)]
    R = [(4 * D[k + 1] - D[k]) / 3 for k in range(3)]
    spread = max(float(np.linalg.norm(R[0] - R[1])), float(np.linalg.norm(R[1] - R[2])))
    f0 = np.asarray(f0, dtype=np.float64)
    e = [(p + m) / 2 - f0 for p, m in zip(plus, minus, strict=True)]
    kink = float(np.linalg.norm(64 * e[2] - 20 * e[1] + e[0])) / (7 * h)
    return R[0], spread, kink


def _excess(entry: tuple[Any, ...]) -> float:
    """Error over tolerance of a direction's ``(error, tolerance, ...)``, for ranking."""
    err, tol = entry[0], entry[1]
    return err / tol if tol > 0 else (np.inf if err > 0 else 0.0)


def _fd_check(
    name: str,
    of: str,
    fn: Callable[[np.ndarray], Any],
    f0: np.ndarray,
    exact: Callable[[np.ndarray], np.ndarray],
    tolerance: Callable[[np.ndarray], float],
    *,
    x: np.ndarray,
    dtype: Any,
    h: float,
    n_directions: int,
    gen: np.random.Generator,
) -> Check:
    """Compare ``exact(d)`` with finite differences of ``fn`` along random unit ``d``.

    Per direction, with the reference, spread and kink of :func:`_fd_table`: the
    direction passes when the mismatch is within the tolerance; it fails when the
    mismatch exceeds the tolerance by more than ``_KAPPA`` times spread + kink and the
    kink is within the tolerance (so the finite differences are a sound reference);
    otherwise it is *unreliable* (``fn`` is not smooth across the stencil, or not
    differentiable at ``x``) and a new direction is drawn, each time with a step
    ``_SHRINK`` times smaller (at most ``_MAX_SHRINK`` times). The check stops after
    ``n_directions`` conclusive directions or ``_TRIES·n_directions`` draws; it fails if
    a direction failed, passes if at least one passed, and is inconclusive when no
    direction was conclusive.
    """
    dim = x.shape[0]
    conclusive: list[tuple[float, float, bool]] = []  # (error, tolerance, passed)
    unreliable: list[tuple[float, float, float, float]] = []  # (error, tol, spread, kink)
    step = h
    for _ in range(_TRIES * n_directions):
        if len(conclusive) == n_directions:
            break
        d = gen.standard_normal((dim,))
        d = (d / np.linalg.norm(d)).astype(dtype)
        ref, spread, kink = _fd_table(functools.partial(_along, fn, x, d, dtype), f0, step)
        value = exact(d)
        err = float(np.linalg.norm(ref - value))
        tol = tolerance(value)
        if err <= tol:
            conclusive.append((err, tol, True))
        elif kink <= tol and err > tol + _KAPPA * (spread + kink):
            conclusive.append((err, tol, False))
        else:
            unreliable.append((err, tol, spread, kink))
            if len(unreliable) <= _MAX_SHRINK:
                step /= _SHRINK
    if not conclusive:
        worst = max(unreliable, key=_excess)
        spread = max(t[2] for t in unreliable)
        kink = max(t[3] for t in unreliable)
        return Check(
            name,
            False,
            tolerance=worst[1],
            inconclusive=True,
            message=(
                f"inconclusive: finite differences of {of} are no reliable reference along "
                f"any of {len(unreliable)} directions (steps {h:.2g} down to {step:.2g}): "
                f"estimates at different steps disagree by up to {spread:.3g} and one-sided "
                f"slopes by up to {2 * kink:.3g}, so a mismatch of {worst[0]:.3g} against a "
                f"tolerance of {worst[1]:.3g} cannot be blamed on {name}: {of} is not smooth "
                f"near x (ReLU kinks, max, abs, ...), or the tolerance is below the finite "
                f"differences' rounding error"
            ),
        )
    failed = [c for c in conclusive if not c[2]]
    err, tol, _ = max(failed or conclusive, key=_excess)
    parts = []
    if failed:
        parts.append(
            f"{name} disagrees with finite differences of {of} along {len(failed)} of "
            f"{len(conclusive)} direction(s)"
        )
    if unreliable:
        parts.append(
            f"{len(unreliable)} more direction(s) skipped: {of} is not smooth across the "
            f"stencil there (e.g. ReLU kinks)"
        )
    return Check(name, not failed, err, tol, "; ".join(parts))


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

    Finite differences are a reference only where the function is smooth across the
    stencil ``x ± h·d``; a ReLU network's loss and gradient are only piecewise smooth. So
    each direction's reference comes with its own error estimate (Richardson estimates
    at steps ``h, h/2, h/4`` must agree, and the one-sided slopes at ``x`` must too): a
    direction where the mismatch could be the reference's fault is skipped and another
    one drawn, with a smaller step. A finite-difference check fails only on a mismatch
    the reference cannot explain; if no direction gives a usable reference (kinks in
    every stencil, or ``x`` itself on a kink), the check is *inconclusive*: neither
    passed nor failed, with the reason in its message. The other checks are exact and
    stay strict. Details in ``docs/algorithms.md``.

    Parameters
    ----------
    objective : Objective
    x : numpy.ndarray, optional
        Point to check at (default ``objective.x0``).
    rng : int, numpy.random.Generator or None
        Source of the random directions.
    n_directions : int
        Directions along which each finite-difference check must reach a verdict; at
        most ``3·n_directions`` are drawn (directions with an unreliable reference are
        skipped). The check passes when at least one direction passed and none failed.
    rtol : float, optional
        Relative tolerance of the finite-difference checks. Default ``eps^(2/3)`` of the
        dtype (about 3.7e-11 in float64, 2.4e-5 in float32): central differences with one
        Richardson step and step ``h = eps^(1/5)·max(1, ‖x‖∞)`` have truncation error
        ``O(h⁴)`` and rounding error ``O(eps/h)``, both well below it.
    raise_on_failure : bool
        Raise :class:`~probecore.ObjectiveCheckError` naming every failed check, or, when
        none failed, every inconclusive one (a check that could not be confirmed is not
        passed: a zero HVP of a float32 ReLU network can look like that); False returns
        the report, with inconclusive checks in ``report.inconclusive`` (and
        ``report.passed`` False).

    Returns
    -------
    ObjectiveReport

    Raises
    ------
    ObjectiveCheckError
        If a check fails or is inconclusive and ``raise_on_failure``; ``.report`` holds
        every result.

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
        if raise_on_failure and report.failures:
            names = ", ".join(c.name for c in report.failures)
            raise ObjectiveCheckError(
                f"{type(objective).__name__} failed check_objective ({names}):\n{report}", report
            )
        if raise_on_failure and report.inconclusive:
            names = ", ".join(c.name for c in report.inconclusive)
            raise ObjectiveCheckError(
                f"check_objective could not confirm {names} of {type(objective).__name__}: "
                "finite differences are no reliable reference here (the loss is not smooth "
                "near x, or float32 rounding hides the error). Check in float64 on a small "
                "subset of the data (objective.subset(...), dtype=float64), where kinks are "
                "fewer and rounding smaller, or pass raise_on_failure=False to read the "
                f"report:\n{report}",
                report,
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
    g64 = g.astype(np.float64)
    tol_g = rtol * (gnorm + abs(L) + 1.0)
    common = {"x": x, "dtype": dtype, "h": h, "n_directions": n_directions, "gen": gen}
    checks.append(
        _fd_check(
            "gradient",
            "loss",
            objective.loss,
            np.asarray(L, dtype=np.float64),
            lambda d: np.asarray(g64 @ d, dtype=np.float64),
            lambda _: tol_g,
            **common,
        )
    )
    checks.append(
        _fd_check(
            "hvp",
            "grad",
            objective.grad,
            g64,
            lambda d: np.asarray(objective.hvp(x, d), dtype=np.float64),
            lambda Hd: rtol * (float(np.linalg.norm(Hd)) + gnorm + 1.0),
            **common,
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
