"""Guardrail checks of a served version, pure Python (math only: no numpy or scipy, so the web
process can evaluate a policy when a person asks for it).

Accuracy: per task, live accuracy over n resolved predictions against `bound = validation -
margin`. H0 "accuracy >= bound" is rejected when the exact binomial lower tail P(X <= correct | n,
bound) is below alpha (Bonferroni over the tasks checked). Fewer than `min_resolved` predictions
say nothing: inconclusive, never a breach.

Latency: the ledger's latency_ms cut into fixed windows aligned to the epoch (UTC). A window with
fewer than `min_requests` requests is not counted; the check reads the last N counted complete
windows and breaches when the p95 of at least M of them is over the threshold. Fewer than M
counted windows: inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

OK, BREACH, INCONCLUSIVE = "ok", "breach", "inconclusive"


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (exact, stable for large n)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    logs = [base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between order statistics (numpy's default),
    so the guardrail's p95 is the one the metrics endpoint shows."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class AccuracyResult:
    task: str
    verdict: str
    measured: float | None  # live accuracy
    bound: float  # validation - margin
    validation: float
    correct: int
    count: int
    p_value: float | None
    alpha: float  # after Bonferroni
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "task": self.task,
            "verdict": self.verdict,
            "measured": None if self.measured is None else round(self.measured, 6),
            "bound": round(self.bound, 6),
            "validation": round(self.validation, 6),
            "correct": self.correct,
            "count": self.count,
            "pValue": None if self.p_value is None else float(f"{self.p_value:.6g}"),
            "alpha": float(f"{self.alpha:.6g}"),
            "detail": self.detail,
        }


def accuracy_check(
    task: str, correct: int, count: int, *, validation: float, margin: float, min_resolved: int, alpha: float
) -> AccuracyResult:
    """One task's verdict: `alpha` is the per-task level (already divided over the tasks)."""
    bound = validation - margin
    if count < min_resolved:
        return AccuracyResult(
            task,
            INCONCLUSIVE,
            correct / count if count else None,
            bound,
            validation,
            correct,
            count,
            None,
            alpha,
            f"{count} resolved prediction(s); at least {min_resolved} are needed to judge",
        )
    live = correct / count
    p_value = binomial_cdf(correct, count, bound) if bound > 0 else 1.0
    if p_value < alpha:
        verdict, detail = BREACH, f"live {live:.3f} over {count} is significantly below {bound:.3f} (p={p_value:.2g})"
    else:
        verdict, detail = OK, f"live {live:.3f} over {count} is not significantly below {bound:.3f} (p={p_value:.2g})"
    return AccuracyResult(task, verdict, live, bound, validation, correct, count, p_value, alpha, detail)


@dataclass(frozen=True)
class LatencyWindow:
    start: float  # epoch seconds
    end: float
    count: int
    p95: float | None
    counted: bool
    breached: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "start": self.start,
            "end": self.end,
            "count": self.count,
            "p95": None if self.p95 is None else round(self.p95, 3),
            "counted": self.counted,
            "breached": self.breached,
        }


@dataclass(frozen=True)
class LatencyResult:
    verdict: str
    measured: float | None  # the highest p95 among the counted windows read
    bound: float
    breached: int  # counted windows over the threshold
    counted: int
    m: int
    n: int
    windows: list[LatencyWindow]
    detail: str


def window_bounds(now: float, window_s: float, count: int) -> list[tuple[float, float]]:
    """The `count` complete windows before `now`, aligned to the epoch, oldest first."""
    last_end = math.floor(now / window_s) * window_s
    return [(last_end - (count - i) * window_s, last_end - (count - i - 1) * window_s) for i in range(count)]


def latency_check(
    samples: Iterable[tuple[float, float]],
    *,
    now: float,
    since: float | None,
    window_s: float,
    min_requests: int,
    threshold_ms: float,
    m: int,
    n: int,
    lookback_windows: int,
) -> LatencyResult:
    """`samples` are (epoch seconds, latency ms) of the version's requests; windows start no
    earlier than `since` (the activation) and at most `lookback_windows` back."""
    spans = [(s, e) for s, e in window_bounds(now, window_s, lookback_windows) if since is None or e > since]
    buckets: dict[int, list[float]] = {i: [] for i in range(len(spans))}
    first = spans[0][0] if spans else now
    for at, latency in samples:
        if not spans or at < first or at >= spans[-1][1]:
            continue
        buckets[int((at - first) // window_s)].append(latency)
    windows = []
    for i, (start, end) in enumerate(spans):
        values = buckets[i]
        p95 = percentile(values, 95) if values else None
        counted = len(values) >= min_requests
        windows.append(
            LatencyWindow(start, end, len(values), p95, counted, counted and p95 is not None and p95 > threshold_ms)
        )
    last = [w for w in windows if w.counted][-n:]
    breached = sum(w.breached for w in last)
    measured = max((w.p95 for w in last if w.p95 is not None), default=None)
    if breached >= m:
        verdict = BREACH
        detail = f"p95 over {threshold_ms:g} ms in {breached} of the last {len(last)} counted window(s) (M={m}, N={n})"
    elif len(last) < m:
        verdict = INCONCLUSIVE
        detail = f"{len(last)} window(s) with at least {min_requests} requests; {m} are needed to judge"
    else:
        verdict = OK
        detail = f"p95 over {threshold_ms:g} ms in {breached} of the last {len(last)} counted window(s) (M={m}, N={n})"
    return LatencyResult(
        verdict, measured, threshold_ms, breached, len(last), m, n, [w for w in windows if w.count], detail
    )


def overall(verdicts: Iterable[str]) -> str:
    """Breach if any check breaches; ok if none does and at least one is conclusive; else
    inconclusive (each check keeps its own verdict in the evidence)."""
    seen = list(verdicts)
    if BREACH in seen:
        return BREACH
    return OK if OK in seen else INCONCLUSIVE
