"""Finding the knee of the throughput curve and turning it into an HPA target.

The rule, on the steps ordered by concurrency (it is the same one the README states):

* **Throughput signal (marginal gain).** Throughput is output tokens per second (requests per
  second when a step counted no tokens). Between two consecutive steps ``c1 < c2`` with
  throughputs ``T1`` and ``T2`` the *marginal gain* is the elasticity
  ``ln(T2 / T1) / ln(c2 / c1)``: 1 when throughput grows in proportion to concurrency, 0 when
  it is flat, negative when it falls. Throughput *stops growing* at ``c1`` for the first pair
  whose gain is below ``min_gain`` (default 0.5: doubling the concurrency buys less than
  ``2 ** 0.5 - 1`` = 41 % more throughput). Being a ratio of logarithms, it does not depend on
  how far apart the steps are: on a server with N slots, a ladder that contains N gives the knee
  at N (gain 1 into N, about 0 out of it), and a ladder that straddles N picks the step nearer to
  N on a log scale. If no pair drops below ``min_gain``, throughput was still growing at the
  highest step and the knee is not found (rerun with higher concurrency).
* **Latency signal (SLO).** With an SLO (p90 TTFT and/or p90 end-to-end latency, both
  optional), the latency knee is the last step before the first one whose p90 exceeds it.
  Without one, latency is reported (relative to the lowest step) but does not move the knee:
  latency grows with batch size long before throughput stops growing, so a fixed factor
  would put the knee wherever the step ladder happens to cross it.
* **Errors.** A step with no successful request, or with more than ``max_error_ratio`` (5 %)
  of its requests failed, ends the usable range: the knee is at most the step before it.

The knee is the lowest of these, and the one report line and the recommendation both name
that step. The recommended HPA target is what the server's gauge showed there, averaged over
the step: ``vllm:num_requests_waiting`` (rounded half up, at least 1), or the KV-cache usage
fraction (two decimals, at most 1.0). Scaling on that value adds a replica when load passes the
point where extra concurrency stops buying throughput, i.e. before requests queue up for long.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from loadtest.stats import StepResult

WAITING = "num_requests_waiting"
KV_CACHE = "kv_cache_usage"
# The stack's autoscalingMetric values (components/config.py) and the gauge each one reads.
STACK_METRICS = (WAITING, KV_CACHE)
HPA_METRIC = "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
DEFAULT_KV_GAUGE = "vllm:kv_cache_usage_perc"
DEFAULT_MIN_GAIN = 0.5
DEFAULT_MAX_ERROR_RATIO = 0.05

# Why the knee is where it is.
CAUSE_THROUGHPUT = "throughput"
CAUSE_SLO = "slo"
CAUSE_ERRORS = "errors"
CAUSE_NOT_REACHED = "not_reached"  # throughput still growing at the highest step, no limit hit
CAUSE_NONE = "none"  # no usable step


def hpa_metric(stack_metric: str, kv_gauge: str | None = None) -> str:
    """The Cloud Monitoring metric the HPA reads for a stack ``autoscalingMetric`` value."""
    if stack_metric == KV_CACHE:
        return f"prometheus.googleapis.com|{kv_gauge or DEFAULT_KV_GAUGE}|gauge"
    return HPA_METRIC


@dataclass(frozen=True)
class Slo:
    """Optional latency objectives, in seconds, on the 90th percentile."""

    ttft_p90_s: float | None = None
    e2e_p90_s: float | None = None

    @property
    def given(self) -> bool:
        return self.ttft_p90_s is not None or self.e2e_p90_s is not None


@dataclass(frozen=True)
class Gain:
    """Marginal throughput gain from one step to the next."""

    from_concurrency: int
    to_concurrency: int
    throughput_ratio: float
    gain: float


@dataclass(frozen=True)
class Knee:
    """Result of :func:`find_knee`.

    ``concurrency`` is the knee step (``None`` when no step is usable); ``cause`` says which
    signal put it there (``throughput``, ``slo``, ``errors``, ``not_reached`` or ``none``).
    ``throughput_knee`` is where throughput stopped growing (``None``: still growing at the
    highest step) and ``latency_knee`` the last step within the SLO (``None``: no SLO, or even
    the lowest step breaks it). ``reason`` is the one-line summary printed after "Knee:".
    """

    concurrency: int | None
    cause: str
    reason: str
    throughput_knee: int | None
    throughput_signal: str
    latency_knee: int | None
    latency_signal: str
    errors_signal: str | None
    gains: tuple[Gain, ...]
    min_gain: float

    @property
    def found(self) -> bool:
        """True when a signal placed the knee inside the tested range."""
        return self.concurrency is not None and self.cause != CAUSE_NOT_REACHED


def throughput(step: StepResult, tokens: bool) -> float:
    return step.output_tokens_per_s if tokens else step.requests_per_s


def marginal_gain(c1: int, t1: float, c2: int, t2: float) -> float:
    """``ln(t2 / t1) / ln(c2 / c1)``; ``-inf`` when ``t2`` is 0 (``c1 < c2``, ``t1 > 0``)."""
    if t2 <= 0:
        return -math.inf
    return math.log(t2 / t1) / math.log(c2 / c1)


def _step_failed(step: StepResult, max_error_ratio: float) -> str | None:
    if step.ok == 0:
        return f"no successful request at concurrency {step.concurrency}"
    if step.error_ratio > max_error_ratio:
        return f"{step.error_ratio:.0%} of requests failed at concurrency {step.concurrency} (limit {max_error_ratio:.0%})"
    return None


def _slo_breach(step: StepResult, slo: Slo) -> str | None:
    parts = []
    if slo.ttft_p90_s is not None and step.ttft.p90 is not None and step.ttft.p90 > slo.ttft_p90_s:
        parts.append(f"p90 TTFT {step.ttft.p90:.3g}s > {slo.ttft_p90_s:g}s")
    if slo.e2e_p90_s is not None and step.e2e.p90 is not None and step.e2e.p90 > slo.e2e_p90_s:
        parts.append(f"p90 end-to-end {step.e2e.p90:.3g}s > {slo.e2e_p90_s:g}s")
    return ", ".join(parts) or None


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.1f}x"


def find_knee(
    steps: Sequence[StepResult],
    slo: Slo | None = None,
    min_gain: float = DEFAULT_MIN_GAIN,
    max_error_ratio: float = DEFAULT_MAX_ERROR_RATIO,
) -> Knee:
    """Locate the knee with the rule in this module's docstring."""
    slo = slo or Slo()
    ordered = sorted(steps, key=lambda step: step.concurrency)
    if not ordered:
        return Knee(None, CAUSE_NONE, "no steps were run", None, "no steps", None, "no steps", None, (), min_gain)

    # Errors: the usable range ends before the first failing step.
    errors_limit, errors_signal = len(ordered), None
    for index, step in enumerate(ordered):
        why = _step_failed(step, max_error_ratio)
        if why:
            errors_limit, errors_signal = index, why
            break

    # Throughput: the first pair whose marginal gain is below min_gain.
    usable = [step for step in ordered if step.ok > 0]
    tokens = bool(usable) and all(step.output_tokens > 0 for step in usable)
    unit = "output tokens/s" if tokens else "requests/s"
    gains: list[Gain] = []
    throughput_index: int | None = None
    for index, (low, high) in enumerate(pairwise(ordered)):
        if low.ok == 0:
            break
        t_low, t_high = throughput(low, tokens), throughput(high, tokens)
        gain = Gain(low.concurrency, high.concurrency, t_high / t_low, marginal_gain(low.concurrency, t_low, high.concurrency, t_high))
        gains.append(gain)
        if gain.gain < min_gain:
            throughput_index = index
            break
    if throughput_index is not None:
        last = gains[-1]
        throughput_signal = (
            f"throughput stopped growing at concurrency {ordered[throughput_index].concurrency}: "
            f"{last.to_concurrency} gave {last.throughput_ratio:.2f}x the {unit} for "
            f"{last.to_concurrency / last.from_concurrency:.3g}x the concurrency (marginal gain {last.gain:.2f} < {min_gain:g})"
        )
    elif gains:
        last = gains[-1]
        throughput_signal = (
            f"throughput still growing at the highest step ({last.from_concurrency} -> {last.to_concurrency}: "
            f"marginal gain {last.gain:.2f} >= {min_gain:g})"
        )
    else:
        throughput_signal = "one usable step only: no throughput trend"

    # Latency: the first step that breaks the SLO.
    slo_limit, slo_breach = len(ordered), None
    if slo.given:
        for index, step in enumerate(ordered[:errors_limit]):
            slo_breach = _slo_breach(step, slo)
            if slo_breach:
                slo_limit = index
                break

    candidates = []
    if errors_signal is not None:
        candidates.append((errors_limit - 1, CAUSE_ERRORS))
    if slo_breach is not None:
        candidates.append((slo_limit - 1, CAUSE_SLO))
    if throughput_index is not None:
        candidates.append((throughput_index, CAUSE_THROUGHPUT))
    candidates.append((len(ordered) - 1, CAUSE_NOT_REACHED))
    # Lowest step wins; on a tie the first listed (errors, then SLO, then throughput) is the cause.
    knee_index, cause = min(candidates, key=lambda c: c[0])

    baseline = ordered[0]
    knee_step = ordered[knee_index] if knee_index >= 0 else None
    latency_knee = ordered[slo_limit - 1].concurrency if slo.given and slo_limit >= 1 else None
    if not slo.given:
        latency_signal = "no SLO given (TTFT_P90= / E2E_P90=), so latency does not move the knee"
    elif slo_breach is None:
        checked = ordered[: max(errors_limit, 1)]
        latency_signal = f"p90 latency within the SLO at every step up to concurrency {checked[-1].concurrency}"
    else:
        latency_signal = f"concurrency {ordered[slo_limit].concurrency} breaks the SLO ({slo_breach})"
        if latency_knee is not None:
            latency_signal = f"p90 latency within the SLO up to concurrency {latency_knee}; " + latency_signal
    if knee_step is not None:
        latency_signal += (
            f"; at concurrency {knee_step.concurrency} p90 TTFT {_ratio(knee_step.ttft.p90, baseline.ttft.p90)} and "
            f"p90 end-to-end {_ratio(knee_step.e2e.p90, baseline.e2e.p90)} the lowest step's"
        )

    throughput_knee = ordered[throughput_index].concurrency if throughput_index is not None else None
    if knee_step is None:
        why = errors_signal if cause == CAUSE_ERRORS else f"the lowest step breaks the SLO ({slo_breach})"
        reason = f"none: {why}"
        return Knee(
            None, cause, reason, throughput_knee, throughput_signal, latency_knee, latency_signal, errors_signal, tuple(gains), min_gain
        )
    lead = {
        CAUSE_THROUGHPUT: "throughput stops growing beyond it",
        CAUSE_SLO: "the next step breaks the latency SLO",
        CAUSE_ERRORS: f"the next step fails ({errors_signal})",
        CAUSE_NOT_REACHED: "the highest step; throughput was still growing, so the real knee is at or beyond it",
    }[cause]
    reason = f"concurrency {knee_step.concurrency} ({lead})"
    return Knee(
        knee_step.concurrency,
        cause,
        reason,
        throughput_knee,
        throughput_signal,
        latency_knee,
        latency_signal,
        errors_signal,
        tuple(gains),
        min_gain,
    )


