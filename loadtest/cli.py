"""Command line: ``python -m loadtest --url http://HOST:PORT [options]``.

Exit codes: 0 the run completed and some request succeeded (and, with ``--write-stack``, the
stack file was updated); 1 the run was cut by the whole-run cap, no request succeeded, the
server was unreachable, the model could not be discovered, or ``--write-stack`` refused to edit
the file; 2 bad usage (including a missing or non-http(s) ``--url``); 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

import tool_cli
from loadtest.client import Target
from loadtest.knee import DEFAULT_MIN_GAIN, STACK_METRICS, WAITING, Knee, Recommendation, Slo, find_knee, recommend
from loadtest.plot import write_plot
from loadtest.prompts import BUILTIN_PROMPTS, PromptFileError, load_prompts
from loadtest.report import RichProgress, print_report, run_to_json
from loadtest.runner import DiscoveryError, RunConfig, RunOutcome, UnreachableError, run
from loadtest.stackfile import StackEdit, StackEditError, plan_edit, precheck, stack_path, write_edit

API_KEY_ENV = "VLLM_API_KEY"
PROG = "loadtest"


class UsageError(tool_cli.BadInput):
    """Invalid command line; reported as one line with exit code 2."""


_Parser = tool_cli.ArgumentParser


def build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        # Without this, a mistyped `--api-key SECRET` would be taken as `--api-key-file SECRET`.
        allow_abbrev=False,
        description="Step-wise streaming load test of an OpenAI-compatible vLLM server, with an HPA "
        "target recommendation for vllm:num_requests_waiting. The API key, if the server needs one, "
        f"is read from ${API_KEY_ENV} or --api-key-file, never from the command line.",
    )
    parser.add_argument("--url", help="server base URL, e.g. http://127.0.0.1:8000 (required)")
    parser.add_argument("--model", help="model name to request (default: first id from /v1/models)")
    parser.add_argument("--chat", action="store_true", help="use /v1/chat/completions instead of /v1/completions")
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated steps (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per step (default: %(default)s)")
    parser.add_argument(
        "--max-requests",
        type=int,
        default=10_000,
        help="max requests launched per step (default: %(default)s)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=120.0,
        help="hard timeout per request, s (default: %(default)s)",
    )
    parser.add_argument(
        "--max-run-time",
        type=float,
        help="hard cap for the whole run, s (default: steps x (duration + request timeout) + request timeout + 30)",
    )
    parser.add_argument("--max-tokens", type=int, default=128, help="max_tokens per request (default: %(default)s)")
    parser.add_argument("--prompts", type=Path, help='prompt file: one per line, or .jsonl with a "prompt" field')
    parser.add_argument("--api-key-file", type=Path, help=f"file holding the API key (overrides ${API_KEY_ENV})")
    parser.add_argument(
        "--no-usage",
        action="store_true",
        help="do not request stream_options.include_usage; count one token per non-empty chunk",
    )
    parser.add_argument("--metrics-url", help="Prometheus metrics URL (default: URL + /metrics)")
    parser.add_argument(
        "--metrics-interval",
        type=float,
        default=1.0,
        help="seconds between /metrics polls (default: %(default)s)",
    )
    parser.add_argument(
        "--min-gain",
        type=float,
        default=DEFAULT_MIN_GAIN,
        help="throughput has stopped growing when ln(T2/T1)/ln(c2/c1) between two steps falls below this (default: %(default)s)",
    )
    parser.add_argument("--ttft-p90", metavar="TIME", help="SLO: p90 time to first token, e.g. 500ms or 0.5 (seconds)")
    parser.add_argument("--e2e-p90", metavar="TIME", help="SLO: p90 end-to-end latency, e.g. 20s or 20 (seconds)")
    parser.add_argument(
        "--metric",
        choices=STACK_METRICS,
        help="autoscalingMetric to recommend a target for (default: the stack model's, else num_requests_waiting)",
    )
    parser.add_argument(
        "--write-stack",
        metavar="STACK",
        help="write autoscalingMetric/autoscalingTarget for the model into Pulumi.STACK.yaml and print the diff",
    )
    parser.add_argument(
        "--stack-dir",
        type=Path,
        default=Path(),
        help="directory holding Pulumi.STACK.yaml (default: the current one)",
    )
    parser.add_argument(
        "--stack-model",
        metavar="NAME",
        help="the stack's model name to write (default: the entry whose name or hfId is the served model)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the results as JSON to FILE (stdout if omitted)",
    )
    parser.add_argument(
        "--plot",
        default="build/loadtest.png",
        metavar="PNG",
        help="where to write the plot; empty to skip (default: %(default)s)",
    )
    return parser


def parse_base_url(raw: str | None, option: str = "--url") -> str:
    """Validate a server URL and return it without a trailing ``/`` or ``/v1``.

    The offending value is not echoed back: it could carry credentials.
    """
    if raw is None or not raw.strip():
        raise UsageError(f"{option} is required, e.g. {option} http://127.0.0.1:8000")
    try:
        url = httpx.URL(raw.strip())
    except httpx.InvalidURL as exc:
        raise UsageError(f"{option} is not a valid URL") from exc
    if url.scheme not in ("http", "https"):
        raise UsageError(f"{option} must start with http:// or https://")
    if not url.host:
        raise UsageError(f"{option} has no host")
    if url.userinfo:
        raise UsageError(f"{option} must not contain credentials; put the API key in ${API_KEY_ENV} or --api-key-file")
    path = url.path.rstrip("/").removesuffix("/v1").rstrip("/")
    return f"{url.scheme}://{url.netloc.decode('ascii')}{path}"


def parse_concurrency(text: str) -> tuple[int, ...]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise UsageError("--concurrency must be comma-separated integers, e.g. 1,4,16,64") from exc
    if not levels or levels[0] < 1:
        raise UsageError("--concurrency needs at least one level, all >= 1")
    return tuple(levels)


def read_api_key(path: Path | None, environ: Mapping[str, str]) -> str | None:
    """The API key from ``path`` if given, else from ``$VLLM_API_KEY``; ``None`` when neither is set.

    Messages never include the key itself.
    """
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --api-key-file {path}: {type(exc).__name__}") from exc
        if not key:
            raise UsageError(f"--api-key-file {path} is empty")
    else:
        key = environ.get(API_KEY_ENV, "").strip()
        if not key:
            return None
    if not key.isascii() or any(char.isspace() or not char.isprintable() for char in key):
        raise UsageError("the API key must be printable ASCII without whitespace")
    return key


def parse_seconds(raw: str | None, option: str) -> float | None:
    """``500ms``, ``0.5s`` or ``0.5`` (seconds) -> 0.5; ``None`` or empty -> ``None``."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip().lower()
    scale = 1.0
    if text.endswith("ms"):
        text, scale = text[:-2], 0.001
    elif text.endswith("s"):
        text = text[:-1]
    try:
        value = float(text) * scale
    except ValueError as exc:
        raise UsageError(f"{option} must be a time such as 500ms, 2s or 0.5 (seconds)") from exc
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{option} must be > 0")
    return value


