"""How ``probecore study`` turns measurements over seeds into verdicts on the paper's claims.

Every claim the seed paper makes with numbers is judged by one of three rules, each stated
in the report next to its verdict:

* :func:`judge_range` — "the effect lies in ``[lo, hi]``" (e.g. "3-5× higher λmax"): the
  95% Student-t interval of the mean over seeds (on a log scale for ratios) is compared
  with the claimed range and with "no effect".
* :func:`judge_sign` — "A is larger than B" without a number: the same interval against 0.
* :func:`judge_implication` — "when A holds, B holds" (e.g. "barrier < 0.5 → both test
  accuracies > 90%"): every case where A holds is checked.

A verdict is ``"supported"``, ``"not supported"`` or ``"inconclusive"``; with fewer than
two seeds there is no error estimate and a range or sign claim is inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with its standard error and a 95% Student-t interval."""

    n: int
    mean: float
    std_error: float
    lo: float
    hi: float
    log: bool = False

    def text(self, fmt: str = ".3g", unit: str = "") -> str:
        """``mean ± se [lo, hi] (n = …)``; a ratio (``log``) shows its geometric mean."""
        if self.n < 2:
            return f"{self.mean:{fmt}}{unit} (n = 1)"
        if self.log:
            return f"{self.mean:{fmt}}{unit} [{self.lo:{fmt}}, {self.hi:{fmt}}] (n = {self.n})"
        return (
            f"{self.mean:{fmt}}{unit} ± {self.std_error:.2g} "
            f"[{self.lo:{fmt}}, {self.hi:{fmt}}] (n = {self.n})"
        )


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
    if n < 2:
        lo = hi = mean
        se = float("nan")
    else:
        se = float(v.std(ddof=1) / np.sqrt(n))
        half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * se
        lo, hi = mean - half, mean + half
    if log:
        # a geometric mean; its standard error is reported as a relative one
        return Interval(n, float(np.exp(mean)), se, float(np.exp(lo)), float(np.exp(hi)), True)
    return Interval(n, mean, se, lo, hi)


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
    if iv.hi < lo or iv.lo > hi:
        side = "below" if iv.hi < lo else "above"
        if iv.lo > null:
            why = f"the effect has the claimed sign but its 95% interval lies {side} the claim"
        elif iv.hi < null:
            why = "the effect has the opposite sign"
        else:
            why = f"the 95% interval lies {side} the claim and includes no effect"
        return NOT_SUPPORTED, why
    if iv.lo > null and lo <= iv.mean <= hi:
        return SUPPORTED, "the estimate lies in the claim and the 95% interval excludes no effect"
    if iv.lo > null:
        return INCONCLUSIVE, "the estimate lies outside the claim, but the 95% interval reaches it"
    return INCONCLUSIVE, "the 95% interval includes both the claim and no effect"


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
    if iv.lo > null:
        return SUPPORTED, "the 95% interval excludes no effect"
    if iv.hi < null:
        return NOT_SUPPORTED, "the effect has the opposite sign (95% interval)"
    return INCONCLUSIVE, "the 95% interval includes no effect"


def judge_implication(cases: list[tuple[bool, bool]], antecedent: str) -> tuple[str, str]:
    """Verdict on "A → B" from ``(A holds, B holds)`` per case."""
    relevant = [b for a, b in cases if a]
    if not relevant:
        return INCONCLUSIVE, f"no case had {antecedent} ({len(cases)} measured)"
    held = sum(relevant)
    if held == len(relevant):
        return SUPPORTED, f"held in all {len(relevant)} case(s) with {antecedent}"
    return NOT_SUPPORTED, f"failed in {len(relevant) - held} of {len(relevant)} case(s)"


def paired(values: dict[Any, tuple[list[float], list[float]]]) -> Interval:
    """Interval of per-unit differences ``mean(a) − mean(b)``, for units holding both.

    For groups that are not independent (the networks of one seed share their
    initialization): each seed gives one difference, and the t-interval is over seeds.
    """
    diffs = [float(np.mean(a) - np.mean(b)) for a, b in values.values() if len(a) and len(b)]
    if not diffs:
        raise ValueError("no unit holds both groups.")
    return interval(diffs)


def combine(verdicts: list[str]) -> str:
    """One verdict for a hypothesis made of several claims."""
    run = [v for v in verdicts if v != NOT_RUN]
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
    if log:
        return Interval(n, float(np.exp(d)), se, float(np.exp(lo)), float(np.exp(hi)), True)
    return Interval(n, d, se, lo, hi)


def judge_correlation(x: Any, y: Any, *, alpha: float = 0.05) -> tuple[str, str, float, float]:
    """Verdict on "``y`` grows with ``x``": Spearman's rank correlation and its p-value."""
    from scipy.stats import spearmanr

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return INCONCLUSIVE, f"too few distinct values ({x.size} cases)", float("nan"), 1.0
    rho, p = spearmanr(x, y)
    rho, p = float(rho), float(p)
    if p < alpha and rho > 0:
        return SUPPORTED, f"Spearman ρ = {rho:.2f}, p = {p:.2g}", rho, p
    if p < alpha and rho < 0:
        return NOT_SUPPORTED, f"opposite trend: Spearman ρ = {rho:.2f}, p = {p:.2g}", rho, p
    return INCONCLUSIVE, f"no significant trend: Spearman ρ = {rho:.2f}, p = {p:.2g}", rho, p
