"""The recommend CLI: its table, its JSON, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import recommend
from components import models

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "model_configs"


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in models.HUB_TOKEN_ENV:
        monkeypatch.delenv(name, raising=False)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = recommend.main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_text_output_shows_the_choice_and_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert recommend.main(["--model", "meta-llama/Llama-3.1-70B"]) == 0
    out = capsys.readouterr().out
    assert "v6e: 32 GiB HBM per chip" in out
    assert "no: needs 147.0 GiB, has 121.6" in out  # 2x2
    assert "yes: the choice" in out
    assert "yes, but multi-host (--allow-multi-host)" in out  # 2x4 on two 4-chip VMs
    assert "choice: v6e 2x4 (1 x ct6e-standard-8t, tensor parallel 8)" in out
    assert "--tensor-parallel-size 8 --max-num-seqs 32 --max-num-batched-tokens 512" in out


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "--model", "meta-llama/Llama-3.1-70B")
    assert code == 0
    assert data["model"]["kv_heads"] == 8 and data["request"]["max_model_len"] == 4096
    [v6e] = data["generations"]
    assert v6e["choice"] == {
        "generation": "v6e",
        "topology": "2x4",
        "machine_type": "ct6e-standard-8t",
        "vms": 1,
        "chips": 8,
        "tensor_parallel_size": 8,
        "max_num_seqs": 32,
        "max_num_batched_tokens": 512,
    }
    rows = {(c["topology"], c["vms"]): c for c in v6e["candidates"]}
    assert rows[("1x1", 1)]["relative_cost"] == 0.125 and rows[("4x4", 4)]["relative_cost"] == 2
    assert rows[("2x2", 1)]["fits"] is False and "needs 147.0 GiB" in rows[("2x2", 1)]["why_not"]
    assert rows[("2x4", 1)]["max_sequences"] == 77 and rows[("2x4", 1)]["kv_bytes_per_token"] == 327_680
    assert rows[("2x4", 2)]["fits"] is True and rows[("2x4", 2)]["status"].startswith("yes, but multi-host")


def test_generations_repeated_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = run_json(capsys, "--model", "Qwen/Qwen3-32B", "--generation", "v6e", "--generation", "v5e", "--generation", "v6e")
    assert [g["generation"] for g in data["generations"]] == ["v6e", "v5e"]
    _, data = run_json(capsys, "--model", "Qwen/Qwen3-32B", "--generation", "all")
    assert [g["generation"] for g in data["generations"]] == ["v5e", "v5p", "v6e", "tpu7x"]
    assert {g["generation"]: g["choice"]["topology"] for g in data["generations"]}["v6e"] == "2x2"


def test_config_json_for_a_model_the_catalog_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "--model", "acme/my-mixtral", "--config-json", str(FIXTURES / "Mixtral-8x7B-v0.1.json"))
    assert code == 0 and data["model"]["source"] == "config.json"
    assert data["generations"][0]["choice"]["topology"] == "2x2"


def test_params_from_the_caller(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = json.loads((FIXTURES / "Llama-3.1-8B.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config, "model_type": "exotic"}))
    assert recommend.main(["--model", "acme/exotic", "--config-json", str(path)]) == 2
    assert "not derivable" in capsys.readouterr().err
    code, data = run_json(capsys, "--model", "acme/exotic", "--config-json", str(path), "--params-b", "8")
    assert code == 0 and data["model"]["params_b"] == 8


def test_nothing_fits_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "--model", "meta-llama/Llama-3.1-405B", "--generation", "v5e")
    assert code == 1 and data["generations"][0]["choice"] is None
    assert recommend.main(["--model", "meta-llama/Llama-3.1-405B", "--generation", "v5e"]) == 1
    assert "v5e: no slice fits" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --model"),
        (["--model", "llama"], "--model = 'llama': a Hugging Face model id"),
        (["--model", "acme/unknown"], "--model = 'acme/unknown': not in the catalog"),
        (["--model", "Qwen/Qwen3-8B", "--generation", "v7"], "--generation = 'v7': one of v5e, v5p, v6e, tpu7x, all"),
        (["--model", "Qwen/Qwen3-8B", "--max-model-len", "4k"], "--max-model-len = '4k': a whole number from 128 to 1048576"),
        (["--model", "Qwen/Qwen3-8B", "--max-model-len", "65536"], "--max-model-len = 65536: Qwen/Qwen3-8B handles at most 40960"),
        (["--model", "Qwen/Qwen3-8B", "--concurrency", "0"], "--concurrency = '0': a whole number from 1 to 4096"),
        (["--model", "Qwen/Qwen3-8B", "--memory-utilization", "1.5"], "--memory-utilization = '1.5': a share from 0.5 to 0.99"),
        (["--model", "Qwen/Qwen3-8B", "--params-b", "8"], "--params-b = '8': only goes with --config-json"),
        (["--model", "a/b", "--config-json", "/no/such.json"], "--config-json = '/no/such.json': cannot read it"),
        (["--model", "Qwen/Qwen3-8B", "--verbose"], "unrecognized arguments: --verbose"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert recommend.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"recommend: {message}")
    assert captured.err.count("\n") == 1


def test_as_a_module() -> None:
    env = {k: v for k, v in os.environ.items() if k not in models.HUB_TOKEN_ENV}
    ok = subprocess.run(
        [sys.executable, "-m", "recommend", "--model", "Qwen/Qwen3-8B", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["generations"][0]["choice"]["topology"] == "1x1"
    bad = subprocess.run(
        [sys.executable, "-m", "recommend", "--model", "Qwen/Qwen3-8B", "--concurrency", "many"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stdout == "" and "Traceback" not in bad.stderr
    assert bad.stderr == "recommend: --concurrency = 'many': a whole number from 1 to 4096\n"
