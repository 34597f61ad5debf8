"""Coverage of ``SpectralDensity.moment_interval``: the scaled chi-square interval."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import probecore as pc
from probecore.analytic import Quadratic, nn_like_spectrum


def _density(nodes, weights, dim):
    nodes = np.asarray(nodes, dtype=np.float64)
    return pc.SpectralDensity(
        grid=np.linspace(-1.0, 1.0, 3),
        density=np.zeros(3),
        nodes=nodes,
        weights=np.asarray(weights, dtype=np.float64),
        sigma=0.1,
        dim=dim,
        n_matvecs=nodes.size,
    )


def test_interval_formula_by_hand():
    # Two probes, d = 10. p = 1: the probe values are Σ τθ = 2.9 and 0.9, mean 1.9; the
    # centred second moments Σ τ(θ − 1.9)² are 6.49 and 1.54, so
    # Var = 2·(6.49 + 1.54)/2 / ((d + 2)·N) = 4.015/12; the smallest node is −1, so the
    # shift is c = −1, the excess 2.9 and ν = 2·2.9²/Var = 50.27 (above the floor
    # N(d + 2)/(d − 1) = 8/3).
    d = _density([[-1.0, 2.0, 5.0], [0.5, 1.0, 3.0]], [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], 10)
    nu = 2 * 2.9**2 / (4.015 / 12)
    q_lo, q_hi = stats.chi2.ppf([0.025, 0.975], nu)
    lo, hi = d.moment_interval(1)
    assert (lo, hi) == (pytest.approx(-1 + 2.9 * nu / q_hi), pytest.approx(-1 + 2.9 * nu / q_lo))
    assert lo < d.moment(1)[0] < hi
    assert hi - d.moment(1)[0] > d.moment(1)[0] - lo  # skewed upwards, like a chi-square
    # A wider level gives a wider interval.
    lo90, hi90 = d.moment_interval(1, confidence=0.9)
    assert lo < lo90 < hi90 < hi


def test_interval_degrees_of_freedom_floor():
    # One probe, d = 10, nodes 0 and 10 with weights 0.95 and 0.05: mean 0.5, centred
    # second moment 0.05·0.95·100 = 4.75, Var = 2·4.75/12, plug-in ν = 2·0.25/Var = 0.63.
    # No spectrum on 10 points gives fewer than N(d + 2)/(d − 1) = 4/3 degrees of freedom
    # (all of the trace on one eigenvalue), so ν = 4/3. Shift 0 (all nodes >= 0).
    d = _density([[0.0, 10.0]], [[0.95, 0.05]], 10)
    nu = 12 / 9
    q_lo, q_hi = stats.chi2.ppf([0.025, 0.975], nu)
    assert d.moment_interval(1) == (pytest.approx(0.5 * nu / q_hi), pytest.approx(0.5 * nu / q_lo))
    # A point spectrum has no variance: the interval is the point.
    assert _density([[2.0, 2.0, 2.0]], [[0.5, 0.3, 0.2]], 10).moment_interval(2) == (4.0, 4.0)


def test_too_few_steps_falls_back_to_student_t():
    lam = nn_like_spectrum(200, rng=1)
    d = pc.spectral_density(Quadratic.from_spectrum(lam, rng=2), n_probes=5, n_steps=2, rng=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d.moment_interval(1)  # degree 2 <= 2m − 1 = 3: the plug-in variance is exact
    with pytest.warns(RuntimeWarning, match=r"degree 2p = 4.*n_steps >= 3"):
        lo, hi = d.moment_interval(2)
    est, se = d.moment(2)
    t = stats.t.ppf(0.975, 4)  # 2.78
    assert (lo, hi) == (pytest.approx(est - t * se), pytest.approx(est + t * se))
    with pytest.raises(ValueError, match="`confidence` must lie strictly between 0 and 1"):
        d.moment_interval(1, confidence=1.0)
    with pytest.raises(ValueError, match="`p`"):
        d.moment_interval(-1)


def _groups(lam, n_probes, n_groups, seed):
    """``n_groups`` independent SLQ results of ``n_probes`` probes each, from one run.

    Probes are independent, so the rows of one ``n_groups·n_probes``-probe run split into
    groups are distributed like separate runs (and cost one Lanczos call).
    """
    q = Quadratic.from_spectrum(lam, rng=seed)
    big = pc.spectral_density(q.hessian(), n_probes=n_probes * n_groups, n_steps=3, rng=seed)
    for g in range(n_groups):
        rows = slice(g * n_probes, (g + 1) * n_probes)
        yield _density(big.nodes[rows], big.weights[rows], big.dim)


@pytest.mark.parametrize(("n_probes", "n_groups"), [(5, 2000), (20, 500)])
def test_coverage_on_an_outlier_dominated_spectrum(n_probes, n_groups):
    # 200 eigenvalues whose five largest carry 94% of tr(H²): vᵀHv and vᵀH²v are then
    # skewed, chi-square-like sums, where ± Student-t standard errors undercover (their
    # standard error is small exactly when the estimate is). n_steps = 3 makes the
    # quadrature exact up to degree 5, enough for the variance of moment 2.
    lam = nn_like_spectrum(200, rng=0)
    exact = {1: lam.mean(), 2: np.mean(lam**2)}
    t = stats.t.ppf(0.975, n_probes - 1)
    hits = {(p, k): 0 for p in (1, 2) for k in ("chi2", "t")}
    for d in _groups(lam, n_probes, n_groups, seed=n_probes):
        for p in (1, 2):
            lo, hi = d.moment_interval(p)
            hits[p, "chi2"] += lo <= exact[p] <= hi
            est, se = d.moment(p)
            hits[p, "t"] += abs(est - exact[p]) <= t * se
    # Threshold 0.925·n_groups for 5 probes (1850 of 2000): an interval whose true coverage
    # were 0.90 reaches it with binomial probability P(X >= 1850 | n=2000, p=0.90) ≈ 1e-4
    # (mean 1800, sd 13.4: 3.7 sd), one at 0.95 misses it with ≈ 1e-7 (5 sd); measured
    # 94–95% over 2000+ simulated seeds. For 20 probes 0.92·500 = 460 sits 2.4 sd below
    # 0.95 (sd 4.9) and 1.5 sd above 0.90 (sd 6.7). The Student-t interval's count on the
    # same seeds is asserted below the threshold for moment 2: the check can fail.
    need = 0.925 * n_groups if n_probes == 5 else 0.92 * n_groups
    for p in (1, 2):
        assert hits[p, "chi2"] >= need, (p, hits)
    assert hits[2, "t"] < need, hits
