"""Running the concurrency steps within their time, request-count and whole-run bounds."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

import httpx

from loadtest.client import CONNECTION, RequestResult, Target, send_request
from loadtest.servermetrics import MetricsLog, ServerSample, poll_metrics
from loadtest.stats import StepResult, summarize_step

PROGRESS_INTERVAL_S = 0.25
# A step ends early once this many requests (at least; 2 per worker at higher concurrency)
# finished and none succeeded: a dead port fails thousands of requests a second otherwise.
FAIL_FAST_REQUESTS = 10


@dataclass(frozen=True)
class RunConfig:
    """A validated run. An empty ``target.model`` means: ask the server's ``/v1/models``."""

    target: Target
    concurrency: tuple[int, ...]
    duration_s: float
    max_requests: int
    max_run_time_s: float
    metrics_url: str
    metrics_interval_s: float
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class LiveStatus:
    """What the progress display shows while a step runs."""

    concurrency: int
    duration_s: float
    elapsed_s: float
    launched: int
    finished: int
    ok: int
    server: ServerSample | None

    @property
    def in_flight(self) -> int:
        return self.launched - self.finished

    @property
    def failed(self) -> int:
        return self.finished - self.ok


class ProgressSink(Protocol):
    def step_started(self, concurrency: int, duration_s: float) -> None: ...

    def step_update(self, status: LiveStatus) -> None: ...

    def step_finished(self, result: StepResult) -> None: ...


@dataclass(frozen=True)
class RunOutcome:
    """``aborted``: the whole-run cap cut the run. ``stopped``: later steps were skipped because
    every request of a step failed (``unreachable`` when all of them failed to connect)."""

    model: str | None
    steps: tuple[StepResult, ...]
    aborted: str | None
    stopped: str | None = None
    unreachable: bool = False


class DiscoveryError(Exception):
    """The model name could not be read from ``/v1/models``."""


class UnreachableError(Exception):
    """Nothing answered at the server URL (connection refused, DNS failure, connect timeout)."""


def unreachable_message(base_url: str, detail: str) -> str:
    return f"the server at {base_url} is unreachable ({detail}); is it running, and the port-forward up?"


@dataclass
class _Step:
    concurrency: int
    duration_s: float
    started: float = field(default_factory=time.perf_counter)
    launched: int = 0
    succeeded: bool = False
    results: list[RequestResult] = field(default_factory=list)
    metrics: MetricsLog = field(default_factory=MetricsLog)

    def status(self) -> LiveStatus:
        return LiveStatus(
            concurrency=self.concurrency,
            duration_s=self.duration_s,
            elapsed_s=time.perf_counter() - self.started,
            launched=self.launched,
            finished=len(self.results),
            ok=sum(r.ok for r in self.results),
            server=self.metrics.latest,
        )

    def result(self, truncated: bool) -> StepResult:
        return summarize_step(
            self.concurrency,
            self.results,
            time.perf_counter() - self.started,
            self.metrics.summary(),
            truncated,
        )


def same_origin(a: str, b: str) -> bool:
    url_a, url_b = httpx.URL(a), httpx.URL(b)
    return (url_a.scheme, url_a.host, url_a.port) == (url_b.scheme, url_b.host, url_b.port)


async def discover_model(client: httpx.AsyncClient, target: Target, headers: Mapping[str, str]) -> str:
    """The first model id listed by the server, as vLLM serves one model per process."""
    try:
        async with asyncio.timeout(target.request_timeout_s):
            response = await client.get(target.base_url + "/v1/models", headers=headers)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
        raise UnreachableError(unreachable_message(target.base_url, f"GET /v1/models: {type(exc).__name__}")) from exc
    except (TimeoutError, httpx.HTTPError) as exc:
        raise DiscoveryError(f"GET /v1/models failed ({type(exc).__name__})") from exc
    if response.status_code != 200:
        hint = " (is VLLM_API_KEY / --api-key-file right?)" if response.status_code in (401, 403) else ""
        raise DiscoveryError(f"GET /v1/models returned HTTP {response.status_code}{hint}")
    try:
        return str(response.json()["data"][0]["id"])
    except (ValueError, LookupError, TypeError) as exc:
        raise DiscoveryError("GET /v1/models did not list any model") from exc