@dataclass(frozen=True)
class Recommendation:
    """The HPA target: ``stack_metric`` / ``target_average_value`` go into the stack's
    ``autoscalingMetric`` / ``autoscalingTarget``; ``metric`` is what the HPA reads; ``note`` is
    empty, or says why there is no target or what to watch out for."""

    metric: str
    stack_metric: str
    target_average_value: float | None
    observed_at_knee: float | None
    knee_concurrency: int | None
    note: str


def recommend(steps: Sequence[StepResult], knee: Knee, stack_metric: str = WAITING) -> Recommendation:
    """The HPA target for ``stack_metric``: the gauge's average at the knee step.

    Waiting requests are rounded half up and raised to at least 1 (a target of 0 would ask the
    HPA to scale out whenever a single request waits); KV-cache usage is a fraction rounded to
    two decimals within [0.01, 1.0], the range the stack accepts.
    """
    if stack_metric not in STACK_METRICS:
        raise ValueError(f"unknown stack metric {stack_metric!r}")
    kv_gauge = next((s.server.kv_cache_metric for s in steps if s.server.kv_cache_metric), None)
    metric = hpa_metric(stack_metric, kv_gauge)
    if knee.concurrency is None:
        return Recommendation(metric, stack_metric, None, None, None, f"no knee: {knee.reason}")
    step = next(s for s in steps if s.concurrency == knee.concurrency)
    at = f"concurrency {knee.concurrency}"
    if stack_metric == WAITING:
        gauge, name = step.server.waiting, "vllm:num_requests_waiting"
    else:
        gauge, name = step.server.kv_cache_usage, "a KV-cache usage gauge"
    if gauge is None:
        return Recommendation(metric, stack_metric, None, None, knee.concurrency, f"the server exposed no {name} samples at {at}")
    target: float = max(1, math.floor(gauge.avg + 0.5)) if stack_metric == WAITING else min(1.0, max(0.01, round(gauge.avg, 2)))
    remarks = []
    if not knee.found:
        remarks.append(f"throughput was still growing at {at}, so rerun with higher concurrency for the real knee")
    if stack_metric == KV_CACHE and target >= 0.99:
        remarks.append("the KV cache is full at the knee, so this target can never be exceeded: prefer num_requests_waiting")
    return Recommendation(metric, stack_metric, target, gauge.avg, knee.concurrency, "; ".join(remarks))
