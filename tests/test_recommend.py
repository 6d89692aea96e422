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


# No Hugging Face token from the environment reaches these tests (conftest.no_hub_token).
pytestmark = pytest.mark.usefixtures("no_hub_token")


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
        "kv_cache_dtype": "auto",
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
        (["--model", "Qwen/Qwen3-8B", "--quantization", "fp4"], "--quantization = 'fp4': one of auto, bfloat16"),
        (["--model", "Qwen/Qwen3-8B", "--kv-cache-dtype", "int8"], "--kv-cache-dtype = 'int8': one of auto"),
        (["--model", "Qwen/Qwen3-8B", "--save"], "--save: only goes with --from-hub"),
        (["--model", "a/b", "--from-hub", "--config-json", "x.json"], "--from-hub: reads the Hub's config.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert recommend.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"recommend: {message}")
    assert captured.err.count("\n") == 1


@pytest.mark.slow
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


def test_ironwood_answer_uses_devices(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "--model", "Qwen/Qwen3-32B", "--generation", "tpu7x", "--max-model-len", "9216")
    [tpu7x] = data["generations"]
    assert code == 0 and tpu7x["devices_per_chip"] == 2
    assert (tpu7x["choice"]["topology"], tpu7x["choice"]["chips"], tpu7x["choice"]["tensor_parallel_size"]) == ("1x1x1", 1, 2)
    assert [c["tensor_parallel_size"] for c in tpu7x["candidates"]][:2] == [2, 8]


def test_quantization_and_kv_cache_options(capsys: pytest.CaptureFixture[str]) -> None:
    _, plain = run_json(capsys, "--model", "Qwen/Qwen3-32B")
    _, fp8 = run_json(capsys, "--model", "Qwen/Qwen3-32B", "--quantization", "float8", "--kv-cache-dtype", "fp8")
    assert fp8["model"]["dtype"] == "float8" and fp8["model"]["checkpoint_dtype"] == "bfloat16"
    assert fp8["model"]["weights_gib"] < plain["model"]["weights_gib"]
    first = fp8["generations"][0]["candidates"][0]
    assert first["kv_bytes_per_token"] * 2 == plain["generations"][0]["candidates"][0]["kv_bytes_per_token"]
    assert fp8["generations"][0]["choice"]["kv_cache_dtype"] == "fp8"
    assert recommend.main(["--model", "Qwen/Qwen3-32B", "--quantization", "float8", "--kv-cache-dtype", "fp8"]) == 0
    out = capsys.readouterr().out
    assert "the checkpoint is bfloat16" in out and "kvCacheDtype: fp8" in out and "--kv-cache-dtype fp8" in out
    assert "Weights: (32.76B - 1.556B kept in 16 bits) x 1 + 1.556B x 2 bytes" in out


def test_quantized_id_from_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "--model", "Qwen/Qwen3-32B-FP8")
    assert code == 0 and data["model"]["dtype"] == "float8" and data["model"]["quantization"] == "model id"


