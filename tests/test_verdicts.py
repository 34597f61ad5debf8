"""The rules that turn the study's measurements into verdicts (probecore_study.verdicts)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from probecore_study import verdicts as V
from scipy import stats


def test_interval_matches_scipy_t_interval():
    x = np.array([1.0, 2.5, 2.0, 4.0])
    iv = V.interval(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (iv.n, iv.mean) == (4, pytest.approx(2.375))
    assert iv.std_error == pytest.approx(stats.sem(x))
    assert (iv.lo, iv.hi) == (pytest.approx(lo), pytest.approx(hi))


def test_log_interval_is_the_geometric_one():
    iv = V.interval([2.0, 8.0], log=True)
    assert iv.mean == pytest.approx(4.0) and iv.log
    half = stats.t.ppf(0.975, 1) * stats.sem(np.log([2.0, 8.0]))
    assert iv.lo == pytest.approx(4.0 * np.exp(-half))
    assert "×" in iv.text(unit="×") and "±" not in iv.text(unit="×")
    with pytest.raises(ValueError, match="positive"):
        V.interval([1.0, -1.0], log=True)


def test_interval_coverage_converges_to_its_level():
    # 2000 intervals of 5 normal draws: coverage is Binomial(2000, 0.95)/2000, whose
    # standard deviation is 0.0049; 4 of them bound the miss.
    gen = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        iv = V.interval(gen.normal(3.0, 2.0, size=5))
        hits += iv.lo <= 3.0 <= iv.hi
    assert abs(hits / 2000 - 0.95) < 4 * np.sqrt(0.95 * 0.05 / 2000)


def test_difference_is_welchs_interval():
    a, b = [5.0, 6.0, 7.5], [1.0, 2.0, 2.5, 4.0]
    d = V.difference(a, b)
    res = stats.ttest_ind(a, b, equal_var=False)
    lo, hi = res.confidence_interval(0.95)
    assert d.mean == pytest.approx(np.mean(a) - np.mean(b))
    assert (d.lo, d.hi) == (pytest.approx(lo), pytest.approx(hi))
    r = V.difference([4.0, 4.0], [2.0, 2.0], log=True)
    assert r.mean == pytest.approx(2.0) and r.lo == r.hi == pytest.approx(2.0)


@pytest.mark.parametrize(
    "values, verdict",
    [
        ([3.5, 4.0, 4.5], V.SUPPORTED),  # inside the claim, away from no effect
        ([1.5, 1.6, 1.7], V.NOT_SUPPORTED),  # right sign, below the claim
        ([0.5, 0.6, 0.55], V.NOT_SUPPORTED),  # opposite sign
        ([0.5, 6.0, 2.0], V.INCONCLUSIVE),  # too spread to tell
        ([4.0], V.INCONCLUSIVE),  # one seed
    ],
)
def test_judge_range(values, verdict):
    iv = V.interval(values, log=True)
    assert V.judge_range(iv, 3.0, 5.0, null=1.0)[0] == verdict


def test_judge_range_explains_why():
    v, why = V.judge_range(V.interval([1.5, 1.6, 1.7], log=True), 3.0, 5.0, null=1.0)
    assert v == V.NOT_SUPPORTED and "claimed sign" in why and "below" in why
    v, why = V.judge_range(V.interval([0.5, 0.6, 0.55], log=True), 3.0, 5.0, null=1.0)
    assert "opposite" in why


@given(st.lists(st.floats(-100, 100), min_size=2, max_size=8))
def test_judge_sign_agrees_with_the_interval(values):
    iv = V.interval(values)
    verdict, _ = V.judge_sign(iv)
    if not iv.std_error > 0 and iv.n < 3:  # no spread between two values: no error estimate
        assert verdict == V.INCONCLUSIVE
    elif iv.lo > 0:
        assert verdict == V.SUPPORTED
    elif iv.hi < 0:
        assert verdict == V.NOT_SUPPORTED
    else:
        assert verdict == V.INCONCLUSIVE


def test_judge_implication():
    assert V.judge_implication([(True, True), (False, False)], "A")[0] == V.SUPPORTED
    assert V.judge_implication([(True, True), (True, False)], "A")[0] == V.NOT_SUPPORTED
    verdict, why = V.judge_implication([(False, True)], "barrier < 0.5")
    assert verdict == V.INCONCLUSIVE and "no case had barrier < 0.5" in why


def test_judge_correlation():
    x = np.arange(10.0)
    assert V.judge_correlation(x, x**2)[0] == V.SUPPORTED
    assert V.judge_correlation(x, -x)[0] == V.NOT_SUPPORTED
    assert V.judge_correlation(x[:3], x[:3])[0] == V.INCONCLUSIVE  # too few cases
    y = np.random.default_rng(1).permutation(x)
    assert V.judge_correlation(x, y)[2:] == pytest.approx(tuple(stats.spearmanr(x, y)))


def test_combine():
    assert V.combine([V.SUPPORTED, V.SUPPORTED]) == V.SUPPORTED
    assert V.combine([V.SUPPORTED, V.INCONCLUSIVE]) == V.INCONCLUSIVE
    assert V.combine([V.INCONCLUSIVE, V.NOT_SUPPORTED]) == V.NOT_SUPPORTED
    assert V.combine([V.NOT_RUN]) == V.NOT_RUN


def test_an_estimate_outside_the_claim_is_not_support():
    # 1.5× with an interval that reaches 3: the effect is there, its claimed size is not shown
    iv = V.Interval(n=3, mean=1.5, std_error=0.2, lo=1.05, hi=3.1, log=True)
    verdict, why = V.judge_range(iv, 3.0, 5.0, null=1.0)
    assert verdict == V.INCONCLUSIVE and "outside the claim" in why


def test_two_equal_values_give_no_verdict():
    # counts and accuracies on a finite test set repeat; two equal ones are not certainty
    iv = V.interval([2.0, 2.0])
    assert iv.std_error == 0 and iv.lo == iv.hi == 2.0
    assert V.judge_sign(iv)[0] == V.INCONCLUSIVE
    assert V.judge_range(iv, 1.0, 3.0, null=0.0)[0] == V.INCONCLUSIVE
    assert V.judge_sign(V.interval([2.0, 2.0, 2.0]))[0] == V.SUPPORTED


def test_paired_differences_are_taken_per_unit():
    per_seed = {0: ([10.0, 12.0], [20.0]), 1: ([11.0], [19.0]), 2: ([], [5.0])}
    iv = V.paired(per_seed)  # seed 2 holds one group only and is left out
    assert iv.n == 2 and iv.mean == pytest.approx(np.mean([11.0 - 20.0, 11.0 - 19.0]))
    with pytest.raises(ValueError, match="both groups"):
        V.paired({0: ([], [1.0])})


@pytest.mark.parametrize(
    "x, text",
    [
        (38090, "38,090"),  # counts in full
        (0.7794, "0.779"),  # three significant figures
        (0.932, "0.932"),
        (1.9604, "1.96"),
        (9.996, "10.0"),  # rounded before the digits are chosen
        (0.0009509, "9.51×10⁻⁴"),  # below 1e-3: scientific, never 0.000951
        (3.376e-06, "3.38×10⁻⁶"),
        (123456.0, "1.23×10⁵"),
        (-2.5, "−2.50"),  # a minus sign, not a hyphen
        (0.0, "0"),
        (float("nan"), "n/a"),
    ],
)
def test_numbers_have_three_significant_figures(x, text):
    from probecore_study.numbers import fmt, parse

    assert fmt(x) == text
    if text != "n/a":
        assert parse(text) == pytest.approx(x, rel=5e-3, abs=0)


def test_fmt_refuses_a_bool():
    from probecore_study.numbers import fmt

    with pytest.raises(TypeError, match="`x` must be a number"):
        fmt(True)


def test_p_values_are_scipys():
    x = np.array([1.2, 0.8, 1.9, 1.4, 0.3])
    assert V.interval(x).p == pytest.approx(stats.ttest_1samp(x, 0.0).pvalue, rel=1e-12)
    r = np.array([1.5, 2.2, 1.9])
    iv = V.interval(r, log=True)
    assert iv.p == pytest.approx(stats.ttest_1samp(np.log(r), 0.0).pvalue, rel=1e-12)
    assert iv.record()["null"] == 1.0 and iv.record()["scale"] == "log ratio"
    a, b = [5.0, 6.0, 7.5], [1.0, 2.0, 2.5, 4.0]
    welch = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert V.difference(a, b).p == pytest.approx(welch, rel=1e-12)
    per_seed = {0: ([3.0], [1.0]), 1: ([4.0], [1.5]), 2: ([2.5], [1.2])}
    iv = V.paired(per_seed)
    assert iv.p == pytest.approx(stats.ttest_rel([3.0, 4.0, 2.5], [1.0, 1.5, 1.2]).pvalue)
    assert iv.test.startswith("paired")


def test_records_hold_numbers_not_strings():
    rec = V.interval([1.0, 2.0, 4.0]).record()
    assert set(rec) >= {"estimate", "ci_low", "ci_high", "n", "test", "p", "std_error"}
    assert all(isinstance(rec[k], float) for k in ("estimate", "ci_low", "ci_high", "p"))
    assert V.interval([3.0]).record()["p"] is None  # no error estimate: no p-value


def test_interval_text_labels_its_interval():
    text = V.interval([1.0, 2.0, 4.0]).text()
    assert text.startswith("2.33 (95% CI [") and text.endswith("; n = 3)")
    assert V.interval([3.0]).text() == "3.00 (n = 1, no interval)"


def test_no_effect_is_named_as_zero_or_a_ratio_of_one():
    _, why = V.judge_sign(V.interval([-1.0, 1.0, 0.5]))
    assert why == "the 95% interval includes 0 (the no-effect value)"
    _, why = V.judge_range(V.interval([0.5, 6.0, 2.0], log=True), 3.0, 5.0, null=1.0)
    assert "a ratio of 1 (the no-effect value)" in why


def test_a_confounded_claim_leaves_its_hypothesis_inconclusive():
    assert V.combine([V.SUPPORTED, V.CONFOUNDED]) == V.INCONCLUSIVE
    assert V.combine([V.CONFOUNDED, V.NOT_SUPPORTED]) == V.NOT_SUPPORTED
    assert V.combine([V.CONFOUNDED]) == V.INCONCLUSIVE


def test_values_all_at_no_effect_say_so():
    # five seeds with no negative rays at all: an interval [0, 0], not "includes 0"
    verdict, why = V.judge_sign(V.interval([0.0] * 5))
    assert verdict == V.INCONCLUSIVE and "every value equals 0 (the no-effect value)" in why


def test_an_implication_nothing_could_refute_is_not_support():
    # every model above 90%: "barrier < 0.5 -> both above 90%" could not have failed
    verdict, why = V.judge_implication([(True, True), (True, True), (False, True)], "A")
    assert verdict == V.INCONCLUSIVE and "no case could have refuted it" in why
    # B is the measurement itself ("every pair has a barrier < 0.5"): judged as it stands
    assert V.judge_implication([(True, True)] * 3, "A", relation=False)[0] == V.SUPPORTED
    assert V.judge_implication([(True, False), (True, True)], "A")[0] == V.NOT_SUPPORTED


def test_equal_values_carry_no_p_value():
    iv = V.interval([0.0] * 5)
    assert iv.std_error == 0 and np.isnan(iv.p) and iv.record()["p"] is None
    assert iv.text(" points") == "0 points (n = 5, every value equal: no interval)"
    assert np.isnan(V.difference([1.0, 1.0], [2.0, 2.0]).p)
