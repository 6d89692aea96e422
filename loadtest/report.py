"""Human (rich) and machine (JSON) presentation of a run."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from loadtest.knee import Knee, Recommendation
from loadtest.runner import LiveStatus, RunOutcome
from loadtest.servermetrics import GaugeSummary, ServerSample
from loadtest.stats import Percentiles, StepResult

TOKEN_SOURCES = {
    "usage": "server-reported usage.completion_tokens",
    "chunks": "one per streamed chunk with non-empty text",
    "mixed": "usage where the server sent it, chunk count otherwise",
    "none": "no successful request",
}


def step_to_json(step: StepResult) -> dict[str, Any]:
    return {
        "concurrency": step.concurrency,
        "elapsed_s": step.elapsed_s,
        "truncated": step.truncated,
        "requests": step.requests,
        "ok": step.ok,
        "errors": step.errors,
        "requests_per_s": step.requests_per_s,
        "output_tokens": step.output_tokens,
        "output_tokens_per_s": step.output_tokens_per_s,
        "token_count_source": step.token_source,
        "ttft_s": asdict(step.ttft),
        "itl_s": asdict(step.itl),
        "e2e_s": asdict(step.e2e),
        "server": asdict(step.server),
    }


def run_to_json(
    config: dict[str, Any],
    outcome: RunOutcome,
    knee: Knee,
    recommendation: Recommendation,
    plot: str | None,
) -> dict[str, Any]:
    return {
        "config": {**config, "model": outcome.model},
        "completed": outcome.aborted is None,
        "aborted": outcome.aborted,
        "stopped": outcome.stopped,
        "steps": [step_to_json(step) for step in outcome.steps],
        "knee": _knee_json(knee),
        "recommendation": asdict(recommendation),
        "plot": plot,
    }


def _knee_json(knee: Knee) -> dict[str, Any]:
    data = asdict(knee)
    for gain in data["gains"]:
        # A step with no throughput has a gain of -inf, which JSON cannot hold.
        if not math.isfinite(gain["gain"]):
            gain["gain"] = None
    data["found"] = knee.found
    return data


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _triple(p: Percentiles, fmt: Callable[[float | None], str]) -> str:
    return "/".join(fmt(v) for v in (p.p50, p.p90, p.p99))


def _gauge(g: GaugeSummary | None, percent: bool = False) -> str:
    if g is None:
        return "-"
    if percent:
        return f"{g.avg * 100:.0f}/{g.max * 100:.0f}"
    return f"{g.avg:.1f}/{g.max:.0f}"


def _errors(step: StepResult) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in step.errors.items() if count) or "-"


def print_report(console: Console, outcome: RunOutcome, knee: Knee, recommendation: Recommendation, plot: str | None) -> None:
    load = Table(title=f"Throughput and server queue ({escape(outcome.model or 'model unknown')})")
    latency = Table(title="Latency (p50/p90/p99)")
    for header in (
        "conc",
        "ok/all",
        "req/s",
        "out tok/s",
        "waiting avg/max",
        "running avg/max",
        "KV % avg/max",
    ):
        load.add_column(header, justify="right")
    load.add_column("errors")
    for header in ("conc", "TTFT ms", "ITL ms", "E2E s"):
        latency.add_column(header, justify="right")
    for step in outcome.steps:
        concurrency = f"{step.concurrency}{'*' if step.truncated else ''}"
        load.add_row(
            concurrency,
            f"{step.ok}/{step.requests}",
            f"{step.requests_per_s:.2f}",
            f"{step.output_tokens_per_s:.1f}",
            _gauge(step.server.waiting),
            _gauge(step.server.running),
            _gauge(step.server.kv_cache_usage, percent=True),
            _errors(step),
        )
        latency.add_row(concurrency, _triple(step.ttft, _ms), _triple(step.itl, _ms), _triple(step.e2e, _s))
    console.print(load)
    console.print(latency)
    if any(step.truncated for step in outcome.steps):
        console.print("* step cut short by the whole-run cap")
    sources = sorted({step.token_source for step in outcome.steps})
    console.print("Output tokens counted from: " + "; ".join(f"{s} ({TOKEN_SOURCES[s]})" for s in sources))
    kv_names = sorted({s.server.kv_cache_metric for s in outcome.steps if s.server.kv_cache_metric})
    console.print(f"KV-cache metric: {', '.join(kv_names) or 'not exposed'}")
    if outcome.aborted:
        console.print(f"[bold red]Run incomplete:[/] {escape(outcome.aborted)}")
    if outcome.stopped:
        console.print(f"[bold red]Stopped early:[/] {escape(outcome.stopped)}")
    # The "Knee:" line and the recommendation name the same step (recommend() reads knee.concurrency).
    console.print(f"Knee: {escape(knee.reason)}")
    console.print(f"  throughput: {escape(knee.throughput_signal)}")
    console.print(f"  latency: {escape(knee.latency_signal)}")
    if knee.errors_signal:
        console.print(f"  errors: {escape(knee.errors_signal)}")
    if recommendation.target_average_value is None:
        console.print(f"[bold yellow]No HPA recommendation:[/] {escape(recommendation.note)}")
    else:
        observed = recommendation.observed_at_knee
        shown = f"{observed:.2f}" if recommendation.stack_metric == "num_requests_waiting" else f"{observed:.0%}"
        console.print(
            f"[bold green]HPA recommendation:[/] autoscalingMetric {recommendation.stack_metric}, "
            f"autoscalingTarget {recommendation.target_average_value:g} (metric {recommendation.metric}, type AverageValue; "
            f"average {shown} at concurrency {recommendation.knee_concurrency}, the knee)"
        )
        if recommendation.note:
            console.print(f"[bold yellow]Note:[/] {escape(recommendation.note)}")
    if plot:
        console.print(f"Plot written to {plot}")


class RichProgress:
    """Live per-step progress bars, implementing :class:`loadtest.runner.ProgressSink`."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("c={task.fields[concurrency]:>4}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._progress.stop()

    def step_started(self, concurrency: int, duration_s: float) -> None:
        self._task = self._progress.add_task("", total=duration_s, concurrency=concurrency, status="")

    def step_update(self, status: LiveStatus) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=min(status.elapsed_s, status.duration_s), status=_live_text(status))

    def step_finished(self, result: StepResult) -> None:
        if self._task is not None:
            self._progress.update(
                self._task,
                completed=self._progress.tasks[self._task].total,
                status=f"done: {result.ok} ok, {result.requests - result.ok} failed, "
                f"{result.requests_per_s:.2f} req/s, {result.output_tokens_per_s:.1f} tok/s",
            )


def _live_text(status: LiveStatus) -> str:
    text = f"ok {status.ok}  failed {status.failed}  in flight {status.in_flight}"
    server: ServerSample | None = status.server
    if server is not None:
        if server.waiting is not None:
            text += f"  | waiting {server.waiting:.0f}"
        if server.running is not None:
            text += f"  running {server.running:.0f}"
        if server.kv_cache_usage is not None:
            text += f"  KV {server.kv_cache_usage:.0%}"
    return text
