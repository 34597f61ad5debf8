"""How ``probecore study`` turns measurements over seeds into verdicts on the paper's claims.

Every claim the seed paper makes with numbers is judged by one of three rules, each stated
in the report next to its verdict:

* :func:`judge_range` — "the effect lies in ``[lo, hi]``" (e.g. "3-5× higher λmax"): the
  95% Student-t interval of the mean over seeds (on a log scale for ratios) is compared
  with the claimed range and with "no effect".
* :func:`judge_sign` — "A is larger than B" without a number: the same interval against 0.
* :func:`judge_implication` — "when A holds, B holds" (e.g. "barrier < 0.5 → both test
  accuracies > 90%"): every case where A holds is checked.

A verdict is ``"supported"``, ``"not supported"``, ``"inconclusive"`` or
``"inconclusive (confounded)"`` (the groups compared differ in something else that could
explain the effect: the verdict cannot follow from the comparison, whatever it shows); with
fewer than two seeds there is no error estimate and a range or sign claim is inconclusive.

Every interval carries its numbers (:meth:`Interval.record`: estimate, bounds, standard
error, ``n``, the test and its two-sided p-value against no effect) for ``results.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from probecore_study.numbers import fmt

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
CONFOUNDED = "inconclusive (confounded)"
NOT_RUN = "not run"


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with its standard error and a 95% Student-t interval.

    For ``log=True`` the values are ratios: ``mean``, ``lo`` and ``hi`` are the geometric
    mean and its interval, ``std_error`` is the standard error of the mean log ratio, and
    no effect is a ratio of 1. ``p`` is the two-sided p-value of ``test`` against no
    effect (NaN without an error estimate, or when every value is equal: no t-test).
    """

    n: int
    mean: float
    std_error: float
    lo: float
    hi: float
    log: bool = False
    p: float = float("nan")
    test: str = "one-sample Student t"
    confidence: float = 0.95

    @property
    def null(self) -> float:
        """The value of no effect: 1 for a ratio, 0 for a difference."""
        return 1.0 if self.log else 0.0

    def text(self, unit: str = "") -> str:
        """``estimate (95% CI [lo, hi]; n = …)``; every number as the report writes it."""
        if self.n < 2 or not np.isfinite(self.std_error):
            return f"{fmt(self.mean, unit)} (n = {self.n}, no interval)"
        if self.std_error == 0:
            return f"{fmt(self.mean, unit)} (n = {self.n}, every value equal: no interval)"
        return f"{fmt(self.mean, unit)} (95% CI [{fmt(self.lo)}, {fmt(self.hi)}]; n = {self.n})"

    def record(self) -> dict:
        """The numbers, for ``results.json`` (NaN as ``None``)."""

        def num(v: float) -> float | None:
            return float(v) if np.isfinite(v) else None

        return {
            "estimate": num(self.mean),
            "ci_low": num(self.lo),
            "ci_high": num(self.hi),
            "confidence": self.confidence,
            "std_error": num(self.std_error),
            "scale": "log ratio" if self.log else "difference",
            "null": self.null,
            "n": self.n,
            "test": self.test,
            "p": num(self.p),
        }


def interval(values: Any, *, log: bool = False, confidence: float = 0.95) -> Interval:
    """Mean, standard error and t-interval of ``values`` (geometric, for ``log=True``)."""
    from scipy.stats import t as student_t

    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("`values` must hold at least one number.")
    if log:
        if np.any(v <= 0):
            raise ValueError(f"`values` must be positive for log=True; got {v.min()}.")
        v = np.log(v)
    n = v.size
    mean = float(v.mean())
    p = float("nan")
    if n < 2:
        lo = hi = mean
        se = float("nan")
    else:
        se = float(v.std(ddof=1) / np.sqrt(n))
        half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * se
        lo, hi = mean - half, mean + half
        if se > 0:
            p = float(2 * student_t.sf(abs(mean) / se, n - 1))
    test = "one-sample Student t" + (" on log ratios" if log else "")
    return _interval(n, mean, se, lo, hi, log, p, test, confidence)