@dataclass(frozen=True)
class Settings:
    run: RunConfig
    api_key: str | None = field(repr=False)
    min_gain: float
    slo: Slo
    metric: str | None
    stack_file: Path | None
    stack_model: str | None
    json_target: str | None
    plot: Path | None
    prompt_source: str

    def describe(self) -> dict[str, Any]:
        """Run settings for the JSON report; the API key appears only as present or not."""
        run = self.run
        return {
            "url": run.target.base_url,
            "endpoint": run.target.path,
            "concurrency": list(run.concurrency),
            "duration_s": run.duration_s,
            "max_requests_per_step": run.max_requests,
            "request_timeout_s": run.target.request_timeout_s,
            "max_run_time_s": run.max_run_time_s,
            "max_tokens": run.target.max_tokens,
            "include_usage": run.target.include_usage,
            "prompts": {"source": self.prompt_source, "count": len(run.prompts)},
            "metrics_url": run.metrics_url,
            "metrics_interval_s": run.metrics_interval_s,
            "min_gain": self.min_gain,
            "slo": {"ttft_p90_s": self.slo.ttft_p90_s, "e2e_p90_s": self.slo.e2e_p90_s},
            "metric": self.metric,
            "stack_file": None if self.stack_file is None else str(self.stack_file),
            "api_key": self.api_key is not None,
        }


