"""The guardrail statistics, pure Python: the binomial tail, the percentile, the windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from models_mgmt.engine import guardrails as g


@pytest.mark.parametrize(("k", "n", "p"), [(0, 10, 0.5), (3, 10, 0.5), (40, 100, 0.5), (120, 300, 0.47), (10, 10, 0.3)])
def test_binomial_cdf_matches_scipy(k, n, p):
    assert math.isclose(g.binomial_cdf(k, n, p), binom.cdf(k, n, p), rel_tol=1e-9, abs_tol=1e-300)


def test_percentile_matches_numpy():
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.5, 100.0]
    for q in (50, 95, 99):
        assert math.isclose(g.percentile(values, q), float(np.percentile(values, q)))


def test_too_few_resolved_is_inconclusive_even_when_all_wrong():
    result = g.accuracy_check("signal", 0, 49, validation=0.6, margin=0.05, min_resolved=50, alpha=0.05)
    assert result.verdict == g.INCONCLUSIVE and result.p_value is None


def test_a_significant_drop_breaches_and_a_small_one_does_not():
    poor = g.accuracy_check("signal", 20, 60, validation=0.6, margin=0.05, min_resolved=50, alpha=0.05)
    assert poor.verdict == g.BREACH and poor.bound == pytest.approx(0.55) and poor.count == 60
    close = g.accuracy_check("signal", 31, 60, validation=0.6, margin=0.05, min_resolved=50, alpha=0.05)
    assert close.verdict == g.OK  # 0.517 vs 0.55 over 60: not significant


def test_latency_breaches_at_m_of_n_counted_windows_and_skips_thin_ones():
    window = 600.0
    now = 100 * window
    samples = []
    # windows 90..99 (the last ten complete ones): 96, 98 and 99 slow; 97 has too few requests
    for w in range(90, 100):
        count = 3 if w == 97 else 30
        latency = 900.0 if w in (96, 98, 99) else 10.0
        samples += [(w * window + i, latency) for i in range(count)]
    kwargs = dict(now=now, since=None, window_s=window, min_requests=20, threshold_ms=500.0, lookback_windows=20)
    result = g.latency_check(samples, m=3, n=5, **kwargs)
    assert result.verdict == g.BREACH and result.breached == 3 and result.counted == 5
    assert not next(w for w in result.windows if w.count == 3).counted
    assert g.latency_check(samples, m=4, n=5, **kwargs).verdict == g.OK
    assert g.latency_check(samples[-40:], m=3, n=5, **kwargs).verdict == g.INCONCLUSIVE  # one counted window


def test_overall():
    assert g.overall(["ok", "breach"]) == "breach"
    assert g.overall(["ok", "inconclusive"]) == "ok"
    assert g.overall(["inconclusive", "inconclusive"]) == "inconclusive"
