"""End-to-end tests of ``python -m loadtest`` against the fake vLLM test double on 127.0.0.1.

Steps are kept short and tolerances loose: these run on small, busy CI machines.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_vllm import Behaviour, FakeVLLM

from loadtest.cli import main
from loadtest.knee import HPA_METRIC
from loadtest.runner import FAIL_FAST_REQUESTS

# The CLI end to end against a fake vLLM server over real sockets: the slow tier (make test-full);
# tests/test_loadtest_units.py keeps loadtest in the fast tier.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-test-7f3a9c-never-print-me"
# Not a divisor of the double's service times, so samples do not hit one phase of the cycle.
FAST_POLL = ["--metrics-interval", "0.13"]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    """Run the CLI in-process with JSON on stdout; return (exit code, parsed JSON, all output)."""
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), out + err


def only_step(report: dict[str, Any]) -> dict[str, Any]:
    [step] = report["steps"]
    return step


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeVLLM]:
    with FakeVLLM(getattr(request, "param", Behaviour())) as server:
        yield server


# --- measurement ---------------------------------------------------------------------------

TIMED = Behaviour(ttft_s=0.2, itl_s=0.05, num_tokens=8, max_running=16)


@pytest.mark.parametrize("fake", [TIMED], indirect=True)
def test_measures_ttft_itl_and_throughput(fake: FakeVLLM, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    png = tmp_path / "plot" / "load.png"
    code, report, _ = run_json(capsys, "--url", fake.url, "--concurrency", "3", "--duration", "2", "--plot", str(png), *FAST_POLL)
    assert code == 0
    step = only_step(report)
    assert step["ok"] == step["requests"] >= 6
    assert step["token_count_source"] == "usage"
    assert step["output_tokens"] == 8 * step["ok"]
    assert 0.18 <= step["ttft_s"]["p50"] <= 0.4
    assert 0.04 <= step["itl_s"]["p50"] <= 0.09
    service_s = TIMED.ttft_s + (TIMED.num_tokens - 1) * TIMED.itl_s
    assert service_s <= step["e2e_s"]["p50"] <= service_s + 0.25
    expected_rps = 3 / service_s
    assert 0.6 * expected_rps <= step["requests_per_s"] <= 1.1 * expected_rps
    assert step["output_tokens_per_s"] == pytest.approx(8 * step["requests_per_s"])
    assert step["server"]["running"]["max"] <= 3

    # JSON shape.
    assert set(report) == {"config", "completed", "aborted", "stopped", "steps", "knee", "recommendation", "plot", "stack_edit"}
    assert report["completed"] is True and report["aborted"] is None
    assert report["config"]["model"] == "fake-model"  # discovered from /v1/models
    assert report["config"]["endpoint"] == "/v1/completions"
    assert report["config"]["api_key"] is False
    assert set(step) >= {
        "concurrency",
        "requests_per_s",
        "output_tokens_per_s",
        "errors",
        "server",
        "truncated",
    }
    for key in ("ttft_s", "itl_s", "e2e_s"):
        assert set(step[key]) == {"p50", "p90", "p99"}
    assert set(step["errors"]) == {"http_4xx", "http_5xx", "timeout", "connection", "bad_stream"}
    assert set(step["server"]) == {
        "samples",
        "failed_polls",
        "waiting",
        "running",
        "kv_cache_usage",
        "kv_cache_metric",
    }
    assert step["server"]["kv_cache_metric"] == "vllm:kv_cache_usage_perc"
    assert report["recommendation"]["metric"] == HPA_METRIC

    # The plot.
    assert report["plot"] == str(png)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def slots_server(slots: int, **extra: Any) -> Behaviour:
    # Service time 0.15 s (TTFT 0.06 s + 3 x 0.03 s), long next to the client's own per-request
    # overhead on a busy machine, which idles a slot between requests at exactly `slots` workers
    # (and would make the next step look like it still gains throughput).
    return Behaviour(ttft_s=0.06, itl_s=0.03, num_tokens=4, max_running=slots, **extra)


STEP_S = "0.45"
SLOT_POLL = ["--metrics-interval", "0.07"]
SLOT_CASES = [
    (6, "1,3,6,12,24"),  # the case: the old 2x-latency rule said 12
    (4, "1,2,4,8,16"),
    (6, "2,6,18"),  # same server, another ladder: same knee, same target
    (3, "1,3,9"),
]


@pytest.mark.parametrize(("fake", "slots", "ladder"), [(slots_server(n), n, ladder) for n, ladder in SLOT_CASES], indirect=["fake"])
def test_knee_is_the_slot_count_whatever_the_ladder(fake: FakeVLLM, slots: int, ladder: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, output = run_json(capsys, "--url", fake.url, "--concurrency", ladder, "--duration", STEP_S, "--plot", "", *SLOT_POLL)
    assert code == 0
    steps = {s["concurrency"]: s for s in report["steps"]}
    assert list(steps) == [int(c) for c in ladder.split(",")]
    # The double's queue, as /metrics shows it: empty up to the slot count, c - slots beyond it.
    for c, s in steps.items():
        assert s["ok"] == s["requests"] > 0
        assert s["server"]["running"]["max"] <= slots
        if c <= slots:
            assert s["server"]["waiting"]["avg"] < 0.5
        else:
            # Short steps give few samples, some while the step's new connections open: loose bounds.
            assert 0.4 * (c - slots) <= s["server"]["waiting"]["avg"] <= c - slots
            assert 0.5 * (c - slots) <= s["server"]["waiting"]["max"] <= c - slots
            assert s["server"]["running"]["avg"] >= slots - 0.5
    assert fake.scheduler.peak_running == slots
    # Throughput saturates at the slot count.
    rate = {c: s["output_tokens_per_s"] for c, s in steps.items()}
    assert max(rate.values()) <= 1.25 * rate[slots]
    knee, recommendation = report["knee"], report["recommendation"]
    assert (knee["concurrency"], knee["cause"], knee["found"], knee["throughput_knee"]) == (slots, "throughput", True, slots)
    assert recommendation["knee_concurrency"] == slots
    assert recommendation["stack_metric"] == "num_requests_waiting"
    assert recommendation["target_average_value"] == 1  # the queue at saturation is empty: scale before anyone waits
    assert f"Knee: concurrency {slots} (throughput stops growing" in output
    assert f"at concurrency {slots}, the knee)" in output
    assert "throughput stopped growing" in output and "latency: no SLO given" in output


# Service time 0.16 s, so that the SLO below keeps a margin for a busy machine's overhead.
KV_OLD = Behaviour(ttft_s=0.1, itl_s=0.02, num_tokens=4, max_running=4, kv_metric="old")


@pytest.mark.parametrize("fake", [KV_OLD], indirect=True)
def test_slo_and_kv_cache_target(fake: FakeVLLM, capsys: pytest.CaptureFixture[str]) -> None:
    # At 8 requests on 4 slots p90 end-to-end is about 2 x 0.16 s; an SLO of 0.25 s puts the knee at 4.
    code, report, output = run_json(
        capsys,
        *("--url", fake.url, "--concurrency", "1,4,8", "--duration", STEP_S, "--plot", "", *SLOT_POLL),
        *("--e2e-p90", "250ms", "--ttft-p90", "5s", "--metric", "kv_cache_usage"),
    )
    assert code == 0
    assert report["config"]["slo"] == {"ttft_p90_s": 5.0, "e2e_p90_s": 0.25}
    knee, recommendation = report["knee"], report["recommendation"]
    assert (knee["concurrency"], knee["cause"], knee["latency_knee"]) == (4, "slo", 4)
    assert "breaks the SLO" in knee["latency_signal"]
    assert recommendation["metric"] == "prometheus.googleapis.com|vllm:gpu_cache_usage_perc|gauge"
    assert 0.85 <= recommendation["target_average_value"] <= 1.0
    assert "autoscalingMetric kv_cache_usage" in output


# --- writing the stack ---------------------------------------------------------------------

STACK_MODEL = slots_server(4, model="meta-llama/Llama-3.1-8B")


@pytest.mark.parametrize("fake", [STACK_MODEL], indirect=True)
def test_write_stack_edits_a_copy_and_prints_the_diff(fake: FakeVLLM, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name in ("dev", "prod"):
        (tmp_path / f"Pulumi.{name}.yaml").write_text((REPO / f"Pulumi.{name}.yaml").read_text())
    dev_before = (tmp_path / "Pulumi.dev.yaml").read_text()
    # A wide step past the knee (4 -> 16) keeps the knee clear on a busy machine with short steps.
    argv = ["--url", fake.url, "--concurrency", "2,4,16", "--duration", "0.3", "--plot", "", "--stack-dir", str(tmp_path), *SLOT_POLL]
    code, report, output = run_json(capsys, *argv, "--write-stack", "dev")
    assert code == 0
    edit = report["stack_edit"]
    assert (edit["written"], edit["model"], edit["refused"]) == (True, "llama-8b", None)
    dev_after = (tmp_path / "Pulumi.dev.yaml").read_text()
    assert "+      autoscalingTarget: 1" in output
    added = [line for line in dev_after.splitlines() if line not in dev_before.splitlines()]
    assert added == ["      autoscalingTarget: 1"] or added == [
        "      autoscalingMetric: num_requests_waiting",
        "      autoscalingTarget: 1",
    ]
    model = yaml.safe_load(dev_after)["config"]["tpu-serving:models"][0]
    assert (model["name"], model["autoscalingMetric"], model["autoscalingTarget"]) == ("llama-8b", "num_requests_waiting", 1)
    if model.get("maxReplicas", 1) == 1:
        assert "maxReplicas is 1" in output

    # Without --metric, the metric prod's llama-8b already uses is kept (the KV cache, when written).
    [prod_8b] = [
        m for m in yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text())["config"]["tpu-serving:models"] if m["name"] == "llama-8b"
    ]
    code, report, output = run_json(capsys, *argv, "--write-stack", "prod")
    assert code == 0 and report["recommendation"]["stack_metric"] == prod_8b.get("autoscalingMetric", "num_requests_waiting")
    assert f"-      autoscalingTarget: {prod_8b['autoscalingTarget']}" in output

    # A model the stack does not have is refused before any load is sent, and nothing changes.
    sent = fake.completion_requests
    code = main([*argv, "--write-stack", "dev", "--model", "meta-llama/Llama-3.1-8B", "--stack-model", "nope"])
    assert code == 1 and fake.completion_requests == sent
    assert "no model named 'nope'" in capsys.readouterr().err
    assert (tmp_path / "Pulumi.dev.yaml").read_text() == dev_after
    assert main([*argv, "--write-stack", "qa"]) == 1
    assert "Pulumi.qa.yaml is not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("fake", [slots_server(64, model="org/unknown")], indirect=True)
def test_write_stack_refuses_without_a_knee(fake: FakeVLLM, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(DEV_TEXT := (REPO / "Pulumi.dev.yaml").read_text())
    code, report, output = run_json(
        capsys,
        *("--url", fake.url, "--concurrency", "1,2", "--duration", "0.2", "--plot", "", "--stack-dir", str(tmp_path)),
        *("--write-stack", "dev", "--stack-model", "llama-8b"),
    )
    assert code == 1  # the run is fine, but throughput never stopped growing: nothing to write
    assert report["knee"]["found"] is False and report["stack_edit"]["written"] is False
    assert "rerun with higher concurrency" in report["stack_edit"]["refused"]
    assert "Not writing" in output
    assert stack.read_text() == DEV_TEXT


# --- errors --------------------------------------------------------------------------------

FAULTY = Behaviour(ttft_s=0.01, itl_s=0.005, num_tokens=3, error_rate=0.25, error_status=503, bad_stream_rate=0.2)


@pytest.mark.parametrize("fake", [FAULTY], indirect=True)
def test_errors_are_counted_by_kind_and_max_requests_ends_the_step(fake: FakeVLLM, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, report, _ = run_json(
        capsys,
        *("--url", fake.url, "--concurrency", "4", "--duration", "30", "--max-requests", "40", "--plot", ""),
    )
    assert time.monotonic() - started < 15
    step = only_step(report)
    # The double fails exactly 25 % of requests with 503 and breaks 20 % of the remaining streams.
    assert fake.completion_requests == step["requests"] == 40
    assert step["errors"] == {"http_4xx": 0, "http_5xx": 10, "timeout": 0, "connection": 0, "bad_stream": 6}
    assert step["ok"] == 24
    assert report["knee"]["concurrency"] is None  # 40 % failures: no usable baseline
    assert report["recommendation"]["target_average_value"] is None
    assert code == 0


@pytest.mark.parametrize("fake", [Behaviour(error_rate=1.0, error_status=429)], indirect=True)
def test_http_4xx_and_exit_code_when_nothing_succeeds(fake: FakeVLLM, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = run_json(capsys, "--url", fake.url, "--concurrency", "2", "--max-requests", "6", "--plot", "")
    assert only_step(report)["errors"]["http_4xx"] == 6
    assert code == 1


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens on it any more


def test_unreachable_server_is_named_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_dead_port()}"
    started = time.monotonic()
    assert main(["--url", url, "--plot", ""]) == 1
    err = capsys.readouterr().err
    assert f"the server at {url} is unreachable" in err and "pass --model" not in err

    # With --model there is no discovery: the first step stops after a few connection errors.
    code, report, output = run_json(capsys, "--url", url, "--model", "m", "--concurrency", "2,4,8", "--duration", "5", "--plot", "")
    assert time.monotonic() - started < 3
    step = only_step(report)
    # The step stops at FAIL_FAST_REQUESTS failures; the other worker's request still completes.
    assert step["errors"]["connection"] == step["requests"] in (FAIL_FAST_REQUESTS, FAIL_FAST_REQUESTS + 1)
    assert step["server"]["samples"] == 0
    assert "unreachable" in report["stopped"] and "skipped concurrency 4, 8" in report["stopped"]
    assert output.count("is unreachable") >= 2  # in the report and as the error line
    assert code == 1


@pytest.mark.parametrize("fake", [Behaviour(error_rate=1.0, error_status=503)], indirect=True)
def test_a_step_where_everything_fails_ends_the_run(fake: FakeVLLM, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, _ = run_json(capsys, "--url", fake.url, "--concurrency", "1,16,32", "--duration", "5", "--plot", "")
    assert code == 1
    assert fake.completion_requests == FAIL_FAST_REQUESTS
    assert only_step(report)["errors"]["http_5xx"] == FAIL_FAST_REQUESTS
    assert report["stopped"].startswith("every request at concurrency 1 failed (http_5xx 10)")
    assert report["knee"]["concurrency"] is None


# --- bounded stop --------------------------------------------------------------------------

HANG = Behaviour(hang=True)


@pytest.mark.parametrize("fake", [HANG], indirect=True)
def test_request_timeout_bounds_a_silent_server(fake: FakeVLLM, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, report, _ = run_json(
        capsys,
        *("--url", fake.url, "--model", "fake-model", "--concurrency", "2", "--duration", "1"),
        *("--request-timeout", "0.5", "--plot", ""),
    )
    assert time.monotonic() - started < 5
    step = only_step(report)
    assert step["requests"] == step["errors"]["timeout"] >= 2
    assert code == 1


@pytest.mark.parametrize("fake", [HANG], indirect=True)
def test_whole_run_cap_stops_everything(fake: FakeVLLM, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, report, _ = run_json(
        capsys,
        *("--url", fake.url, "--concurrency", "1,8", "--duration", "60", "--request-timeout", "60"),
        *("--max-run-time", "1.5", "--model", "fake-model", "--plot", ""),
    )
    assert time.monotonic() - started < 5
    assert code == 1
    assert report["completed"] is False and "1.5s" in report["aborted"]
    step = only_step(report)
    assert step["truncated"] is True and step["concurrency"] == 1


# --- API key -------------------------------------------------------------------------------

KEYED = Behaviour(api_key=SECRET, ttft_s=0.02, itl_s=0.01, num_tokens=6)


@pytest.mark.parametrize("fake", [KEYED], indirect=True)
def test_api_key_is_sent_and_never_printed(
    fake: FakeVLLM, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    common = [
        "--url",
        fake.url,
        "--concurrency",
        "2",
        "--duration",
        "0.6",
        "--plot",
        "",
        "--chat",
        "--no-usage",
    ]

    monkeypatch.setenv("VLLM_API_KEY", SECRET)
    code, report, output = run_json(capsys, *common)
    assert code == 0
    step = only_step(report)
    assert step["ok"] == step["requests"] > 0
    assert report["config"]["api_key"] is True
    assert report["config"]["endpoint"] == "/v1/chat/completions"
    # Chat streams open with a role-only chunk; it is not a token.
    assert step["token_count_source"] == "chunks"
    assert step["output_tokens"] == 6 * step["ok"]
    assert SECRET not in output

    monkeypatch.delenv("VLLM_API_KEY")
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    code, report, output = run_json(capsys, *common, "--api-key-file", str(key_file))
    assert code == 0 and only_step(report)["errors"]["http_4xx"] == 0
    assert SECRET not in output
    assert fake.unauthorized == 0

    key_file.write_text("wrong-key")
    code, report, output = run_json(capsys, *common, "--api-key-file", str(key_file), "--model", "fake-model")
    assert code == 1 and only_step(report)["errors"]["http_4xx"] == only_step(report)["requests"]
    assert fake.unauthorized > 0

    # Model discovery with a bad key fails with a hint, still without the key.
    assert main(["--url", fake.url, "--api-key-file", str(key_file)]) == 1
    assert "/v1/models returned HTTP 401" in capsys.readouterr().err

    # A key passed on the command line is refused without being echoed.
    for argv in (["--api-key", SECRET], [f"--api-key={SECRET}"]):
        with pytest.raises(SystemExit) as exited:
            main(["--url", fake.url, *argv])
        assert exited.value.code == 2
        out, err = capsys.readouterr()
        assert SECRET not in out + err and "--api-key" in err


# --- refusals ------------------------------------------------------------------------------


def test_missing_url_is_refused_with_one_line_and_exit_2() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "loadtest", "--duration", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.count("\n") == 1 and "--url is required" in completed.stderr


@pytest.mark.parametrize("url", ["", "ftp://127.0.0.1/", "127.0.0.1:8000", "file:///etc/hosts"])
def test_non_http_urls_are_refused(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("loadtest: error: --url")


def test_unreadable_prompts_file_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--url", "http://127.0.0.1:9", "--prompts", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read prompts file" in capsys.readouterr().err
