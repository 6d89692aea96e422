"""Per-step aggregation of request results."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from loadtest.client import STANDARD_ERROR_KINDS, RequestResult
from loadtest.servermetrics import ServerSummary


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Percentiles:
    p50: float | None
    p90: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        return cls(percentile(values, 50), percentile(values, 90), percentile(values, 99))


@dataclass(frozen=True)
class StepResult:
    """Everything measured at one concurrency level.

    ``elapsed_s`` runs from the step's start until its last in-flight request finished, so
    the rates below include the drain after the load window closed.
    """

    concurrency: int
    elapsed_s: float
    requests: int
    ok: int
    errors: dict[str, int]
    output_tokens: int
    token_source: str
    ttft: Percentiles
    itl: Percentiles
    e2e: Percentiles
    server: ServerSummary
    truncated: bool

    @property
    def requests_per_s(self) -> float:
        """Successful requests per second."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def error_ratio(self) -> float:
        return (self.requests - self.ok) / self.requests if self.requests else 0.0


def token_source(results: Sequence[RequestResult]) -> str:
    """How output tokens were counted for the successful requests of a step.

    ``usage``: the server's final ``usage.completion_tokens``; ``chunks``: one token per
    streamed chunk with non-empty text (an undercount when a chunk carries several tokens);
    ``mixed``: some of each; ``none``: no successful request.
    """
    ok = [r for r in results if r.ok]
    if not ok:
        return "none"
    from_usage = sum(r.tokens_from_usage for r in ok)
    if from_usage == len(ok):
        return "usage"
    return "chunks" if from_usage == 0 else "mixed"


def summarize_step(
    concurrency: int,
    results: Sequence[RequestResult],
    elapsed_s: float,
    server: ServerSummary,
    truncated: bool,
) -> StepResult:
    ok = [r for r in results if r.ok]
    errors = Counter({kind: 0 for kind in STANDARD_ERROR_KINDS})
    errors.update(r.error for r in results if r.error is not None)
    return StepResult(
        concurrency=concurrency,
        elapsed_s=elapsed_s,
        requests=len(results),
        ok=len(ok),
        errors=dict(errors),
        output_tokens=sum(r.output_tokens for r in ok),
        token_source=token_source(results),
        ttft=Percentiles.of([r.ttft for r in ok if r.ttft is not None]),
        itl=Percentiles.of([gap for r in ok for gap in r.itls]),
        e2e=Percentiles.of([r.e2e for r in ok]),
        server=server,
        truncated=truncated,
    )