def _interval(
    n: int,
    mean: float,
    se: float,
    lo: float,
    hi: float,
    log: bool,
    p: float,
    test: str,
    confidence: float,
) -> Interval:
    """An :class:`Interval` from values computed on the log scale when ``log``.

    For ``log=True`` the estimate and bounds go back to ratios (a geometric mean and its
    interval); the standard error stays that of the mean log value.
    """
    if log:
        mean, lo, hi = float(np.exp(mean)), float(np.exp(lo)), float(np.exp(hi))
    return Interval(n, mean, se, lo, hi, log, p, test, confidence)


def judge_range(iv: Interval, lo: float, hi: float, *, null: float) -> tuple[str, str]:
    """Verdict on "the effect lies in ``[lo, hi]``" (``null < lo``: the claimed direction).

    * **not supported** when the interval lies entirely outside ``[lo, hi]``;
    * **supported** when the estimate lies in ``[lo, hi]`` and the interval excludes
      ``null`` (the effect is there, with the claimed sign and size);
    * **inconclusive** otherwise, and whenever there is no error estimate (see
      :func:`_no_error_estimate`).
    """
    if (why := _no_error_estimate(iv)) is not None:
        return INCONCLUSIVE, why
    zero = _null_text(null)
    if iv.hi < lo or iv.lo > hi:
        side = "below" if iv.hi < lo else "above"
        if iv.lo > null:
            why = (
                f"the effect has the claimed sign (95% interval excludes {zero}) but the "
                f"interval lies entirely {side} the claimed range"
            )
        elif iv.hi < null:
            why = f"the effect has the opposite sign (95% interval entirely below {zero})"
        else:
            why = f"the 95% interval lies {side} the claimed range and includes {zero}"
        return NOT_SUPPORTED, why
    if iv.lo > null and lo <= iv.mean <= hi:
        return SUPPORTED, (
            f"the estimate lies in the claimed range and the 95% interval excludes {zero}"
        )
    if iv.lo > null:
        return INCONCLUSIVE, (
            "the estimate lies outside the claimed range, but the 95% interval reaches it"
        )
    return INCONCLUSIVE, f"the 95% interval includes both the claimed range and {zero}"


def _null_text(null: float) -> str:
    """How "no effect" reads: a ratio of 1, or zero difference."""
    return "a ratio of 1 (the no-effect value)" if null == 1.0 else "0 (the no-effect value)"


def _no_error_estimate(iv: Interval) -> str | None:
    """Why an interval cannot carry a verdict: fewer than two values, or two equal ones.

    Identical values (counts, accuracies on a finite test set) give a standard error of
    0 and a zero-width interval; from two of them that is chance, not certainty.
    """
    if iv.n < 2:
        return "fewer than two values give no error estimate"
    if not iv.std_error > 0 and iv.n < 3:
        return "two equal values give no error estimate"
    return None


def judge_sign(iv: Interval, *, null: float = 0.0) -> tuple[str, str]:
    """Verdict on "the effect is above ``null``": the 95% interval against ``null``."""
    if (why := _no_error_estimate(iv)) is not None:
        return INCONCLUSIVE, why
    zero = _null_text(null)
    if iv.std_error == 0 and iv.mean == null:
        return INCONCLUSIVE, f"every value equals {zero}: there is no difference to judge"
    if iv.lo > null:
        return SUPPORTED, f"the 95% interval lies entirely above {zero}"
    if iv.hi < null:
        return NOT_SUPPORTED, f"the opposite sign: the 95% interval lies entirely below {zero}"
    return INCONCLUSIVE, f"the 95% interval includes {zero}"


