"""Trace (Hutchinson, Hutch++) and spectral density (SLQ) against exact answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wasserstein_distance

import probecore as pc
from probecore.analytic import Quadratic, nn_like_spectrum
from probecore.testing.strategies import symmetric_matrices

# ----------------------------------------------------------------------------- SLQ


@given(
    data=symmetric_matrices(min_n=2, max_n=150, max_cond=1e6),
    n_steps=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=40)
def test_slq_weights_sum_to_one_and_nodes_inside_spectrum(data, n_steps, seed):
    A, lam = data
    n_steps = min(n_steps, lam.size)
    d = pc.spectral_density(A, n_probes=3, n_steps=n_steps, rng=seed)
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(d.weights >= 0)
    norm = np.max(np.abs(lam))
    slack = 4 * lam.size * np.finfo(float).eps * norm
    used = d.weights > 0
    assert np.all(d.nodes[used] <= lam[-1] + slack) and np.all(d.nodes[used] >= lam[0] - slack)
    # The broadened density integrates to one (the grid spans ±5σ around all nodes).
    np.testing.assert_allclose(np.trapezoid(d.density, d.grid), 1.0, atol=1e-5)
    assert d.n_matvecs <= 3 * n_steps


@pytest.mark.parametrize("seed", range(5))
def test_slq_first_two_moments_within_three_standard_errors(seed):
    lam = nn_like_spectrum(400, rng=seed)
    q = Quadratic.from_spectrum(lam, rng=seed + 100)
    d = pc.spectral_density(q, n_probes=20, n_steps=10, rng=seed)
    # Gauss quadrature with m nodes is exact for degree <= 2m − 1, so each probe's
    # moment is exactly vᵀH^p v; the only error is Monte Carlo, measured by the SE.
    for p, exact in ((1, lam.mean()), (2, np.mean(lam**2))):
        est, se = d.moment(p)
        assert se > 0
        assert abs(est - exact) <= 3 * se, (p, est, exact, se)


def test_intervals_are_student_t_over_the_probes():
    """Half-widths use t with n − 1 degrees of freedom (the SE is estimated from n values).

    SLQ moment intervals are a scaled chi-square fit instead: tests/test_density_coverage.py.
    """
    from scipy import stats

    lam = nn_like_spectrum(200, rng=1)
    q = Quadratic.from_spectrum(lam, rng=2)
    d = pc.spectral_density(q, n_probes=5, n_steps=10, rng=0)
    tr = pc.hutchpp(q, n_matvecs=30, rng=0)
    t = stats.t.ppf(0.95, tr.samples.size - 1)
    assert tr.confidence_interval(0.90) == (
        pytest.approx(tr.estimate - t * tr.std_error),
        pytest.approx(tr.estimate + t * tr.std_error),
    )
    assert tr.confidence_interval(z=1.96) == (
        pytest.approx(tr.estimate - 1.96 * tr.std_error),
        pytest.approx(tr.estimate + 1.96 * tr.std_error),
    )
    with pytest.raises(ValueError, match="`confidence` must lie strictly between 0 and 1"):
        tr.confidence_interval(1.0)
    with pytest.raises(ValueError, match="`confidence`"):
        d.moment_interval(1, confidence=1.96)


def test_moments_beyond_exact_quadrature_warn():
    lam = nn_like_spectrum(100, rng=0)
    d = pc.spectral_density(Quadratic.from_spectrum(lam, rng=1), n_probes=3, n_steps=4, rng=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d.moment(7)  # 2m - 1 = 7: exact, no warning
    with pytest.warns(
        RuntimeWarning, match=r"exact only up to degree 2m - 1 = 7.*n_steps >= 5"
    ) as w:
        d.moment(8)
    assert w[0].filename == __file__  # the caller's line, not probecore's


def test_slq_moments_are_exact_quadrature_per_probe():
    lam = nn_like_spectrum(100, rng=3)
    q = Quadratic.from_spectrum(lam, rng=4)
    A = q.hessian()
    gen = np.random.default_rng(9)
    d = pc.spectral_density(q, n_probes=4, n_steps=5, rng=gen)
    # Recreate the probes from the recorded generator state and compare vᵀA³v exactly.
    replay = np.random.Generator(np.random.PCG64())
    replay.bit_generator.state = d.seed["bit_generator_state"]
    Z = replay.standard_normal((100, 4))
    Z /= np.linalg.norm(Z, axis=0)
    exact = np.einsum("ip,ip->p", Z, np.linalg.matrix_power(A, 3) @ Z)
    quad = np.sum(d.weights * d.nodes**3, axis=1)
    np.testing.assert_allclose(quad, exact, rtol=1e-10, atol=1e-10 * 100**3)


def test_slq_wasserstein_under_one_percent_with_defaults():
    lam = nn_like_spectrum(2000, rng=0)
    q = Quadratic.from_spectrum(lam, rng=1)
    d = pc.spectral_density(q, rng=0)  # documented defaults
    assert d.n_matvecs == 300
    nodes, weights = d.pooled()
    np.testing.assert_allclose(weights.sum(), 1.0, atol=1e-12)
    w1 = wasserstein_distance(nodes, lam, u_weights=weights)
    assert w1 < 0.01 * (lam[-1] - lam[0])


def test_slq_without_reorthogonalization_still_sums_to_one():
    q = Quadratic.from_spectrum(nn_like_spectrum(300, rng=2), rng=3)
    d = pc.spectral_density(q, n_steps=40, reorthogonalize=False, rng=0)
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, atol=1e-12)
    assert d.metadata["reorthogonalize"] is False


def test_slq_full_krylov_space_recovers_exact_spectrum():
    lam = np.array([-2.0, 0.5, 0.5, 1.0, 3.0, 3.0, 3.0, 7.0])
    q = Quadratic.from_spectrum(lam, rng=0)
    d = pc.spectral_density(q, n_probes=1, n_steps=8, rng=0)
    # The Krylov space of a single vector sees each distinct eigenvalue once.
    support = d.nodes[0][d.weights[0] > 1e-14]
    np.testing.assert_allclose(np.unique(np.round(support, 10)), np.unique(lam), atol=1e-10)
    assert d.metadata["steps_taken"] == [5]


# --------------------------------------------------------------------------- trace


def _low_rank_plus_bulk(dim=300, seed=0):
    lam = np.concatenate(
        [
            np.array([100.0, 60.0, 40.0, 25.0, 10.0]),
            np.random.default_rng(seed).uniform(0.0, 0.2, dim - 5),
        ]
    )
    return Quadratic.from_spectrum(lam, rng=seed), lam


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_confidence_coverage_over_200_seeds(method):
    q, lam = _low_rank_plus_bulk()
    A = q.hessian()
    truth = lam.sum()
    inside = 0
    for seed in range(200):
        if method == "hutchinson":
            r = pc.hutchinson(A, n_probes=30, rng=seed)
        else:
            r = pc.hutchpp(A, n_matvecs=60, rng=seed)
        inside += abs(r.estimate - truth) <= 3 * r.std_error
    assert inside >= 0.97 * 200, inside


def test_hutchpp_beats_hutchinson_on_low_rank_plus_bulk():
    q, lam = _low_rank_plus_bulk()
    A = q.hessian()
    truth = lam.sum()
    budget = 60
    err_h = [abs(pc.hutchinson(A, n_probes=budget, rng=s).estimate - truth) for s in range(50)]
    err_pp = [abs(pc.hutchpp(A, n_matvecs=budget, rng=s).estimate - truth) for s in range(50)]
    assert pc.hutchpp(A, n_matvecs=budget, rng=0).n_matvecs == budget
    assert np.mean(err_pp) < np.mean(err_h) / 5, (np.mean(err_pp), np.mean(err_h))


@given(data=symmetric_matrices(min_n=2, max_n=100, max_cond=1e4), seed=st.integers(0, 2**16))
@settings(max_examples=30)
def test_trace_estimators_are_unbiased_in_aggregate(data, seed):
    A, lam = data
    truth = lam.sum()
    r = pc.hutchinson(A, n_probes=400, rng=seed)
    scale = np.linalg.norm(lam) * np.sqrt(2.0 / 400)  # SD bound for Rademacher probes
    assert abs(r.estimate - truth) <= 6 * scale + 1e-12 * np.abs(lam).sum()
    assert r.n_matvecs == 400


def test_hutchinson_exact_on_diagonal_with_rademacher():
    r = pc.hutchinson(np.diag([1.0, -2.0, 5.0]), n_probes=5, rng=0)
    assert r.estimate == pytest.approx(4.0, abs=1e-14) and r.std_error == pytest.approx(0.0)


def test_gaussian_probes_and_batching_agree_in_distribution():
    q, lam = _low_rank_plus_bulk(dim=100)
    a = pc.hutchinson(q, n_probes=64, batch_size=64, rng=3)
    b = pc.hutchinson(q, n_probes=64, batch_size=5, rng=3)
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-12)
    g = pc.hutchinson(q, n_probes=2000, distribution="gaussian", rng=1)
    assert abs(g.estimate - lam.sum()) <= 4 * g.std_error


def test_hutchpp_exact_when_sketch_spans_range():
    lam = np.concatenate([[5.0, 3.0, -2.0], np.zeros(47)])
    q = Quadratic.from_spectrum(lam, rng=0)
    r = pc.hutchpp(q, n_matvecs=30, rng=0)
    assert r.metadata["sketch_rank"] == 3
    assert r.estimate == pytest.approx(6.0, abs=1e-10)
    assert r.std_error == pytest.approx(0.0, abs=1e-10)


def test_long_estimators_show_a_progress_bar_counting_hvps(capfd):
    from probecore.analytic import Quadratic

    q = Quadratic.from_spectrum(np.linspace(1.0, 5.0, 40), rng=0)
    A = (q, q.x0)
    calls = {
        "power_iteration": lambda p: pc.power_iteration(A, rng=0, progress=p),
        "lanczos": lambda p: pc.lanczos(A, k=3, rng=0, progress=p),
        "hutchinson": lambda p: pc.hutchinson(A, n_probes=8, rng=0, progress=p),
        "hutchpp": lambda p: pc.hutchpp(A, n_matvecs=30, rng=0, progress=p),
        "spectral_density": lambda p: pc.spectral_density(
            A, n_probes=2, n_steps=10, rng=0, progress=p
        ),
    }
    for name, call in calls.items():
        quiet = call(False)
        assert name not in capfd.readouterr().err
        shown = call(True)
        err = capfd.readouterr().err
        assert name in err and "HVP" in err, name
        assert quiet.n_matvecs == shown.n_matvecs, name  # the bar changes nothing else
        with pytest.raises(TypeError, match="`progress`"):
            call("yes")
