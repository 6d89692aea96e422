"""Reading vLLM's Prometheus ``/metrics`` page during a step."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

WAITING_METRIC = "vllm:num_requests_waiting"
RUNNING_METRIC = "vllm:num_requests_running"
# vLLM 0.12 renamed the KV-cache gauge; the new name wins when a server exposes both.
KV_CACHE_METRICS = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")

# A slow /metrics must not stall the sampling loop for long; it is cancelled at step end anyway.
POLL_TIMEOUT_S = 5.0


def parse_prometheus_text(text: str) -> dict[str, list[float]]:
    """Return every finite sample value in a Prometheus text exposition, grouped by sample name,
    parsed by prometheus_client's own parser.

    Each label set contributes one entry, so callers decide how to aggregate. A page the parser
    refuses as a whole is read line by line and the lines it refuses are skipped: a partial page
    still yields the gauges we need.
    """
    try:
        return _values(text_string_to_metric_families(text))
    except ValueError:
        pass
    values: dict[str, list[float]] = {}
    # Only \n ends a line here, as in the exposition format (not \x1e, \u2028... inside label values).
    for line in text.split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            parsed = _values(text_string_to_metric_families(line + "\n"))
        except ValueError:
            continue
        for name, found in parsed.items():
            values.setdefault(name, []).extend(found)
    return values


def _values(families: Iterable[Metric]) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for family in families:
        for sample in family.samples:
            if math.isfinite(sample.value):
                values.setdefault(sample.name, []).append(float(sample.value))
    return values


@dataclass(frozen=True)
class ServerSample:
    """One reading of the gauges the recommendation needs; ``None`` when not exposed."""

    waiting: float | None
    running: float | None
    kv_cache_usage: float | None
    kv_cache_metric: str | None


def sample_from_values(values: Mapping[str, Sequence[float]]) -> ServerSample:
    """Aggregate parsed metrics into a :class:`ServerSample`.

    Request counts are summed across label sets (one per engine or model). The KV-cache
    gauge is a fraction per engine, so it is averaged instead: summing two engines at 60 %
    would report an impossible 120 %.
    """
    kv_name = next((name for name in KV_CACHE_METRICS if values.get(name)), None)
    kv_values = values[kv_name] if kv_name else ()
    return ServerSample(
        waiting=_sum_or_none(values.get(WAITING_METRIC)),
        running=_sum_or_none(values.get(RUNNING_METRIC)),
        kv_cache_usage=sum(kv_values) / len(kv_values) if kv_values else None,
        kv_cache_metric=kv_name,
    )


def _sum_or_none(values: Sequence[float] | None) -> float | None:
    return sum(values) if values else None


@dataclass(frozen=True)
class GaugeSummary:
    avg: float
    max: float


@dataclass(frozen=True)
class ServerSummary:
    """Per-step aggregate of the ``/metrics`` samples taken while load was being applied."""

    samples: int
    failed_polls: int
    waiting: GaugeSummary | None
    running: GaugeSummary | None
    kv_cache_usage: GaugeSummary | None
    kv_cache_metric: str | None


def summarize_samples(samples: Sequence[ServerSample], failed_polls: int) -> ServerSummary:
    return ServerSummary(
        samples=len(samples),
        failed_polls=failed_polls,
        waiting=_gauge([s.waiting for s in samples]),
        running=_gauge([s.running for s in samples]),
        kv_cache_usage=_gauge([s.kv_cache_usage for s in samples]),
        kv_cache_metric=next((s.kv_cache_metric for s in samples if s.kv_cache_metric), None),
    )


def _gauge(readings: Sequence[float | None]) -> GaugeSummary | None:
    present = [r for r in readings if r is not None]
    if not present:
        return None
    return GaugeSummary(avg=sum(present) / len(present), max=max(present))


class MetricsLog:
    """Samples collected by :func:`poll_metrics` for one step."""

    def __init__(self) -> None:
        self.samples: list[ServerSample] = []
        self.failed_polls = 0

    @property
    def latest(self) -> ServerSample | None:
        return self.samples[-1] if self.samples else None

    def summary(self) -> ServerSummary:
        return summarize_samples(self.samples, self.failed_polls)


async def poll_metrics(
    client: httpx.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    interval_s: float,
    log: MetricsLog,
) -> None:
    """Sample ``url`` every ``interval_s`` until cancelled.

    Polls follow a fixed time grid instead of sleeping ``interval_s`` after each reply: with
    sleep-after-reply the poll latency, which is longest when the server is busiest, feeds
    back into the phase and can lock the samples onto the same point of a periodic workload.
    The first sample is taken one interval after the step starts so that the instant when no
    request has reached the server yet does not drag the step's average queue down.
    """
    loop = asyncio.get_running_loop()
    next_poll = loop.time() + interval_s
    while True:
        await asyncio.sleep(max(0.0, next_poll - loop.time()))
        sample = await _poll_once(client, url, headers)
        if sample is None:
            log.failed_polls += 1
        else:
            log.samples.append(sample)
        next_poll += interval_s
        late = loop.time() - next_poll
        if late > 0:
            # A poll slower than the interval skips the grid points it overran.
            next_poll += interval_s * math.ceil(late / interval_s)


async def _poll_once(client: httpx.AsyncClient, url: str, headers: Mapping[str, str]) -> ServerSample | None:
    try:
        response = await client.get(url, headers=headers, timeout=POLL_TIMEOUT_S)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return sample_from_values(parse_prometheus_text(response.text))