def judge_implication(
    cases: list[tuple[bool, bool]], antecedent: str, *, relation: bool = True
) -> tuple[str, str]:
    """Verdict on "A → B" from ``(A holds, B holds)`` per case.

    With ``relation=True`` (B is a second measurement the claim ties to A: "barrier < 0.5
    → both models above 90%"), the claim is judged only when B failed somewhere: when B
    held in every case measured, with or without A, nothing measured could have refuted
    it and the verdict is inconclusive. With ``relation=False`` the claim is "B holds in
    every case with A" ("every pair is joined by a curve with barrier < 0.5"), and B is
    the measurement itself.
    """
    relevant = [b for a, b in cases if a]
    if not relevant:
        return INCONCLUSIVE, f"no case had {antecedent} ({len(cases)} measured)"
    held = sum(relevant)
    if relation and held == len(relevant) and all(b for _, b in cases):
        return INCONCLUSIVE, (
            f"held in all {len(relevant)} cases with {antecedent}, but the conclusion held "
            f"in every one of the {len(cases)} cases measured: no case could have refuted it"
        )
    if held == len(relevant):
        return SUPPORTED, f"held in all {len(relevant)} cases with {antecedent}"
    return NOT_SUPPORTED, f"failed in {len(relevant) - held} of {len(relevant)} cases"


def paired(values: dict[Any, tuple[list[float], list[float]]]) -> Interval:
    """Interval of per-unit differences ``mean(a) − mean(b)``, for units holding both.

    For groups that are not independent (the networks of one seed share their
    initialization): each seed gives one difference, and the t-interval is over seeds.
    """
    from dataclasses import replace

    diffs = [float(np.mean(a) - np.mean(b)) for a, b in values.values() if len(a) and len(b)]
    if not diffs:
        raise ValueError("no unit holds both groups.")
    return replace(interval(diffs), test="paired Student t (one difference per seed)")


def combine(verdicts: list[str]) -> str:
    """One verdict for a hypothesis made of several claims."""
    run = [INCONCLUSIVE if v == CONFOUNDED else v for v in verdicts if v != NOT_RUN]
    if not run:
        return NOT_RUN
    if NOT_SUPPORTED in run:
        return NOT_SUPPORTED
    if all(v == SUPPORTED for v in run):
        return SUPPORTED
    return INCONCLUSIVE


def difference(a: Any, b: Any, *, log: bool = False, confidence: float = 0.95) -> Interval:
    """``mean(a) − mean(b)`` for two independent groups, Welch's t-interval.

    With ``log=True`` the groups are compared on a log scale and the result is the ratio
    of their geometric means. ``n`` is the smaller group's size.
    """
    from scipy.stats import t as student_t

    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError("both groups must hold at least one number.")
    if log:
        x, y = np.log(x), np.log(y)
    d = float(x.mean() - y.mean())
    n = int(min(x.size, y.size))
    p = float("nan")
    if n < 2:
        lo = hi = d
        se = float("nan")
    else:
        vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
        se = float(np.sqrt(vx + vy))
        if se == 0:
            lo = hi = d
        else:
            df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
            half = float(student_t.ppf(0.5 + confidence / 2, df)) * se
            lo, hi = d - half, d + half
            p = float(2 * student_t.sf(abs(d) / se, df))
    test = "Welch two-sample t" + (" on log values" if log else "")
    return _interval(n, d, se, lo, hi, log, p, test, confidence)


def judge_correlation(x: Any, y: Any, *, alpha: float = 0.05) -> tuple[str, str, float, float]:
    """Verdict on "``y`` grows with ``x``": Spearman's rank correlation and its p-value."""
    from scipy.stats import spearmanr

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return INCONCLUSIVE, f"too few distinct values ({x.size} cases)", float("nan"), 1.0
    rho, p = spearmanr(x, y)
    rho, p = float(rho), float(p)
    stat = f"Spearman ρ = {fmt(rho)}, p = {fmt(p)}"
    if p < alpha and rho > 0:
        return SUPPORTED, f"{stat} (p < {alpha:g})", rho, p
    if p < alpha and rho < 0:
        return NOT_SUPPORTED, f"the opposite trend: {stat} (p < {alpha:g})", rho, p
    return INCONCLUSIVE, f"no significant trend: {stat} (p ≥ {alpha:g})", rho, p
