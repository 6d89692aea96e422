"""Finding the latency knee and turning it into an HPA target."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from loadtest.stats import StepResult

HPA_METRIC = "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
DEFAULT_KNEE_FACTOR = 2.0
DEFAULT_MAX_ERROR_RATIO = 0.05


@dataclass(frozen=True)
class Knee:
    """Result of :func:`find_knee`.

    ``concurrency`` is ``None`` when there is no usable step. ``latency_climbed`` is False
    when no step degraded, i.e. the real knee lies at or beyond the highest tested step.
    """

    concurrency: int | None
    latency_climbed: bool
    reason: str


def find_knee(
    steps: Sequence[StepResult],
    factor: float = DEFAULT_KNEE_FACTOR,
    max_error_ratio: float = DEFAULT_MAX_ERROR_RATIO,
) -> Knee:
    """Locate the knee: the last concurrency step before latency starts to climb.

    Rule (deterministic, on the steps ordered by concurrency):

    * The *baseline* is the lowest-concurrency step.
    * A step is *degraded* when it has no successful request, when more than
      ``max_error_ratio`` of its requests failed, or when its p90 end-to-end latency exceeds
      ``factor`` x the baseline's p90 end-to-end latency.
    * The knee is the step just before the first degraded one. If the baseline itself is
      degraded there is no knee; if no step is degraded the knee is the highest step, with
      ``latency_climbed=False``.

    End-to-end latency is used rather than TTFT because TTFT of an idle server is tiny and
    includes queue time, so the first queued request multiplies it and the knee (and with it
    the HPA target) would always sit at an empty queue. Failing steps count as degraded
    because a server shedding load with fast errors would otherwise look fast.
    """
    ordered = sorted(steps, key=lambda step: step.concurrency)
    if not ordered:
        return Knee(None, False, "no steps were run")
    baseline = ordered[0]
    baseline_p90 = baseline.e2e.p90
    if _degradation(baseline, None, factor, max_error_ratio):
        return Knee(None, False, f"the baseline step (concurrency {baseline.concurrency}) failed")
    for previous, step in pairwise(ordered):
        why = _degradation(step, baseline_p90, factor, max_error_ratio)
        if why:
            return Knee(previous.concurrency, True, f"concurrency {step.concurrency}: {why}")
    return Knee(
        ordered[-1].concurrency,
        False,
        f"p90 end-to-end latency stayed within {factor:g}x the baseline up to the highest step",
    )


def _degradation(step: StepResult, baseline_p90: float | None, factor: float, max_error_ratio: float) -> str | None:
    if step.ok == 0:
        return "no successful request"
    if step.error_ratio > max_error_ratio:
        return f"{step.error_ratio:.0%} of requests failed (limit {max_error_ratio:.0%})"
    p90 = step.e2e.p90
    if baseline_p90 is not None and p90 is not None and p90 > factor * baseline_p90:
        return f"p90 end-to-end latency {p90:.3g}s > {factor:g} x baseline {baseline_p90:.3g}s"
    return None


@dataclass(frozen=True)
class Recommendation:
    metric: str
    target_average_value: int | None
    waiting_at_knee: float | None
    knee_concurrency: int | None
    note: str


def recommend(steps: Sequence[StepResult], knee: Knee) -> Recommendation:
    """HPA target for ``HPA_METRIC``: the average waiting queue at the knee step.

    It is rounded half up and raised to at least 1, because a target of 0 would ask the HPA
    to scale out whenever a single request waits.
    """
    if knee.concurrency is None:
        return Recommendation(HPA_METRIC, None, None, None, f"no knee: {knee.reason}")
    step = next(s for s in steps if s.concurrency == knee.concurrency)
    waiting = step.server.waiting
    if waiting is None:
        return Recommendation(
            HPA_METRIC,
            None,
            None,
            knee.concurrency,
            f"the server exposed no vllm:num_requests_waiting samples at concurrency {knee.concurrency}",
        )
    target = max(1, math.floor(waiting.avg + 0.5))
    note = f"knee at concurrency {knee.concurrency}; next step degraded ({knee.reason})"
    if not knee.latency_climbed:
        note = f"{knee.reason}; the knee is at or beyond it, so rerun with higher concurrency"
    return Recommendation(HPA_METRIC, target, waiting.avg, knee.concurrency, note)