def _positive(value: float, option: str) -> float:
    if not value > 0:
        raise UsageError(f"{option} must be > 0")
    return value


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    base_url = parse_base_url(args.url)
    metrics_url = base_url + "/metrics"
    if args.metrics_url is not None:
        parse_base_url(args.metrics_url, "--metrics-url")
        metrics_url = args.metrics_url.strip()
    concurrency = parse_concurrency(args.concurrency)
    duration = _positive(args.duration, "--duration")
    request_timeout = _positive(args.request_timeout, "--request-timeout")
    max_run_time = args.max_run_time
    if max_run_time is None:
        max_run_time = len(concurrency) * (duration + request_timeout) + request_timeout + 30
    if args.max_requests < 1:
        raise UsageError("--max-requests must be >= 1")
    if args.max_tokens < 1:
        raise UsageError("--max-tokens must be >= 1")
    if not 0 < args.min_gain < 1:
        raise UsageError("--min-gain must be between 0 and 1")
    stack_file = None
    if args.write_stack:
        try:
            stack_file = stack_path(args.write_stack, args.stack_dir)
        except StackEditError as exc:
            raise UsageError(str(exc)) from exc
    elif args.stack_model:
        raise UsageError("--stack-model needs --write-stack")
    if args.prompts is not None:
        try:
            prompts = load_prompts(args.prompts)
        except PromptFileError as exc:
            raise UsageError(str(exc)) from exc
        prompt_source = str(args.prompts)
    else:
        prompts, prompt_source = BUILTIN_PROMPTS, "built-in"
    target = Target(
        base_url=base_url,
        model=args.model or "",
        chat=args.chat,
        max_tokens=args.max_tokens,
        include_usage=not args.no_usage,
        request_timeout_s=request_timeout,
    )
    return Settings(
        run=RunConfig(
            target=target,
            concurrency=concurrency,
            duration_s=duration,
            max_requests=args.max_requests,
            max_run_time_s=_positive(max_run_time, "--max-run-time"),
            metrics_url=metrics_url,
            metrics_interval_s=_positive(args.metrics_interval, "--metrics-interval"),
            prompts=prompts,
        ),
        api_key=read_api_key(args.api_key_file, environ),
        min_gain=args.min_gain,
        slo=Slo(parse_seconds(args.ttft_p90, "--ttft-p90"), parse_seconds(args.e2e_p90, "--e2e-p90")),
        metric=args.metric,
        stack_file=stack_file,
        stack_model=args.stack_model,
        json_target=args.json,
        plot=Path(args.plot) if args.plot else None,
        prompt_source=prompt_source,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse would echo the values too, and a stray `--api-key SECRET` must not reach the logs.
        names = sorted({token.split("=", 1)[0] for token in unknown if token.startswith("-")})
        parser.error(f"unrecognized arguments {', '.join(names) or '(positional)'}; values not shown")
    try:
        settings = settings_from_args(args, os.environ)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return tool_cli.EXIT_BAD_INPUT
    metric = settings.metric
    if settings.stack_file is not None:
        # Refuse now what would be refused after minutes of load.
        try:
            current = precheck(settings.stack_file, [settings.run.target.model] if settings.run.target.model else [], settings.stack_model)
        except StackEditError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return tool_cli.EXIT_FINDING
        metric = metric or (current if current in STACK_METRICS else None)
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    json_to_stdout = settings.json_target == "-"
    # With JSON on stdout, the human report moves to stderr so stdout stays parseable.
    console = Console(stderr=json_to_stdout, highlight=False)
    try:
        with RichProgress(Console(stderr=True)) as progress:
            outcome = asyncio.run(run(settings.run, headers, progress))
    except UnreachableError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return tool_cli.EXIT_FINDING
    except DiscoveryError as exc:
        print(f"{PROG}: error: {exc}; pass --model", file=sys.stderr)
        return tool_cli.EXIT_FINDING
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return tool_cli.EXIT_INTERRUPTED
    if metric is None and settings.stack_file is not None and outcome.model:
        # Keep the metric the stack already uses for this model (the write reports a missing model).
        with contextlib.suppress(StackEditError):
            current = precheck(settings.stack_file, [outcome.model], settings.stack_model)
            metric = current if current in STACK_METRICS else None
    knee = find_knee(outcome.steps, settings.slo, settings.min_gain)
    recommendation = recommend(outcome.steps, knee, metric or WAITING)
    plot = None
    if settings.plot is not None and outcome.steps:
        write_plot(outcome.steps, recommendation, settings.plot)
        plot = str(settings.plot)
    print_report(console, outcome, knee, recommendation, plot)
    stack_ok, stack_json = True, None
    if settings.stack_file is not None:
        stack_ok, stack_json = _write_stack(console, settings, outcome, knee, recommendation)
    if settings.json_target is not None:
        report = run_to_json(settings.describe(), outcome, knee, recommendation, plot)
        report["stack_edit"] = stack_json
        text = json.dumps(report, indent=2)
        if json_to_stdout:
            sys.stdout.write(text + "\n")
        else:
            json_path = Path(settings.json_target)
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(text + "\n", encoding="utf-8")
    if outcome.unreachable:
        print(f"{PROG}: error: {outcome.stopped}", file=sys.stderr)
    succeeded = any(step.ok for step in outcome.steps)
    return tool_cli.EXIT_OK if outcome.aborted is None and succeeded and stack_ok else tool_cli.EXIT_FINDING


def _write_stack(
    console: Console, settings: Settings, outcome: RunOutcome, knee: Knee, recommendation: Recommendation
) -> tuple[bool, dict[str, Any]]:
    """Edit the stack file when the run gives a target to write; (success, JSON summary)."""
    assert settings.stack_file is not None
    summary: dict[str, Any] = {"path": str(settings.stack_file), "written": False, "model": None, "diff": None, "refused": None}
    target = recommendation.target_average_value
    why = None
    if outcome.aborted is not None:
        why = f"the run was cut short ({outcome.aborted})"
    elif not knee.found and knee.concurrency is not None:
        why = f"no knee within the tested steps ({knee.reason}); rerun with higher concurrency"
    elif target is None:
        why = recommendation.note
    edit: StackEdit | None = None
    if why is None and target is not None:
        try:
            served = [outcome.model] if outcome.model else []
            edit = plan_edit(settings.stack_file, served, recommendation.stack_metric, target, settings.stack_model)
            write_edit(edit)
        except (StackEditError, OSError) as exc:
            why = str(exc)
    if edit is None or why is not None:
        summary["refused"] = why
        console.print(f"[bold red]Not writing {escape(str(settings.stack_file))}:[/] {escape(str(why))}", soft_wrap=True)
        return False, summary
    summary.update(written=edit.changed, model=edit.model, diff=edit.diff)
    if not edit.changed:
        console.print(f"{escape(str(edit.path))}: model {escape(edit.model)} already has these values; unchanged")
    else:
        console.print(f"Wrote {escape(str(edit.path))} (model {escape(edit.model)}):")
        console.print(edit.diff.rstrip("\n"), soft_wrap=True, highlight=False, markup=False)
    if edit.max_replicas is not None and edit.max_replicas <= 1:
        console.print(f"Note: maxReplicas is {edit.max_replicas} for {escape(edit.model)}, so no HPA reads this target until it is raised.")
    return True, summary