async def run(config: RunConfig, headers: Mapping[str, str], sink: ProgressSink) -> RunOutcome:
    """Run every step in order, stopping early when ``max_run_time_s`` is reached.

    On the whole-run cap, in-flight requests are cancelled and the interrupted step is kept
    with ``truncated=True`` so that what was measured is still reported. After a step in which
    every request failed, the higher steps are skipped: they could only fail too.
    """
    # The key goes to /metrics only on the API's own origin, never to a separate metrics host.
    metrics_headers = headers if same_origin(config.metrics_url, config.target.base_url) else {}
    connections = max(config.concurrency) + 2  # +2: the /metrics poller and discovery
    steps: list[StepResult] = []
    current: _Step | None = None
    model = config.target.model or None
    # trust_env=False: a proxy picked up from the environment would be measured instead of the server.
    async with httpx.AsyncClient(
        timeout=config.target.request_timeout_s,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,
    ) as client:
        try:
            async with asyncio.timeout(config.max_run_time_s) as cap:
                if model is None:
                    model = await discover_model(client, config.target, headers)
                target = replace(config.target, model=model)
                prompts = itertools.cycle(config.prompts)
                for concurrency in config.concurrency:
                    current = _Step(concurrency, config.duration_s)
                    sink.step_started(concurrency, config.duration_s)
                    await _run_step(client, config, target, headers, metrics_headers, current, prompts, sink)
                    result = current.result(truncated=False)
                    current = None
                    steps.append(result)
                    sink.step_finished(result)
                    if result.requests and not result.ok:
                        return _stopped(model, steps, config)
        except TimeoutError:
            if not cap.expired():
                raise
            if current is not None:
                partial = current.result(truncated=True)
                steps.append(partial)
                sink.step_finished(partial)
            return RunOutcome(model, tuple(steps), f"stopped by the whole-run cap of {config.max_run_time_s:g}s")
    return RunOutcome(model, tuple(steps), None)


def _stopped(model: str | None, steps: list[StepResult], config: RunConfig) -> RunOutcome:
    last = steps[-1]
    kinds = ", ".join(f"{kind} {count}" for kind, count in last.errors.items() if count)
    skipped = [c for c in config.concurrency if c > last.concurrency]
    later = f"; skipped concurrency {', '.join(map(str, skipped))}" if skipped else ""
    unreachable = last.errors.get(CONNECTION, 0) == last.requests
    if unreachable:
        detail = f"all {last.requests} requests at concurrency {last.concurrency} failed to connect"
        why = unreachable_message(config.target.base_url, detail)
    else:
        why = f"every request at concurrency {last.concurrency} failed ({kinds})"
    return RunOutcome(model, tuple(steps), None, why + later, unreachable)


async def _run_step(
    client: httpx.AsyncClient,
    config: RunConfig,
    target: Target,
    headers: Mapping[str, str],
    metrics_headers: Mapping[str, str],
    step: _Step,
    prompts: Iterator[str],
    sink: ProgressSink,
) -> None:
    """Closed loop: each of ``concurrency`` workers sends its next request when the last ends.

    New requests stop at ``duration_s`` or once ``max_requests`` were launched; requests
    already in flight then finish (each bounded by the request timeout) so that slow requests
    are not dropped from the latency percentiles. A step in which the first
    ``max(FAIL_FAST_REQUESTS, 2 x concurrency)`` requests all failed ends there. Server metrics are sampled only while new
    requests are being launched, since the drain would pull the queue average down.
    """
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            if step.launched >= config.max_requests:
                stop.set()
                break
            step.launched += 1
            result = await send_request(client, target, next(prompts), headers)
            step.results.append(result)
            if result.ok:
                step.succeeded = True
            elif not step.succeeded and len(step.results) >= max(FAIL_FAST_REQUESTS, 2 * step.concurrency):
                stop.set()

    async def report() -> None:
        while True:
            sink.step_update(step.status())
            await asyncio.sleep(PROGRESS_INTERVAL_S)

    async with asyncio.TaskGroup() as group:
        poller = group.create_task(poll_metrics(client, config.metrics_url, metrics_headers, config.metrics_interval_s, step.metrics))
        reporter = group.create_task(report())
        workers = [group.create_task(worker()) for _ in range(step.concurrency)]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(config.duration_s):
                await stop.wait()
        stop.set()
        poller.cancel()
        await asyncio.wait(workers)
        reporter.cancel()
