"""The arithmetic behind the verdicts: paired t-tests of three shapes, the two
multiplicity adjustments, the level each adjusted interval is drawn at, and the power
of each test (minimum detectable difference, seeds needed).

Everything works on paired differences ``d_1 .. d_n`` (one per seed) with mean ``m``,
standard deviation ``s`` (n - 1 in the denominator) and standard error ``s / sqrt(n)``;
the statistic is Student's t with ``n - 1`` degrees of freedom. Three tests:

- :data:`TWO_SIDED`: H0 ``delta = 0`` (superiority either way: a claim holds or is
  reversed when the two-sided interval excludes 0);
- :data:`ONE_SIDED`: H0 ``delta <= -margin`` (non-inferiority within ``margin``);
- :data:`TOST`: H0 ``|delta| >= margin`` (equivalence within ``margin``: two one-sided
  tests, the p-value the larger of the two; Schuirmann 1987).

:func:`decision_p_value` turns each into the p-value of a three-way decision (for the
claim, against it, open), each direction at half the level, as a two-sided test does;
:func:`holm` and :func:`benjamini_hochberg` adjust a family's p-values;
:func:`adjusted_level` gives each comparison the level ``alpha * p / p_adjusted`` at which
its adjusted test was made, so that its interval at that level excludes the null value
exactly when the adjusted p-value is below ``alpha`` (see :mod:`rkd.report.stats`).

The power functions are exact for normal differences: the non-central t distribution for
the one- and two-sided tests, and a one-dimensional integral over the sample standard
deviation for TOST, whose rejection region couples mean and spread.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import integrate, optimize, special
from scipy import stats as scipy_stats

__all__ = ["TWO_SIDED", "ONE_SIDED", "TOST", "TESTS", "paired_p_value", "decision_p_value", "holm",
           "benjamini_hochberg", "adjusted_level", "power", "minimum_detectable_difference", "seeds_needed"]

TWO_SIDED, ONE_SIDED, TOST = "two-sided", "one-sided non-inferiority", "TOST equivalence"
TESTS = (TWO_SIDED, ONE_SIDED, TOST)


def _check_test(test: str) -> None:
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; use one of {list(TESTS)}")


def paired_p_value(mean: float, sd: float, n: int, test: str = TWO_SIDED, margin: float = 0.0) -> float:
    """The p-value of ``test`` for ``n`` paired differences of mean ``mean`` and standard
    deviation ``sd``. With fewer than two differences there is no test: ``nan``. With no
    spread (``sd == 0``) the data decide outright: 0 when they lie in the alternative, 1
    otherwise."""
    _check_test(test)
    if test != TWO_SIDED and not margin > 0:
        raise ValueError(f"the {test} test needs a margin > 0 (points), got {margin!r}")
    if n < 2 or not math.isfinite(sd):
        return math.nan
    df = n - 1
    if sd == 0:
        inside = {TWO_SIDED: mean != 0, ONE_SIDED: mean > -margin, TOST: abs(mean) < margin}[test]
        return 0.0 if inside else 1.0
    se = sd / math.sqrt(n)
    if test == TWO_SIDED:
        return float(2 * scipy_stats.t.sf(abs(mean) / se, df))
    above_lower = float(scipy_stats.t.sf((mean + margin) / se, df))  # H0: delta <= -margin
    if test == ONE_SIDED:
        return above_lower
    below_upper = float(scipy_stats.t.cdf((mean - margin) / se, df))  # H0: delta >= +margin
    return max(above_lower, below_upper)


def decision_p_value(mean: float, sd: float, n: int, test: str = TWO_SIDED, margin: float = 0.0) -> float:
    """The p-value of a comparison's three-way decision (for the claim / against it /
    open), each direction tested at half the level, like a two-sided test:

    - :data:`TWO_SIDED`: the two-sided p-value (``delta > 0`` or ``delta < 0``);
    - :data:`ONE_SIDED`: the two-sided test of ``delta = -margin`` (non-inferior or inferior);
    - :data:`TOST`: ``2 min(p_TOST, p_beyond)``, ``p_beyond`` the one-sided test that
      ``|delta|`` exceeds the margin on the side the mean lies (equivalent or not).

    It is below ``a`` exactly when the ``1 - a`` t-interval lies on one side of the null
    value(s) (inside or outside the margins), so one interval serves both directions and
    a multiplicity adjustment of this p-value controls errors in either direction."""
    if test == TWO_SIDED:
        return paired_p_value(mean, sd, n, test, margin)
    paired_p_value(mean, sd, n, test, margin)  # checks the test and the margin
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        on_boundary = mean == -margin if test == ONE_SIDED else abs(mean) == margin
        return 1.0 if on_boundary else 0.0
    se = sd / math.sqrt(n)
    if test == ONE_SIDED:
        return float(min(1.0, 2 * scipy_stats.t.sf(abs(mean + margin) / se, n - 1)))
    beyond = float(scipy_stats.t.sf((abs(mean) - margin) / se, n - 1))
    return min(1.0, 2 * min(paired_p_value(mean, sd, n, TOST, margin), beyond))


def _as_array(p_values: Sequence[float]) -> np.ndarray:
    p = np.asarray(list(p_values), dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[(p < 0) | (p > 1)].tolist()}")
    return np.where(np.isnan(p), 1.0, p)  # a comparison without a test counts, and never rejects


def holm(p_values: Sequence[float], *, cap: bool = True) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): sorted ascending, the j-th (from 1)
    is ``max_{i <= j} min(1, (m - i + 1) p_(i))``. Rejecting those below ``alpha``
    controls the family-wise error rate at ``alpha``. ``nan`` counts as 1. ``cap=False``
    leaves out the ``min(1, ...)`` (for :func:`adjusted_level`)."""
    p = _as_array(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = (m - np.arange(m)) * p[order]
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return np.minimum(1.0, adjusted) if cap else adjusted


def benjamini_hochberg(p_values: Sequence[float], *, cap: bool = True) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (1995): sorted ascending, the j-th is
    ``min_{k >= j} min(1, m p_(k) / k)``. Rejecting those below ``q`` controls the false
    discovery rate at ``q`` (for independent or positively dependent tests). ``nan``
    counts as 1. ``cap=False`` leaves out the ``min(1, ...)``."""
    p = _as_array(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = m * p[order] / np.arange(1, m + 1)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum.accumulate(stepped[::-1])[::-1]
    return np.minimum(1.0, adjusted) if cap else adjusted


def adjusted_level(p: float, p_adjusted: float, alpha: float, fallback: float) -> float:
    """The level at which a comparison was tested after adjustment, ``alpha * p /
    p_adjusted`` with ``p_adjusted`` uncapped (``cap=False``): its test rejects exactly
    when ``p < alpha * p / p_adjusted``, i.e. when ``p_adjusted < alpha``. For Holm this
    lies between Bonferroni's ``alpha / m`` and the comparison's own step ``alpha / (m - j
    + 1)``; for Benjamini-Hochberg between ``alpha * j / m`` and ``alpha``. ``fallback``
    where ``p`` is 0 or missing (the level does not matter there: no spread gives a point
    interval, no test an infinite one)."""
    if not (math.isfinite(p) and p > 0 and p_adjusted > 0):
        return fallback
    return alpha * p / p_adjusted


# ------------------------------------------------------------------------------ power


def _t_quantile(probability: float, df: int) -> float:
    return float(special.stdtrit(df, probability))


def _tost_power(margin_in_se: float, df: int, alpha: float) -> float:
    """Probability that TOST declares equivalence when the true difference is 0;
    ``margin_in_se``: the margin over the true standard error ``sigma / sqrt(n)``. Given
    the sample spread (``s / sigma = sqrt(v / df)``, ``v`` chi-square), it rejects iff
    ``|mean| / se_true < margin_in_se - t_crit * sqrt(v / df)``. (scipy.special's plain
    functions, not scipy.stats' distributions: the integrand runs hundreds of times.)"""
    t_crit = _t_quantile(1 - alpha, df)
    v_max = df * (margin_in_se / t_crit) ** 2  # beyond it the acceptance region is empty
    log_norm = -(df / 2) * math.log(2) - math.lgamma(df / 2)  # the chi-square density's constant

    def given_spread(v: float) -> float:
        if v <= 0:
            return 0.0
        density = math.exp(log_norm + (df / 2 - 1) * math.log(v) - v / 2)
        return density * (2 * float(special.ndtr(margin_in_se - t_crit * math.sqrt(v / df))) - 1)

    value, _ = integrate.quad(given_spread, 0, v_max, limit=200)
    return float(value)


def _upper_tail(x: float, df: int, shift: float) -> float:
    """P(T > x) for non-central t; far out the special function can return nan, where the
    side of ``x`` the centre lies on answers."""
    value = float(1 - special.nctdtr(df, shift, x)) if shift > x else float(special.nctdtr(df, -shift, -x))
    if math.isnan(value):
        value = 1.0 if shift > x else 0.0
    return value


def power(difference: float, sd: float, n: int, alpha: float, test: str = TWO_SIDED) -> float:
    """The probability that ``test`` at level ``alpha`` decides for the claim with ``n``
    normal paired differences of standard deviation ``sd``. ``difference``: for
    :data:`TWO_SIDED` the true mean difference (rejecting on either side); for
    :data:`ONE_SIDED` and :data:`TOST` the margin, the true difference being 0."""
    _check_test(test)
    if n < 2:
        raise ValueError(f"power needs at least 2 seeds, got n={n}")
    df, shift = n - 1, difference * math.sqrt(n) / sd
    if test == TWO_SIDED:
        t_crit = _t_quantile(1 - alpha / 2, df)
        # the far tail: the mirror image of the near one (P(T < -c | d) = P(T > c | -d))
        return _upper_tail(t_crit, df, shift) + _upper_tail(t_crit, df, -shift)
    if test == ONE_SIDED:
        return _upper_tail(_t_quantile(1 - alpha, df), df, shift)
    return _tost_power(shift, df, alpha)


def minimum_detectable_difference(sd: float, n: int, alpha: float, *, target_power: float = 0.8,
                                  test: str = TWO_SIDED) -> float:
    """The smallest true difference (for :data:`TWO_SIDED`) or margin (for
    :data:`ONE_SIDED` and :data:`TOST`, true difference 0) that ``test`` at level
    ``alpha`` detects with probability ``target_power`` from ``n`` paired differences of
    standard deviation ``sd``. It scales with ``sd``, so it is solved once for ``sd = 1``.
    ``nan`` with fewer than two seeds (no spread to plan from); 0 when ``sd`` is 0."""
    _check_test(test)
    if not 0 < alpha < 1 or not 0 < target_power < 1:
        raise ValueError(f"alpha and target_power must lie in (0, 1), got {alpha!r} and {target_power!r}")
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    return sd * _unit_mdd(n, alpha, target_power, test)


def _unit_mdd(n: int, alpha: float, target_power: float, test: str) -> float:
    def shortfall(x: float) -> float:
        return power(x, 1.0, n, alpha, test) - target_power

    df = n - 1
    # a start near the textbook approximation keeps the search out of the far tails
    first = _t_quantile(1 - alpha / 2 if test == TWO_SIDED else 1 - alpha, df)
    second = _t_quantile(target_power if test != TOST else (1 + target_power) / 2, df)
    high = 1.5 * (first + second) / math.sqrt(n)
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10, rtol=1e-10))


def seeds_needed(sd: float, alpha: float, *, target: float = 2.0, target_power: float = 0.8,
                 test: str = TWO_SIDED, at_least: int = 2, at_most: int = 100_000) -> int | None:
    """The fewest seeds (at least ``at_least``) whose minimum detectable difference is at
    most ``target`` points, planning with ``sd`` as the paired standard deviation (a
    plug-in estimate: with few seeds it is itself uncertain, so add a margin). ``None``
    when ``sd`` is unknown, or when not even ``at_most`` seeds would do."""
    if not math.isfinite(sd):
        return None
    if target <= 0:
        raise ValueError(f"target must be > 0 points, got {target!r}")
    at_least = max(2, at_least)
    _check_test(test)
    if sd == 0:
        return at_least

    def enough(n: int) -> bool:  # MDD <= target, i.e. the power at the target reaches target_power
        return power(target, sd, n, alpha, test) >= target_power

    if enough(at_least):
        return at_least
    low, high = at_least, at_least  # enough(low) is false; find a high that is enough
    while not enough(high):
        if high >= at_most:
            return None
        low, high = high, min(2 * high, at_most)  # doubling: few power evaluations even for many seeds
    while high - low > 1:  # the MDD falls as n grows: bisect
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high
