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
from fake_vllm import Behaviour, FakeVLLM

from loadtest.cli import main
from loadtest.knee import HPA_METRIC

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
    assert set(report) == {"config", "completed", "aborted", "steps", "knee", "recommendation", "plot"}
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


QUEUED = Behaviour(ttft_s=0.08, itl_s=0.03, num_tokens=5, max_running=2, kv_metric="old")


@pytest.mark.parametrize("fake", [QUEUED], indirect=True)
def test_queueing_beyond_capacity_sets_the_target(fake: FakeVLLM, capsys: pytest.CaptureFixture[str]) -> None:
    # Service time 0.2 s, capacity 2. At concurrency 5, 3 requests wait and p90 E2E is ~3x the
    # baseline (within the factor 4); at 12, 10 wait and p90 E2E is ~6x: that step is past the knee.
    code, report, _ = run_json(
        capsys,
        *("--url", fake.url, "--concurrency", "1,2,5,12", "--duration", "1.2", "--knee-factor", "4"),
        *FAST_POLL,
        *("--plot", ""),
    )
    assert code == 0
    waiting = {s["concurrency"]: s["server"]["waiting"]["avg"] for s in report["steps"]}
    assert waiting[1] < 0.5 and waiting[2] < 0.5
    assert 2.0 <= waiting[5] <= 3.5
    assert waiting[12] >= 7
    last = report["steps"][-1]
    assert last["server"]["kv_cache_metric"] == "vllm:gpu_cache_usage_perc"
    assert last["server"]["kv_cache_usage"]["avg"] >= 0.9
    assert last["requests_per_s"] <= 1.1 * 2 / 0.2  # capacity caps throughput
    assert report["knee"]["concurrency"] == 5 and report["knee"]["latency_climbed"] is True
    recommendation = report["recommendation"]
    assert recommendation["knee_concurrency"] == 5
    assert recommendation["target_average_value"] in (2, 3, 4)
    assert report["plot"] is None


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


def test_connection_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.
    code, report, _ = run_json(
        capsys,
        *("--url", f"http://127.0.0.1:{port}", "--model", "m", "--concurrency", "2", "--max-requests", "6"),
        *("--duration", "1", "--plot", ""),
    )
    step = only_step(report)
    assert step["errors"]["connection"] == 6
    assert step["server"]["samples"] == 0
    assert code == 1


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
