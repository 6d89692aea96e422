"""Pure-function tests of the load tester: parsing, statistics, knee rule, stack edits (on temporary
copies), CLI validation."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from loadtest.cli import UsageError, parse_base_url, parse_concurrency, parse_seconds, read_api_key
from loadtest.client import (
    BAD_STREAM,
    HTTP_5XX,
    STANDARD_ERROR_KINDS,
    TIMEOUT,
    RequestResult,
    Target,
    chunk_text,
    http_error_kind,
    is_error_payload,
    sse_data,
    sse_lines,
    usage_completion_tokens,
)
from loadtest.knee import HPA_METRIC, Slo, find_knee, marginal_gain, recommend
from loadtest.prompts import PromptFileError, load_prompts
from loadtest.servermetrics import (
    GaugeSummary,
    ServerSummary,
    parse_prometheus_text,
    sample_from_values,
)
from loadtest.stackfile import StackEditError, plan_edit, precheck, stack_path, write_edit
from loadtest.stats import Percentiles, StepResult, percentile, summarize_step

REPO = Path(__file__).resolve().parents[1]

# --- Prometheus text -----------------------------------------------------------------------

VLLM_PAGE = """\
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="1",model_name="m"} 2.0
vllm:num_requests_running{engine="0",model_name="m"} 4.0 1700000000000
vllm:num_requests_running{engine="1",model_name="m"} NaN
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.2
vllm:gpu_cache_usage_perc{engine="1",model_name="m"} 0.6
vllm:odd{note="a } b \\" c {",model_name="x y"} 7
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 12
this line is garbage
vllm:no_value
"""


def test_parser_sums_label_sets_and_skips_noise() -> None:
    values = parse_prometheus_text(VLLM_PAGE)
    assert values["vllm:num_requests_waiting"] == [3.0, 2.0]
    assert values["vllm:num_requests_running"] == [4.0]  # NaN dropped, timestamp ignored
    assert values["vllm:odd"] == [7.0]  # the brace and quote inside the label value do not confuse it
    assert values["vllm:e2e_request_latency_seconds_bucket"] == [12.0]
    sample = sample_from_values(values)
    assert sample.waiting == 5.0
    assert sample.running == 4.0
    assert sample.kv_cache_metric == "vllm:gpu_cache_usage_perc"
    assert sample.kv_cache_usage == pytest.approx(0.4)  # a fraction per engine: averaged, not summed


def test_new_kv_metric_name_wins_and_missing_gauges_are_none() -> None:
    both = parse_prometheus_text("vllm:kv_cache_usage_perc 0.5\nvllm:gpu_cache_usage_perc 0.9\n")
    assert sample_from_values(both).kv_cache_metric == "vllm:kv_cache_usage_perc"
    assert sample_from_values(both).kv_cache_usage == 0.5
    empty = sample_from_values(parse_prometheus_text("# nothing here\n"))
    assert (empty.waiting, empty.running, empty.kv_cache_usage, empty.kv_cache_metric) == (None,) * 4


_label_values = st.text(st.characters(codec="utf-8"), max_size=12)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@given(st.lists(st.tuples(_label_values, st.integers(0, 10_000)), min_size=1, max_size=6))
def test_parser_sums_any_label_values(series: list[tuple[str, int]]) -> None:
    text = "".join(
        f'vllm:num_requests_waiting{{model_name="{_escape(label)}",engine="{i}"}} {value}\n' for i, (label, value) in enumerate(series)
    )
    assert sample_from_values(parse_prometheus_text(text)).waiting == sum(v for _, v in series)


# --- SSE chunks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [("data: {}", "{}"), ("data:{}", "{}"), ("data: [DONE]", "[DONE]"), (": ping", None), ("", None)],
)
def test_sse_data(line: str, expected: str | None) -> None:
    assert sse_data(line) == expected


async def _collect(pieces: list[bytes]) -> list[str]:
    async def chunks() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    return [line async for line in sse_lines(chunks())]


SSE_BODY = 'data: {"text": "é\u2028x\u0085y"}\r\n\r\ndata: [DONE]\n\n'.encode()


@given(st.lists(st.integers(0, len(SSE_BODY)), max_size=6))
def test_sse_lines_split_only_at_newline_wherever_the_bytes_are_cut(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(SSE_BODY)]
    pieces = [SSE_BODY[a:b] for a, b in itertools.pairwise(bounds)]
    lines = asyncio.run(_collect(pieces))
    assert lines == ['data: {"text": "é\u2028x\u0085y"}', "", "data: [DONE]", ""]


def test_sse_lines_reject_invalid_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        asyncio.run(_collect([b"data: \xff\n"]))


def test_chunk_text_and_usage() -> None:
    assert chunk_text({"choices": [{"text": " hi"}]}, chat=False) == " hi"
    role_only = {"choices": [{"delta": {"role": "assistant", "content": ""}}]}
    assert chunk_text(role_only, chat=True) == ""
    assert chunk_text({"choices": [{"delta": {"reasoning_content": "hm"}}]}, chat=True) == "hm"
    usage_only = {"choices": [], "usage": {"completion_tokens": 17}}
    assert chunk_text(usage_only, chat=False) == ""
    assert usage_completion_tokens(usage_only) == 17
    assert usage_completion_tokens({"choices": [], "usage": None}) is None
    assert is_error_payload({"object": "error", "message": "boom"})
    assert is_error_payload({"error": {"message": "boom"}})
    assert not is_error_payload({"choices": []})


def test_http_error_kind_is_the_status_class() -> None:
    assert [http_error_kind(s) for s in (401, 429, 503, 302)] == [
        "http_4xx",
        "http_4xx",
        "http_5xx",
        "http_3xx",
    ]


def test_request_bodies() -> None:
    target = Target("http://h", "m", chat=False, max_tokens=9, include_usage=True, request_timeout_s=1)
    assert target.body("p") == {
        "model": "m",
        "max_tokens": 9,
        "stream": True,
        "prompt": "p",
        "stream_options": {"include_usage": True},
    }
    chat = Target("http://h", "m", chat=True, max_tokens=9, include_usage=False, request_timeout_s=1)
    assert chat.path == "/v1/chat/completions"
    assert chat.body("p")["messages"] == [{"role": "user", "content": "p"}]
    assert "stream_options" not in chat.body("p")


# --- statistics ------------------------------------------------------------------------------


def test_percentile_interpolates_linearly() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50),
    st.floats(0, 100),
    st.floats(0, 100),
)
def test_percentile_is_bounded_and_monotonic(values: list[float], q1: float, q2: float) -> None:
    low, high = sorted((q1, q2))
    p_low, p_high = percentile(values, low), percentile(values, high)
    assert p_low is not None and p_high is not None
    assert min(values) <= p_low <= p_high <= max(values)


def _ok(ttft: float, usage: bool, tokens: int = 4) -> RequestResult:
    return RequestResult(0.0, 1.0, None, ttft=ttft, itls=(0.1, 0.2), output_tokens=tokens, tokens_from_usage=usage)


def test_summarize_step_counts_errors_by_kind_and_token_source() -> None:
    results = [
        _ok(0.1, usage=True),
        _ok(0.3, usage=True),
        RequestResult(0.0, 0.5, HTTP_5XX),
        RequestResult(0.0, 0.5, HTTP_5XX),
        RequestResult(0.0, 9.0, TIMEOUT),
        RequestResult(0.0, 0.1, "http_3xx"),
    ]
    server = ServerSummary(0, 0, None, None, None, None)
    step = summarize_step(4, results, 2.0, server, truncated=False)
    assert step.errors == {
        **dict.fromkeys(STANDARD_ERROR_KINDS, 0),
        HTTP_5XX: 2,
        TIMEOUT: 1,
        "http_3xx": 1,
    }
    assert (step.requests, step.ok, step.output_tokens) == (6, 2, 8)
    assert step.requests_per_s == 1.0 and step.output_tokens_per_s == 4.0
    assert step.ttft.p50 == pytest.approx(0.2)  # failures contribute no latency samples
    assert step.e2e.p99 == 1.0
    assert step.token_source == "usage"
    assert summarize_step(1, [_ok(0.1, True), _ok(0.1, False)], 1, server, False).token_source == "mixed"
    assert summarize_step(1, [_ok(0.1, False)], 1, server, False).token_source == "chunks"
    assert summarize_step(1, [RequestResult(0, 1, BAD_STREAM)], 1, server, False).token_source == "none"


# --- knee and recommendation ----------------------------------------------------------------


def step(
    concurrency: int,
    p90: float = 1.0,
    waiting: float | None = 0.0,
    ok: int = 100,
    failed: int = 0,
    tokens_per_s: float | None = None,
    ttft_p90: float = 0.02,
    kv: float | None = None,
) -> StepResult:
    """A step measured for 10 s; throughput defaults to 10 tokens per successful request."""
    gauge = None if waiting is None else GaugeSummary(waiting, waiting)
    kv_gauge = None if kv is None else GaugeSummary(kv, kv)
    return StepResult(
        concurrency=concurrency,
        elapsed_s=10.0,
        requests=ok + failed,
        ok=ok,
        errors={HTTP_5XX: failed},
        output_tokens=ok * 10 if tokens_per_s is None else round(tokens_per_s * 10),
        token_source="usage",
        ttft=Percentiles(ttft_p90 / 2, ttft_p90, ttft_p90) if ok else Percentiles(None, None, None),
        itl=Percentiles(0.01, 0.02, 0.03),
        e2e=Percentiles(p90 / 2, p90, p90) if ok else Percentiles(None, None, None),
        server=ServerSummary(5, 0, gauge, None, kv_gauge, "vllm:kv_cache_usage_perc" if kv is not None else None),
        truncated=False,
    )


def slot_server(slots: int, ladder: list[int], service_s: float = 1.0, noise: list[float] | None = None) -> list[StepResult]:
    """What a closed-loop client measures on a server with ``slots`` equal slots: throughput
    min(c, slots) / service, queue max(0, c - slots), latency service x max(1, c / slots)."""
    steps = []
    for index, c in enumerate(ladder):
        factor = noise[index % len(noise)] if noise else 1.0
        running = min(c, slots)
        steps.append(
            step(
                c,
                p90=service_s * max(1.0, c / slots),
                waiting=float(max(0, c - slots)),
                tokens_per_s=100 * running / service_s * factor,
                ttft_p90=0.1 + service_s * max(0.0, c / slots - 1),
                kv=running / slots * 0.9,
            )
        )
    return steps


@pytest.mark.parametrize(
    ("slots", "ladder"),
    [
        (6, [1, 3, 6, 12, 24]),  # the case: the old 2x-latency rule said 12
        (4, [1, 2, 4, 8, 16]),
        (4, [1, 4, 16, 64]),
        (3, [1, 3, 9]),
        (8, [2, 8, 9, 32]),
        (16, [1, 2, 4, 8, 16, 32, 64]),
    ],
)
def test_knee_is_the_saturation_point_whatever_the_ladder(slots: int, ladder: list[int]) -> None:
    steps = slot_server(slots, ladder)
    knee = find_knee(steps)
    assert (knee.concurrency, knee.cause, knee.throughput_knee, knee.found) == (slots, "throughput", slots, True)
    rec = recommend(steps, knee)
    assert (rec.metric, rec.stack_metric, rec.target_average_value, rec.knee_concurrency) == (HPA_METRIC, "num_requests_waiting", 1, slots)
    assert knee.reason.startswith(f"concurrency {slots} ")  # the "Knee:" line names the recommendation's step
    kv = recommend(steps, knee, "kv_cache_usage")
    assert (kv.target_average_value, kv.metric) == (0.9, "prometheus.googleapis.com|vllm:kv_cache_usage_perc|gauge")


@given(st.integers(1, 256), st.sets(st.integers(1, 1024), min_size=1, max_size=6), st.integers(2, 8))
def test_knee_property_any_ladder_containing_the_slot_count(slots: int, others: set[int], over: int) -> None:
    ladder = sorted(others | {slots, slots * over})
    steps = slot_server(slots, ladder)
    knee = find_knee(steps)
    assert knee.concurrency == slots
    assert recommend(steps, knee).target_average_value == 1


def test_measurement_noise_does_not_move_the_knee() -> None:
    for noise in ([1.05, 0.95], [0.95, 1.05], [1.0, 0.93, 1.07]):
        assert find_knee(slot_server(6, [1, 3, 6, 12, 24], noise=noise)).concurrency == 6


def test_a_straddling_ladder_picks_the_step_nearer_on_a_log_scale() -> None:
    # Between 4 and 8 the midpoint on a log scale is sqrt(32) = 5.66.
    assert find_knee(slot_server(5, [1, 4, 8, 16])).concurrency == 4
    assert find_knee(slot_server(6, [1, 4, 8, 16])).concurrency == 8


def test_marginal_gain() -> None:
    assert marginal_gain(2, 10.0, 4, 20.0) == pytest.approx(1.0)
    assert marginal_gain(2, 10.0, 8, 20.0) == pytest.approx(0.5)
    assert marginal_gain(2, 10.0, 4, 10.0) == 0.0
    assert marginal_gain(2, 10.0, 4, 5.0) < 0
    assert marginal_gain(2, 10.0, 4, 0.0) == -math.inf


def test_knee_ignores_input_order() -> None:
    steps = slot_server(4, [16, 1, 4])
    assert find_knee(list(reversed(steps))).concurrency == 4


@pytest.mark.parametrize(("waiting", "target"), [(0.0, 1), (0.2, 1), (1.49, 1), (2.5, 3), (7.6, 8)])
def test_target_is_rounded_half_up_and_at_least_one(waiting: float, target: int) -> None:
    steps = [step(1, waiting=waiting, tokens_per_s=100), step(2, waiting=waiting + 1, tokens_per_s=100)]
    assert recommend(steps, find_knee(steps)).target_average_value == target


@pytest.mark.parametrize(("kv", "target"), [(0.0, 0.01), (0.456, 0.46), (1.0, 1.0)])
def test_kv_target_is_a_fraction_the_stack_accepts(kv: float, target: float) -> None:
    steps = [step(1, kv=kv, tokens_per_s=100), step(2, kv=kv, tokens_per_s=100)]
    rec = recommend(steps, find_knee(steps), "kv_cache_usage")
    assert rec.target_average_value == target
    assert ("KV cache is full" in rec.note) == (target == 1.0)


def test_still_growing_means_no_knee_found_and_a_rerun_hint() -> None:
    steps = [step(1, tokens_per_s=10), step(2, tokens_per_s=19, waiting=2.0)]
    knee = find_knee(steps)
    assert (knee.concurrency, knee.cause, knee.found, knee.throughput_knee) == (2, "not_reached", False, None)
    assert "still growing" in knee.throughput_signal
    rec = recommend(steps, knee)
    assert rec.target_average_value == 2
    assert "higher concurrency" in rec.note


def test_slo_binds_before_throughput_and_both_signals_are_reported() -> None:
    steps = slot_server(8, [1, 2, 4, 8, 16], service_s=1.0)
    # E2E p90 is 1 s up to 8; TTFT p90 is 0.1 s up to 8 and 1.1 s at 16.
    assert find_knee(steps, Slo(e2e_p90_s=1.0)).concurrency == 8
    knee = find_knee(steps, Slo(ttft_p90_s=0.5))
    assert (knee.concurrency, knee.cause, knee.latency_knee, knee.throughput_knee) == (8, "slo", 8, 8)  # tie: the SLO is named
    tight = [step(1, p90=1.0, tokens_per_s=10), step(2, p90=1.5, tokens_per_s=20), step(4, p90=3.0, tokens_per_s=40)]
    knee = find_knee(tight, Slo(e2e_p90_s=2.0))
    assert (knee.concurrency, knee.cause, knee.latency_knee, knee.throughput_knee) == (2, "slo", 2, None)
    assert "breaks the SLO" in knee.latency_signal and "still growing" in knee.throughput_signal
    assert knee.found
    assert recommend(tight, knee).knee_concurrency == 2


def test_latency_alone_does_not_move_the_knee_without_an_slo() -> None:
    steps = [step(1, p90=1.0, tokens_per_s=10), step(2, p90=5.0, tokens_per_s=20), step(4, p90=9.0, tokens_per_s=21)]
    knee = find_knee(steps)
    assert (knee.concurrency, knee.cause) == (2, "throughput")
    assert "no SLO given" in knee.latency_signal and "5.0x" in knee.latency_signal


def test_lowest_step_breaking_the_slo_gives_no_knee() -> None:
    steps = slot_server(4, [1, 4, 8])
    knee = find_knee(steps, Slo(ttft_p90_s=0.01))
    assert (knee.concurrency, knee.cause) == (None, "slo")
    assert recommend(steps, knee).target_average_value is None


def test_error_ratio_ends_the_usable_range() -> None:
    steps = [step(1, tokens_per_s=10), step(4, waiting=1.0, tokens_per_s=40), step(8, ok=90, failed=10, tokens_per_s=80)]
    knee = find_knee(steps, max_error_ratio=0.05)
    assert (knee.concurrency, knee.cause) == (4, "errors")
    assert knee.errors_signal is not None and "failed" in knee.errors_signal
    dead = [step(1, tokens_per_s=10), step(2, tokens_per_s=20), step(4, ok=0, failed=10)]
    assert (find_knee(dead).concurrency, find_knee(dead).cause) == (2, "errors")


def test_failing_baseline_gives_no_knee_and_no_target() -> None:
    for baseline in (step(1, ok=0, failed=5), step(1, ok=50, failed=50)):
        knee = find_knee([baseline, step(2)])
        assert knee.concurrency is None and not knee.found
        assert recommend([baseline], knee).target_average_value is None
    assert find_knee([]).concurrency is None


def test_missing_gauge_at_knee_gives_no_target() -> None:
    steps = [step(1, waiting=None)]
    rec = recommend(steps, find_knee(steps))
    assert rec.knee_concurrency == 1
    assert rec.target_average_value is None
    assert recommend(steps, find_knee(steps), "kv_cache_usage").target_average_value is None


@given(st.lists(st.floats(1, 1000), min_size=1, max_size=8), st.floats(0.1, 0.9))
def test_knee_property(throughputs: list[float], min_gain: float) -> None:
    steps = [step(2**i, tokens_per_s=t) for i, t in enumerate(throughputs)]
    measured = [s.output_tokens_per_s for s in steps]
    knee = find_knee(steps, min_gain=min_gain)
    assert knee.concurrency is not None
    index = int(math.log2(knee.concurrency))
    gains = [marginal_gain(2**i, measured[i], 2 ** (i + 1), measured[i + 1]) for i in range(len(steps) - 1)]
    assert all(g >= min_gain for g in gains[:index])
    if knee.found:
        assert gains[index] < min_gain
    else:
        assert index == len(steps) - 1


# --- stack file -------------------------------------------------------------------------------

DEV_STACK = REPO / "Pulumi.dev.yaml"


def copy_stack(tmp_path: Path, name: str = "dev") -> Path:
    target = tmp_path / f"Pulumi.{name}.yaml"
    target.write_text((REPO / f"Pulumi.{name}.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    return target


def changed_lines(edit_diff: str) -> list[str]:
    return [line for line in edit_diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_stack_edit_inserts_the_keys_keeping_everything_else(tmp_path: Path) -> None:
    path = copy_stack(tmp_path)
    before = path.read_text()
    edit = plan_edit(path, ["meta-llama/Llama-3.1-8B"], "num_requests_waiting", 3)
    assert edit.model == "llama-8b" and edit.max_replicas == 1
    assert path.read_text() == before  # planning writes nothing
    write_edit(edit)
    after = path.read_text()
    # Only the two keys' lines change (added, or replaced if someone set them in the stack since).
    assert all(re.match(r"[+-]      autoscaling(Metric|Target): ", line) for line in changed_lines(edit.diff))
    assert [line for line in changed_lines(edit.diff) if line.startswith("+")] == [
        "+      autoscalingMetric: num_requests_waiting",
        "+      autoscalingTarget: 3",
    ]
    assert after.startswith(before.split("config:")[0])  # the header comments
    model = yaml.safe_load(after)["config"]["tpu-serving:models"][0]
    assert (model["autoscalingMetric"], model["autoscalingTarget"]) == ("num_requests_waiting", 3)
    # Idempotent.
    again = plan_edit(path, ["llama-8b"], "num_requests_waiting", 3)
    assert not again.changed and again.diff == ""


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_stack_edit_replaces_values_in_place(tmp_path: Path, stack: str) -> None:
    path = copy_stack(tmp_path, stack)
    original_70b = yaml.safe_load(path.read_text())["config"]["tpu-serving:models"][0]
    edit = plan_edit(path, ["meta-llama/Llama-3.1-70B"], "kv_cache_usage", 0.75)
    assert edit.model == "llama-70b"
    assert changed_lines(edit.diff) == [
        f"-      autoscalingMetric: {original_70b['autoscalingMetric']}",
        f"-      autoscalingTarget: {original_70b['autoscalingTarget']}",
        "+      autoscalingMetric: kv_cache_usage",
        "+      autoscalingTarget: 0.75",
    ]
    write_edit(edit)
    models = yaml.safe_load(path.read_text())["config"]["tpu-serving:models"]
    original = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]["tpu-serving:models"]
    assert models[1] == original[1]  # the other model is untouched


COMMENTED = """# header
config:
  p:models:
    - name: a
      hfId: org/a
      maxReplicas: 2  # two
      # about b
    - name: b  # the second
      hfId: org/b
      maxReplicas: 3
      # trailing comment
"""


def test_stack_edit_does_not_slip_keys_under_someone_elses_comment(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(COMMENTED)
    for served, name in (("org/a", "a"), ("org/b", "b")):
        edit = plan_edit(path, [served], "num_requests_waiting", 2)
        assert edit.model == name
        lines = edit.new_text.splitlines()
        at = lines.index("      autoscalingMetric: num_requests_waiting")
        assert not lines[at - 1].lstrip().startswith("#")
        assert lines[at + 1] == "      autoscalingTarget: 2"
        assert [line for line in lines if line not in COMMENTED.splitlines()] == lines[at : at + 2]
        assert yaml.safe_load(edit.new_text)["config"]["p:models"][["a", "b"].index(name)]["autoscalingTarget"] == 2


@pytest.mark.parametrize(
    ("text", "served", "message"),
    [
        (COMMENTED, ["org/zz"], "no model serving 'org/zz'"),
        (COMMENTED.replace("org/b", "org/a"), ["org/a"], "2 models serving"),
        ("config:\n  p:models: [{name: a, hfId: org/a}]\n", ["org/a"], "safely"),
        ("config:\n  p:models:\n    - &m {name: a, hfId: org/a}\n    - *m\n", ["a"], "2 models"),
        ("config:\n   p:models:\n     -   name: a\n         hfId: org/a\n", ["org/a"], "reformatted"),
        ("config:\n  gcp:project: x\n", ["a"], "'<project>:models'"),
        ("config: [\n", ["a"], "cannot read"),
    ],
)
def test_stack_edit_refusals(tmp_path: Path, text: str, served: list[str], message: str) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(text)
    with pytest.raises(StackEditError, match=re.escape(message)):
        plan_edit(path, served, "num_requests_waiting", 2)
    assert path.read_text() == text


def test_stack_edit_by_explicit_model_name_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(COMMENTED.replace("org/b", "org/a"))
    assert plan_edit(path, ["org/a"], "num_requests_waiting", 2, stack_model="b").model == "b"
    with pytest.raises(StackEditError, match="not a regular file"):
        plan_edit(tmp_path / "Pulumi.none.yaml", ["org/a"], "num_requests_waiting", 2)
    assert precheck(path, [], None) is None
    assert precheck(copy_stack(tmp_path, "prod"), ["meta-llama/Llama-3.1-8B"], None) == "kv_cache_usage"


def test_stack_write_refuses_a_file_changed_meanwhile_and_keeps_its_mode(tmp_path: Path) -> None:
    path = copy_stack(tmp_path)
    path.chmod(0o640)
    edit = plan_edit(path, ["llama-8b"], "num_requests_waiting", 4)
    path.write_text(path.read_text() + "# edited by hand\n")
    with pytest.raises(StackEditError, match="changed while"):
        write_edit(edit)
    edit = plan_edit(path, ["llama-8b"], "num_requests_waiting", 4)
    write_edit(edit)
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.dev.yaml"]  # no temporary file left


@pytest.mark.parametrize("name", ["../dev", "a/b", "", ".hidden", "dev..x"])
def test_stack_names_are_plain(name: str, tmp_path: Path) -> None:
    with pytest.raises(StackEditError):
        stack_path(name, tmp_path)
    assert stack_path("dev", tmp_path) == tmp_path / "Pulumi.dev.yaml"


# --- prompts --------------------------------------------------------------------------------


def test_prompts_plain_and_jsonl(tmp_path: Path) -> None:
    plain = tmp_path / "p.txt"
    plain.write_text('first\n\n  {"prompt": "kept verbatim"}  \nthird\n')
    assert load_prompts(plain) == ("first", '{"prompt": "kept verbatim"}', "third")
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a", "id": 1}\n\n{"prompt": "b"}\n')
    assert load_prompts(jsonl) == ("a", "b")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"prompt": "a"}\n{oops\n', "bad.jsonl:2"),
        ("nofield.jsonl", '{"text": "a"}\n', 'non-empty string "prompt"'),
        ("empty.txt", "\n  \n", "no prompts"),
    ],
)
def test_bad_prompt_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PromptFileError, match=message):
        load_prompts(path)


# --- CLI validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "base"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("https://example.test/v1/", "https://example.test"),
        ("http://gw.test/vllm/v1?x=1", "http://gw.test/vllm"),
    ],
)
def test_base_url_normalization(raw: str, base: str) -> None:
    assert parse_base_url(raw) == base


@pytest.mark.parametrize(
    "raw",
    [None, "", "   ", "ftp://h/", "file:///etc/passwd", "127.0.0.1:8000", "http://", "http://u:hunter2@h"],
)
def test_bad_urls_are_refused_without_echoing_them(raw: str | None) -> None:
    with pytest.raises(UsageError) as info:
        parse_base_url(raw)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(("raw", "seconds"), [("500ms", 0.5), ("0.5", 0.5), ("2s", 2.0), (" 20 ", 20.0), (None, None), ("", None)])
def test_slo_times(raw: str | None, seconds: float | None) -> None:
    assert parse_seconds(raw, "--ttft-p90") == seconds


@pytest.mark.parametrize("raw", ["fast", "0", "-1s", "nan", "inf", "5m"])
def test_bad_slo_times(raw: str) -> None:
    with pytest.raises(UsageError, match="--e2e-p90"):
        parse_seconds(raw, "--e2e-p90")


def test_concurrency_list() -> None:
    assert parse_concurrency("16, 1,4,4") == (1, 4, 16)
    for bad in ("", "0,2", "a,b", "1.5"):
        with pytest.raises(UsageError):
            parse_concurrency(bad)


def test_api_key_sources(tmp_path: Path) -> None:
    assert read_api_key(None, {}) is None
    assert read_api_key(None, {"VLLM_API_KEY": "  env-key\n"}) == "env-key"
    key_file = tmp_path / "key"
    key_file.write_text("file-key\n")
    assert read_api_key(key_file, {"VLLM_API_KEY": "env-key"}) == "file-key"
    key_file.write_text("two words\n")
    with pytest.raises(UsageError) as info:
        read_api_key(key_file, {})
    assert "two words" not in str(info.value)
    key_file.write_text("")
    with pytest.raises(UsageError, match="empty"):
        read_api_key(key_file, {})
    with pytest.raises(UsageError, match="cannot read"):
        read_api_key(tmp_path / "missing", {})
