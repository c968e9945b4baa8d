"""The arithmetic behind the verdicts, each against a slow, obviously correct form: Holm
by closed testing over every subset, Benjamini-Hochberg by its step-up rule, the t-tests
against scipy's, power and minimum detectable differences against simulations with a
fixed seed, and the number of seeds against a plain loop."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from rkd.report.inference import (ONE_SIDED, TOST, TWO_SIDED, adjusted_level, benjamini_hochberg,
                                  decision_p_value, holm, minimum_detectable_difference, paired_p_value, power,
                                  seeds_needed)

ALPHA = 0.05


def p_vectors():
    rng = np.random.default_rng(1)
    yield [0.01, 0.04, 0.03, 0.005]
    yield [0.2, 0.2, 0.01, 0.2, 0.049]  # ties
    yield [0.0, 1.0, 0.5]
    yield [0.03]
    for m in (2, 3, 5, 6):
        for _ in range(20):
            yield (rng.uniform(0, 0.1, m) if rng.random() < 0.5 else rng.uniform(0, 1, m)).tolist()


def holm_by_closed_testing(p):
    """Holm is closed testing with Bonferroni local tests: hypothesis i is rejected at
    level a iff every subset S containing i has |S| * min_{j in S} p_j <= a, so its
    adjusted p-value is the largest such local p-value over those subsets."""
    m = len(p)
    adjusted = []
    for i in range(m):
        local = [min(1.0, len(s) * min(p[j] for j in s))
                 for size in range(1, m + 1) for s in itertools.combinations(range(m), size) if i in s]
        adjusted.append(max(local))
    return adjusted


@pytest.mark.parametrize("p", list(p_vectors()))
def test_holm_is_closed_testing_with_bonferroni(p):
    assert holm(p) == pytest.approx(holm_by_closed_testing(p), abs=1e-12)


def bh_rejections(p, q):
    """The step-up rule as Benjamini and Hochberg state it: the largest k with p_(k) <= k q / m;
    reject every hypothesis with p <= p_(k)."""
    m = len(p)
    ranked = sorted(p)
    passing = [k for k in range(1, m + 1) if ranked[k - 1] <= k * q / m]
    if not passing:
        return set()
    cut = ranked[max(passing) - 1]
    return {i for i in range(m) if p[i] <= cut}


@pytest.mark.parametrize("p", list(p_vectors()))
def test_benjamini_hochberg_rejects_as_the_step_up_rule(p):
    adjusted = benjamini_hochberg(p)
    for q in (0.001, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5):
        assert {i for i in range(len(p)) if adjusted[i] <= q} == bh_rejections(p, q), q
    assert all(a >= b - 1e-15 for a, b in zip(adjusted, p))


def test_adjustments_count_a_missing_test_as_one_and_refuse_nonsense():
    assert holm([0.01, math.nan]).tolist() == pytest.approx([0.02, 1.0])
    assert benjamini_hochberg([0.01, math.nan]).tolist() == pytest.approx([0.02, 1.0])
    with pytest.raises(ValueError, match="must lie in"):
        holm([1.5])


@pytest.mark.parametrize("p", list(p_vectors()))
def test_the_adjusted_level_agrees_with_the_adjusted_p_value(p):
    for adjust, bounds in ((holm, "holm"), (benjamini_hochberg, "bh")):
        adjusted, uncapped = adjust(p), adjust(p, cap=False)
        m = len(p)
        ranks = np.argsort(np.argsort(p, kind="stable"), kind="stable") + 1
        assert np.minimum(1, uncapped) == pytest.approx(adjusted)
        for raw, adj, free, rank in zip(p, adjusted, uncapped, ranks):
            level = adjusted_level(raw, free, ALPHA, fallback=ALPHA / m)
            if raw > 0:
                assert (raw < level) == (adj < ALPHA)
            if bounds == "holm" and raw > 0:  # never wider than Bonferroni, never narrower than the step
                assert ALPHA / m - 1e-15 <= level <= ALPHA / (m - rank + 1) + 1e-15
            if bounds == "bh" and raw > 0:
                assert level <= ALPHA + 1e-15


def differences(seed, n=6, shift=0.7):
    return np.random.default_rng(seed).normal(shift, 1.0, n)


@pytest.mark.parametrize("seed", range(5))
def test_p_values_are_scipys_t_tests(seed):
    d = differences(seed)
    mean, sd, n = d.mean(), d.std(ddof=1), d.size
    assert paired_p_value(mean, sd, n) == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    margin = 1.2
    one_sided = stats.ttest_1samp(d + margin, 0, alternative="greater").pvalue  # H0: delta <= -margin
    assert paired_p_value(mean, sd, n, ONE_SIDED, margin) == pytest.approx(one_sided)
    other_side = stats.ttest_1samp(d - margin, 0, alternative="less").pvalue  # H0: delta >= margin
    assert paired_p_value(mean, sd, n, TOST, margin) == pytest.approx(max(one_sided, other_side))


@pytest.mark.parametrize("seed", range(12))
def test_a_decision_is_significant_exactly_when_its_interval_lies_beyond_the_null(seed):
    d = differences(seed, n=5, shift=[0.0, 0.6, 1.1, 2.5][seed % 4])
    mean, sd, n = d.mean(), d.std(ddof=1), d.size
    margin = 1.0
    for level in (0.01, 0.05, 0.2):
        half = stats.t.ppf(1 - level / 2, n - 1) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
        inside, outside = -margin < low and high < margin, low > margin or high < -margin
        assert (decision_p_value(mean, sd, n, TOST, margin) < level) == (inside or outside)
        assert (decision_p_value(mean, sd, n, ONE_SIDED, margin) < level) == (low > -margin or high < -margin)
        assert (decision_p_value(mean, sd, n, TWO_SIDED) < level) == (low > 0 or high < 0)


def test_p_values_without_spread_or_without_seeds():
    assert paired_p_value(1.0, 0.0, 3) == 0.0 and paired_p_value(0.0, 0.0, 3) == 1.0
    assert paired_p_value(0.5, 0.0, 3, TOST, 1.0) == 0.0 and paired_p_value(1.5, 0.0, 3, TOST, 1.0) == 1.0
    assert paired_p_value(-0.5, 0.0, 3, ONE_SIDED, 1.0) == 0.0 and paired_p_value(-1.5, 0, 3, ONE_SIDED, 1.0) == 1
    assert math.isnan(paired_p_value(1.0, math.nan, 1)) and math.isnan(decision_p_value(1.0, 1.0, 1, TOST, 1.0))
    assert decision_p_value(1.5, 0.0, 3, TOST, 1.0) == 0.0 and decision_p_value(1.0, 0.0, 3, TOST, 1.0) == 1.0
    assert decision_p_value(-1.0, 0.0, 3, ONE_SIDED, 1.0) == 1.0
    with pytest.raises(ValueError, match="margin > 0"):
        paired_p_value(0.0, 1.0, 3, TOST)
    with pytest.raises(ValueError, match="unknown test"):
        paired_p_value(0.0, 1.0, 3, "three-sided")


def simulated_power(true_difference, n, alpha, test, margin=0.0, simulations=40_000, seed=0):
    """The fraction of simulated experiments (normal paired differences, sd 1) whose test rejects."""
    d = np.random.default_rng(seed).normal(true_difference, 1.0, (simulations, n))
    mean, se, df = d.mean(axis=1), d.std(axis=1, ddof=1) / math.sqrt(n), n - 1
    if test == TWO_SIDED:
        p = 2 * stats.t.sf(np.abs(mean) / se, df)
    else:
        lower = stats.t.sf((mean + margin) / se, df)
        p = lower if test == ONE_SIDED else np.maximum(lower, stats.t.cdf((mean - margin) / se, df))
    return float((p < alpha).mean())


# 40,000 simulations: the standard error of a power near 0.8 is 0.002; 0.012 is six of them
@pytest.mark.parametrize("n, alpha", [(3, 0.05), (5, 0.01), (10, 0.05 / 5)])
def test_the_minimum_detectable_difference_is_detected_80_percent_of_the_time(n, alpha):
    mdd = minimum_detectable_difference(1.0, n, alpha)
    assert power(mdd, 1.0, n, alpha) == pytest.approx(0.8, abs=1e-8)
    assert simulated_power(mdd, n, alpha, TWO_SIDED) == pytest.approx(0.8, abs=0.012)
    # the textbook approximation (t quantiles for both errors) is close to it
    approx = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(0.8, n - 1)
    assert approx / math.sqrt(n) == pytest.approx(mdd, rel=0.15)


@pytest.mark.parametrize("test, n, alpha", [(ONE_SIDED, 5, 0.05), (TOST, 5, 0.05), (TOST, 8, 0.01)])
def test_the_smallest_provable_margin_is_proven_80_percent_of_the_time(test, n, alpha):
    margin = minimum_detectable_difference(1.0, n, alpha, test=test)
    assert simulated_power(0.0, n, alpha, test, margin) == pytest.approx(0.8, abs=0.012)
    assert simulated_power(0.0, n, alpha, test, margin * 0.7) < 0.7


def test_power_of_the_one_sided_test_is_the_noncentral_t():
    n, alpha, margin = 6, 0.05, 1.3
    shift = margin * math.sqrt(n)
    expected = 1 - stats.nct.cdf(stats.t.ppf(1 - alpha, n - 1), n - 1, shift)
    assert power(margin, 1.0, n, alpha, ONE_SIDED) == pytest.approx(expected)


def test_the_mdd_scales_with_the_spread_and_falls_with_seeds():
    assert minimum_detectable_difference(2.5, 5, 0.05) == pytest.approx(2.5 * minimum_detectable_difference(1, 5, 0.05))
    mdds = [minimum_detectable_difference(1.0, n, 0.01) for n in range(2, 30)]
    assert all(a > b for a, b in zip(mdds, mdds[1:]))
    assert minimum_detectable_difference(0.0, 5, 0.05) == 0.0
    assert math.isnan(minimum_detectable_difference(1.0, 1, 0.05))
    with pytest.raises(ValueError, match="alpha and target_power"):
        minimum_detectable_difference(1.0, 5, 1.5)


@pytest.mark.parametrize("sd, alpha, test", [(1.6, 0.05 / 5, TWO_SIDED), (3.0, 0.05, TWO_SIDED), (1.0, 0.05, TOST),
                                             (0.4, 0.05, TWO_SIDED)])
def test_seeds_needed_is_the_first_n_that_reaches_the_target(sd, alpha, test):
    n = seeds_needed(sd, alpha, target=2.0, test=test)
    by_loop = next(k for k in range(2, 500)
                   if minimum_detectable_difference(sd, k, alpha, test=test) <= 2.0)
    assert n == by_loop
    assert seeds_needed(sd, alpha, target=2.0, test=test, at_least=5) == max(5, by_loop)


def test_seeds_needed_without_a_spread_or_beyond_reach():
    assert seeds_needed(math.nan, 0.05) is None
    assert seeds_needed(0.0, 0.05, at_least=5) == 5
    assert seeds_needed(50.0, 0.05, target=0.01, at_most=64) is None
