"""PNG plot of throughput and latency against concurrency, with the knee marked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

# The Agg canvas is used directly (no pyplot) so no GUI backend or global figure state is involved.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from loadtest.knee import Recommendation
from loadtest.stats import StepResult


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def write_plot(steps: Sequence[StepResult], recommendation: Recommendation, path: Path) -> None:
    ordered = sorted(steps, key=lambda step: step.concurrency)
    x = [step.concurrency for step in ordered]
    figure = Figure(figsize=(8, 7), layout="constrained")
    FigureCanvasAgg(figure)
    throughput, latency = figure.subplots(2, 1, sharex=True)

    rate_line = throughput.plot(x, [s.requests_per_s for s in ordered], marker="o", color="tab:blue", label="requests/s")
    throughput.set_ylabel("requests/s", color="tab:blue")
    tokens = throughput.twinx()
    # Dashed so the two lines stay visible when tokens per request are constant and they overlap.
    token_line = tokens.plot(
        x,
        [s.output_tokens_per_s for s in ordered],
        "--",
        marker="s",
        color="tab:orange",
        label="output tokens/s",
    )
    tokens.set_ylabel("output tokens/s", color="tab:orange")
    throughput.legend(handles=rate_line + token_line, loc="lower right")
    throughput.set_title("Throughput")

    for label, values, style in (
        ("E2E p50", [s.e2e.p50 for s in ordered], "-"),
        ("E2E p90", [s.e2e.p90 for s in ordered], "--"),
        ("TTFT p90", [s.ttft.p90 for s in ordered], ":"),
    ):
        latency.plot(x, [_nan(v) for v in values], style, marker="o", label=label)
    latency.set_ylabel("seconds")
    latency.set_xlabel("concurrency")
    latency.set_title("Latency")

    latency.set_xscale("log", base=2)
    latency.set_xticks(x, labels=[str(c) for c in x])
    latency.xaxis.set_minor_locator(NullLocator())

    title = "No knee found"
    if recommendation.knee_concurrency is not None:
        title = f"Knee at concurrency {recommendation.knee_concurrency}"
        if recommendation.target_average_value is not None:
            title += f": HPA target {recommendation.stack_metric} {recommendation.target_average_value:g} per pod"
        for axis in (throughput, latency):
            axis.axvline(recommendation.knee_concurrency, color="tab:red", linestyle="--", linewidth=1, label="knee")
    latency.legend(loc="upper left")
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
