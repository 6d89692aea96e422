"""Pure-function tests of the load tester: parsing, statistics, knee rule, CLI validation."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.cli import UsageError, parse_base_url, parse_concurrency, read_api_key
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
from loadtest.knee import HPA_METRIC, find_knee, recommend
from loadtest.prompts import PromptFileError, load_prompts
from loadtest.servermetrics import (
    GaugeSummary,
    ServerSummary,
    parse_prometheus_text,
    sample_from_values,
)
from loadtest.stats import Percentiles, StepResult, percentile, summarize_step

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


def step(concurrency: int, p90: float, waiting: float | None = 0.0, ok: int = 100, failed: int = 0) -> StepResult:
    gauge = None if waiting is None else GaugeSummary(waiting, waiting)
    return StepResult(
        concurrency=concurrency,
        elapsed_s=10.0,
        requests=ok + failed,
        ok=ok,
        errors={HTTP_5XX: failed},
        output_tokens=ok * 10,
        token_source="usage",
        ttft=Percentiles(0.01, 0.02, 0.03),
        itl=Percentiles(0.01, 0.02, 0.03),
        e2e=Percentiles(p90 / 2, p90, p90) if ok else Percentiles(None, None, None),
        server=ServerSummary(5, 0, gauge, None, None, None),
        truncated=False,
    )


def test_knee_is_last_step_before_p90_exceeds_factor_times_baseline() -> None:
    steps = [step(1, 1.0), step(4, 1.5, waiting=0.4), step(16, 2.0, waiting=3.4), step(64, 2.01, waiting=40)]
    knee = find_knee(steps, factor=2.0)
    assert knee.concurrency == 16  # exactly 2x is still within; 2.01x is past the knee
    assert knee.latency_climbed
    rec = recommend(steps, knee)
    assert (rec.metric, rec.target_average_value, rec.waiting_at_knee) == (HPA_METRIC, 3, 3.4)


def test_knee_ignores_input_order() -> None:
    steps = [step(16, 9.0), step(1, 1.0), step(4, 1.2)]
    assert find_knee(steps).concurrency == 4


@pytest.mark.parametrize(("waiting", "target"), [(0.0, 1), (0.2, 1), (1.49, 1), (2.5, 3), (7.6, 8)])
def test_target_is_rounded_half_up_and_at_least_one(waiting: float, target: int) -> None:
    steps = [step(1, 1.0, waiting=waiting)]
    assert recommend(steps, find_knee(steps)).target_average_value == target


def test_no_climb_means_knee_at_highest_step_and_a_rerun_hint() -> None:
    steps = [step(1, 1.0), step(2, 1.1, waiting=2.0)]
    knee = find_knee(steps)
    assert (knee.concurrency, knee.latency_climbed) == (2, False)
    rec = recommend(steps, knee)
    assert rec.target_average_value == 2
    assert "higher concurrency" in rec.note


def test_error_ratio_degrades_a_step() -> None:
    steps = [step(1, 1.0), step(4, 1.0, waiting=1.0), step(8, 1.0, ok=90, failed=10)]
    knee = find_knee(steps, max_error_ratio=0.05)
    assert knee.concurrency == 4
    assert "failed" in knee.reason


def test_failing_baseline_gives_no_knee_and_no_target() -> None:
    for baseline in (step(1, 1.0, ok=0, failed=5), step(1, 1.0, ok=50, failed=50)):
        knee = find_knee([baseline, step(2, 1.0)])
        assert knee.concurrency is None
        assert recommend([baseline], knee).target_average_value is None
    assert find_knee([]).concurrency is None


def test_missing_queue_metric_at_knee_gives_no_target() -> None:
    steps = [step(1, 1.0, waiting=None)]
    rec = recommend(steps, find_knee(steps))
    assert rec.knee_concurrency == 1
    assert rec.target_average_value is None


@given(
    st.lists(st.floats(0.01, 100), min_size=1, max_size=8),
    st.floats(1.1, 5),
)
def test_knee_property(p90s: list[float], factor: float) -> None:
    steps = [step(2**i, p90) for i, p90 in enumerate(p90s)]
    knee = find_knee(steps, factor=factor)
    assert knee.concurrency is not None
    index = int(math.log2(knee.concurrency))
    assert all(p <= factor * p90s[0] for p in p90s[: index + 1])
    if knee.latency_climbed:
        assert p90s[index + 1] > factor * p90s[0]
    else:
        assert index == len(p90s) - 1


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
