"""The statistics behind the reports and gates: intervals, pass@k / pass^k, bootstrap, paired tests.

Standard library only, and deterministic: every resampling takes a seed, so a rerun of the same
results prints the same intervals and gate decisions. Agent evaluations have few tasks and few
rollouts, so the methods are the ones honest at small n (Wilson, exact tests, exact enumeration
of sign flips when it is affordable).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "bootstrap_mean_ci",
    "fisher_exact_less",
    "mean",
    "pass_at_k",
    "pass_hat_k",
    "sign_flip_p_value",
    "wilson_interval",
]

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261129
"""Fixed, so reports and gates are reproducible run to run."""
_EXACT_FLIPS_UP_TO = 16
"""Enumerate all 2^n sign flips up to this many nonzero differences, else sample them."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n attempts with c successes (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k: the chance that k attempts drawn without replacement all pass, C(c,k)/C(n,k)."""
    return math.comb(c, k) / math.comb(n, k)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a pass rate; honest with few rollouts."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def bootstrap_mean_ci(
    values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement).

    For a paired difference pass the per-unit differences. The bounds are the order statistics
    at ``(1-level)/2`` and ``(1+level)/2`` of the sorted resampled means.
    """
    if not values:
        raise ValueError("no values to bootstrap")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(mean(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1 - level) / 2
    low = means[math.floor(tail * resamples)]
    high = means[math.ceil((1 - tail) * resamples) - 1]
    return (low, high)


def sign_flip_p_value(
    differences: Sequence[float], *, resamples: int = 20000, seed: int = BOOTSTRAP_SEED, two_sided: bool = False
) -> float:
    """Paired sign-flip permutation test of "the mean difference is 0" (units are exchangeable).

    One-sided (default): the chance, flipping each difference's sign at random, of a mean at or
    below the observed one (small p: the first side is worse). Exact over all 2^n flips for up to
    16 nonzero differences, else ``resamples`` random flips with the +1 correction.
    """
    nonzero = [d for d in differences if d != 0]
    if not nonzero:
        return 1.0
    observed = math.fsum(nonzero)
    tolerance = 1e-12 * max(1.0, sum(abs(d) for d in nonzero))

    def extreme(total: float) -> bool:
        return abs(total) >= abs(observed) - tolerance if two_sided else total <= observed + tolerance

    if len(nonzero) <= _EXACT_FLIPS_UP_TO:
        signs = itertools.product((1, -1), repeat=len(nonzero))
        hits = sum(1 for flip in signs if extreme(math.fsum(sign * d for sign, d in zip(flip, nonzero, strict=True))))
        return hits / (1 << len(nonzero))
    rng = random.Random(seed)
    hits = sum(1 for _ in range(resamples) if extreme(math.fsum(d if rng.random() < 0.5 else -d for d in nonzero)))
    return (hits + 1) / (resamples + 1)


def fisher_exact_less(passed: int, attempts: int, base_passed: int, base_attempts: int) -> float:
    """One-sided Fisher exact test on the 2x2 table of passes: is the first pass rate lower?

    Conditioning on the total number of passes, the first side's passes are hypergeometric; the
    p-value is the chance of it having ``passed`` or fewer.
    """
    total, successes = attempts + base_attempts, passed + base_passed
    denominator = math.comb(total, attempts)
    low = max(0, successes - base_attempts)
    return math.fsum(
        math.comb(successes, x) * math.comb(total - successes, attempts - x) / denominator
        for x in range(low, passed + 1)
    )
