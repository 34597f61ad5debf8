"""The error checks of a finite-difference rays run: rounding, the centre, truncation, kinks."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from probecore._contract.errors import caller_stacklevel

__all__ = [
    "CHECK_FIELDS",
    "JITTER",
    "KINK_RELATIVE",
    "KINK_SIGMAS",
    "N_CENTER",
    "negative_share_bounds",
    "ray_errors",
]

# The checks of `rays(check=True)` (docs/landscape.md, "Errors of κ"): the stored columns
# beyond L(x ± εd), the rays that also carry a jitter pair, its step as a share of ε, and
# the kink threshold (rounding standard deviations; share of the ray's own curvature).
CHECK_FIELDS = ("loss_plus_half", "loss_minus_half", "loss_center_plus", "loss_center_minus")
N_CENTER = 32
JITTER = 1 / 16
KINK_SIGMAS = 5.0
KINK_RELATIVE = 0.1


def negative_share_bounds(k: np.ndarray, w: float, confidence: float) -> np.ndarray:
    """Wilson bounds on the negative share of ``k`` when each value may be off by ``w``.

    The lower bound of the share below ``−w`` and the upper bound of the share below
    ``+w``, at level ``confidence``.
    """
    from scipy import stats

    lo = stats.binomtest(int(np.sum(k < -w)), k.size).proportion_ci(confidence, "wilson").low
    hi = stats.binomtest(int(np.sum(k < w)), k.size).proportion_ci(confidence, "wilson").high
    return np.array([lo, hi])


def ray_errors(
    values: dict[str, np.ndarray],
    done: np.ndarray,
    kappa: np.ndarray,
    *,
    loss0: float,
    eps: float,
    dtype: Any,
    confidence: float,
) -> dict[str, Any]:
    r"""Rounding, centre, truncation and kink estimates of a checked rays run.

    With ``σ`` the rounding noise of one loss value, ray ``i`` has
    ``κ_i(ε) = c_i + a_i ε² + (n_i⁺ + n_i⁻ − 2δ₀)/ε²`` (``c_i = dᵢᵀHdᵢ``; ``n``, ``δ₀``
    the rounding of ``L(x ± εd)`` and of ``L(x)``), and ``κ_i(ε/2)`` the same with
    ``a_i ε²/4`` and ``4/ε²``. The jitter pairs ``p_j = (L(x+ηd_j) + L(x−ηd_j))/2 −
    η²κ_j(η)/2`` (``η = JITTER·ε``; ``κ_j(η)`` from the two steps) are ``L(x)`` up to
    rounding alone: their spread gives
    ``σ`` (``loss_noise``, at least ``eps_mach·|L|/2``) and, averaged with ``L(x)``, an
    estimate of ``δ₀`` whose error has standard deviation ``σ/√(1 + 2m)``. So

    - ``center_shift`` = ``−2δ̂₀/ε²``, the shift of every κ, removed in the total
      intervals; ``center_error`` = ``2σ/(ε²√(1+2m))``, the standard deviation left;
    - ``Δ_i = κ_i(ε) − κ_i(ε/2) = ¾a_iε² + noise`` of standard deviation
      ``√34·σ/ε²`` (plus ``3·center_error`` shared); a ray is ``kinked`` when
      ``|Δ_i| > KINK_SIGMAS·(√34·σ/ε² + 3·center_error) + KINK_RELATIVE·max|κ_i|``:
      beyond what rounding allows, its curvature changed by more than ``KINK_RELATIVE``
      of itself between ``ε`` and ``ε/2`` (a kink within ``±ε`` adds ``O(1/ε)``);
    - ``truncation_bias`` = ``4/3·mean(Δ)`` over the rays not kinked;
    - ``mean_total_ci``: the Student-t interval of the corrected κ of the rays not kinked,
      with ``center_error`` added in quadrature to the standard error, widened by
      ``|truncation_bias|`` on both sides (conservative); ``negative_fraction_total_ci``:
      the Wilson bounds of the share below ``−w`` and below ``+w``, ``w`` =
      ``t·center_error + |truncation_bias|``.

    Returns
    -------
    dict
        The :class:`RayResult` fields ``kappa_half``, ``kinked``, ``n_kinked``,
        ``n_center``, ``loss_noise``, ``center_shift``, ``center_error``,
        ``truncation_bias``, ``mean_total_ci``, ``negative_fraction_total_ci``.
    """
    from scipy import stats

    u = float(np.finfo(np.dtype(dtype)).eps)
    lph, lmh, lcp, lcm = (values[name] for name in CHECK_FIELDS)
    with np.errstate(invalid="ignore", over="ignore"):
        half = np.where(done, (lph - 2 * loss0 + lmh) / (eps / 2) ** 2, np.nan)
        # κ at the jitter step η: κ(h) = c + a·h², a from the two steps (exact to degree 4)
        at_eta = kappa - 4 / 3 * (kappa - half) * (1 - JITTER**2)
        pairs = (lcp + lcm) / 2 - (eps * JITTER) ** 2 / 2 * at_eta
    pairs = pairs[done & np.isfinite(pairs) & np.isfinite(kappa)]
    m = pairs.size
    sigma = u * abs(loss0) / 2
    if m >= 2:
        spread = 1.4826 * np.median(np.abs(pairs - np.median(pairs)))
        keep = pairs if spread == 0 else pairs[np.abs(pairs - np.median(pairs)) <= 5 * spread]
        if keep.size >= 2:
            sigma = max(sigma, math.sqrt(2.0) * float(np.std(keep, ddof=1)))
    centre = (loss0 + 2 * float(np.sum(pairs))) / (1 + 2 * m) if math.isfinite(loss0) else loss0
    shift = -2 * (loss0 - centre) / eps**2
    center_error = 2 * sigma / (eps**2 * math.sqrt(1 + 2 * m))
    k1, k2 = kappa - shift, half - 4 * shift
    finite = done & np.isfinite(k1) & np.isfinite(k2)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = k1 - k2
        tol = KINK_SIGMAS * (math.sqrt(34.0) * sigma / eps**2 + 3 * center_error)
        kinked = finite & (np.abs(diff) > tol + KINK_RELATIVE * np.maximum(np.abs(k1), np.abs(k2)))
    smooth = finite & ~kinked
    n = int(smooth.sum())
    bias = 4 / 3 * float(np.mean(diff[smooth])) if n else math.nan
    total = np.array([math.nan, math.nan])
    neg_total = np.array([math.nan, math.nan])
    if n >= 2:
        k = k1[smooth]
        t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
        half_width = t * math.hypot(float(np.std(k, ddof=1)) / math.sqrt(n), center_error)
        half_width += abs(bias)
        total = np.array([np.mean(k) - half_width, np.mean(k) + half_width])
        neg_total = negative_share_bounds(k, t * center_error + abs(bias), confidence)
    n_kinked = int(kinked.sum())
    if n_kinked:
        warnings.warn(
            f"{n_kinked} of {int(finite.sum())} rays changed curvature between ε = {eps:.3g} "
            "and ε/2 by more than rounding and smooth truncation allow: a kink (a ReLU's "
            "activation pattern changing) within ±ε, where κ is not dᵀHd. `kinked` marks "
            "them and mean_total_ci leaves them out. A smaller `eps` (float64) avoids them; "
            "curvature='hessian' measures dᵀHd with one HVP per ray and no step (the route "
            "in float32, where rounding forbids a small step).",
            RuntimeWarning,
            stacklevel=caller_stacklevel(),
        )
    return {
        "kappa_half": half,
        "kinked": kinked,
        "n_kinked": n_kinked,
        "n_center": m,
        "loss_noise": sigma,
        "center_shift": shift,
        "center_error": center_error,
        "truncation_bias": bias,
        "mean_total_ci": total,
        "negative_fraction_total_ci": neg_total,
    }