def test_from_hub_with_a_fake_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Not run against the real Hub here: the download is replaced; models.download_config_json's own
    # HTTP path is covered by tests/test_models.py with httpx's MockTransport.
    config = json.loads((FIXTURES / "Qwen2.5-32B.json").read_text())
    asked: list[tuple[str, str | None]] = []

    def fake(hf_id: str, token: str | None, transport: object = None) -> dict[str, Any]:
        asked.append((hf_id, token))
        return config

    monkeypatch.setattr(models, "download_config_json", fake)
    monkeypatch.setattr(recommend, "FACTS_DIR", tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    code, data = run_json(capsys, "--model", "acme/new-32b", "--from-hub")
    assert code == 0 and asked == [("acme/new-32b", "hf_fake")] and data["model"]["source"] == "hub"
    assert not list(tmp_path.iterdir())
    assert recommend.main(["--model", "acme/new-32b", "--from-hub", "--save", "--json"]) == 0
    err = capsys.readouterr().err
    assert '*_family(("acme/new-32b",), 32.76, 64, 40, 8, 128, 131072, 1.5571),' in err
    written = json.loads((tmp_path / "new-32b.json").read_text())
    assert written["_source"] == "https://huggingface.co/acme/new-32b/resolve/main/config.json"
    assert written["num_key_value_heads"] == 8 and "bos_token_id" not in written
    assert models.from_config_json_path("k", "acme/new-32b", str(tmp_path / "new-32b.json")).layers == 64


def test_from_hub_multimodal_entry_and_fact_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {k: v for k, v in json.loads((FIXTURES / "Qwen3-VL-8B.json").read_text()).items() if k != "_source"}
    monkeypatch.setattr(models, "download_config_json", lambda hf_id, token, transport=None: config)
    monkeypatch.setattr(recommend, "FACTS_DIR", tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    assert recommend.main(["--model", "acme/vl-8b", "--from-hub", "--save", "--json"]) == 0
    err = capsys.readouterr().err
    assert '*_family(("acme/vl-8b",), 8.767, 36, 32, 8, 128, 262144, 1.8210, vision_heads=16),' in err
    saved = models.from_config_json_path("k", "acme/vl-8b", str(tmp_path / "vl-8b.json"))
    catalog = models.lookup("Qwen/Qwen3-VL-8B-Instruct")
    assert catalog is not None and (saved.params_b, saved.vision_heads) == (pytest.approx(catalog.params_b, rel=1e-4), 16)


def test_from_hub_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(models.HUB_OFFLINE_ENV, "1")
    assert recommend.main(["--model", "acme/m", "--from-hub"]) == 2
    assert capsys.readouterr().err == "recommend: --from-hub: HF_HUB_OFFLINE is set: the Hub is off limits\n"


def _make_argv(*assignments: str) -> list[str]:
    """The argv `make recommend` passes to python -m recommend (make -n prints, runs nothing)."""
    import shlex
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-s", "-n", "recommend", *assignments], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    command = out[out.index("-m recommend") :].replace("\\\n", " ")
    return shlex.split(command.splitlines()[0])[2:]


def test_make_recommend_passes_every_option() -> None:
    argv = _make_argv(
        "MODEL=Qwen/Qwen3-32B",
        "GENERATION=v6e tpu7x",
        "MAX_MODEL_LEN=8192",
        "CONCURRENCY=16",
        "MEMORY_UTILIZATION=0.9",
        "QUANTIZATION=float8",
        "KV_CACHE_DTYPE=fp8",
        "ALLOW_MULTI_HOST=1",
        "CONFIG_JSON=tests/fixtures/model_configs/Qwen3-32B.json",
        "PARAMS_B=32.8",
        "FROM_HUB=1",
        "SAVE=1",
        "JSON=1",
    )
    assert argv == [
        "--model", "Qwen/Qwen3-32B", "--generation", "v6e", "--generation", "tpu7x", "--max-model-len", "8192",
        "--concurrency", "16", "--memory-utilization", "0.9", "--quantization", "float8", "--kv-cache-dtype", "fp8",
        "--allow-multi-host", "--config-json", "tests/fixtures/model_configs/Qwen3-32B.json", "--params-b", "32.8",
        "--from-hub", "--save", "--json",
    ]  # fmt: skip
    options = {a.option_strings[0] for a in recommend._parser()._actions if a.option_strings and a.dest != "help"}
    assert options == {a for a in argv if a.startswith("--")}


@pytest.mark.slow
def test_make_recommend_answers_as_the_module(capsys: pytest.CaptureFixture[str]) -> None:
    argv = _make_argv("MODEL=Qwen/Qwen3-32B-FP8", "GENERATION=all", "KV_CACHE_DTYPE=fp8", "MEMORY_UTILIZATION=0.9", "JSON=1")
    assert recommend.main(argv) == 0
    via_make = capsys.readouterr().out
    env = {k: v for k, v in os.environ.items() if k not in models.HUB_TOKEN_ENV}
    direct = subprocess.run([sys.executable, "-m", "recommend", *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert via_make == direct.stdout


# One model of each family issue 15 names: each gets an answer on some generation, sized from the
# catalog (never the Hub: conftest keeps tokens out and sizing is hermetic).
ISSUE_15_FAMILIES = (
    "meta-llama/Meta-Llama-3-8B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
    "meta-llama/Llama-3.3-70B-Instruct",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
    "google/gemma-7b-it",
    "google/gemma-2-27b-it",
    "google/gemma-3-27b-it",
    "google/gemma-4-26B-A4B-it",
    "Qwen/Qwen2.5-VL-7B-Instruct",
    "Qwen/Qwen3-32B-FP8",
    "Qwen/Qwen3-235B-A22B-Thinking-2507",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
    "Qwen/Qwen3-VL-30B-A3B-Instruct",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    "openai/gpt-oss-20b",
    "microsoft/phi-4",
)


@pytest.mark.parametrize("hf_id", ISSUE_15_FAMILIES)
def test_every_issue_family_gets_an_answer(hf_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "--model", hf_id, "--generation", "all", "--allow-multi-host")
    assert code == 0 and data["model"]["source"].startswith("catalog")
    assert any(g["choice"] for g in data["generations"])
