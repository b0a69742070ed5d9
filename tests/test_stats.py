"""The statistics of the per-model results and the gates, against hand-computed values and definitions.

Expected values come from the definitions (enumeration) or from published ones (Fisher's lady
tasting tea), never from the implementation.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from pytest_oneshot.report.stats import bootstrap_mean_ci, fisher_exact_less, pass_hat_k, sign_flip_p_value


def _pass_hat_k_by_enumeration(n: int, c: int, k: int) -> Fraction:
    """The definition: the share of the k-subsets of n attempts (c passing) in which every attempt passes."""
    subsets = list(itertools.combinations([True] * c + [False] * (n - c), k))
    return Fraction(sum(1 for subset in subsets if all(subset)), len(subsets))


@pytest.mark.parametrize("n", range(1, 7))
def test_pass_hat_k_is_the_share_of_all_passing_draws(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_hat_k(n, c, k) == pytest.approx(float(_pass_hat_k_by_enumeration(n, c, k)), abs=1e-12)


def test_pass_hat_k_by_hand() -> None:
    assert pass_hat_k(4, 2, 1) == 0.5  # pass^1 is the pass rate
    assert pass_hat_k(4, 2, 2) == pytest.approx(1 / 6)  # one all-passing pair of C(4,2) = 6
    assert pass_hat_k(4, 3, 4) == 0.0 and pass_hat_k(4, 4, 4) == 1.0


def test_fisher_exact_matches_the_lady_tasting_tea() -> None:
    """Fisher's tea table [[3, 1], [1, 3]]: P(3 or more right) = 17/70, i.e. P(1 or fewer) on the other side."""
    assert fisher_exact_less(1, 4, 3, 4) == pytest.approx(17 / 70)
    assert fisher_exact_less(0, 4, 4, 4) == pytest.approx(1 / 70)  # the most extreme table alone
    assert fisher_exact_less(4, 4, 4, 4) == pytest.approx(1.0)  # no evidence of a drop
    assert fisher_exact_less(0, 1, 1, 1) == pytest.approx(0.5)  # one rollout each can never be significant


def test_sign_flip_p_value_by_hand() -> None:
    # Nonzero differences -1 and -0.5 (the 0 carries no sign): the four flips sum to -1.5, -0.5, 0.5, 1.5.
    assert sign_flip_p_value([-1, -0.5, 0]) == pytest.approx(1 / 4)  # only -1.5 is at or below -1.5
    assert sign_flip_p_value([-1, -0.5], two_sided=True) == pytest.approx(2 / 4)  # |sum| >= 1.5
    assert sign_flip_p_value([-1] * 5) == pytest.approx(1 / 32)
    assert sign_flip_p_value([1, 1, 1]) == pytest.approx(1.0)  # better, not worse
    assert sign_flip_p_value([0, 0]) == 1.0


def test_sign_flip_samples_beyond_exact_enumeration() -> None:
    """20 nonzero differences: sampled flips; all 20 worse is exact p = 2^-20, sampled (0 + 1) / (20000 + 1)."""
    assert sign_flip_p_value([-1] * 20) == pytest.approx(1 / 20001)
    balanced = [-1, 1] * 10
    assert sign_flip_p_value(balanced, two_sided=True) == pytest.approx(1.0, abs=0.02)


def test_bootstrap_interval_by_hand() -> None:
    assert bootstrap_mean_ci([0.7] * 5) == pytest.approx((0.7, 0.7))
    # Two values 0 and 1: resampled means are 0, 0.5, 1 with chances 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% quantiles are the extremes.
    assert bootstrap_mean_ci([0.0, 1.0]) == (0.0, 1.0)
    # 50 zeros and 50 ones: the mean's standard error is 0.05, so the interval is about 0.5 +- 1.96 * 0.05.
    low, high = bootstrap_mean_ci([0.0] * 50 + [1.0] * 50)
    assert low == pytest.approx(0.402, abs=0.02) and high == pytest.approx(0.598, abs=0.02)
    assert bootstrap_mean_ci([0.0] * 50 + [1.0] * 50) == (low, high), "a fixed seed: the same interval every run"
    with pytest.raises(ValueError, match="no values"):
        bootstrap_mean_ci([])
