"""Model facts: the catalog, config.json parsing, `architecture:` validation, the Hub fallback."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from components import models
from components.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "model_configs"
KEY = "models[0].architecture"


# No Hugging Face token from the environment reaches these tests (conftest.no_hub_token).
pytestmark = pytest.mark.usefixtures("no_hub_token")


def fixture_arch(name: str, hf_id: str = "test/model") -> models.ModelArch:
    # A fact file for a model whose count config.json does not give (Gemma 4) states it in _params_b.
    stated = json.loads((FIXTURES / name).read_text()).get("_params_b")
    return models.from_config_json_path("models[0].configJson", hf_id, str(FIXTURES / name), params_b=stated)


def test_catalog_covers_the_popular_families() -> None:
    shapes = {(m.params_b, m.layers, m.attention_heads, m.kv_heads, m.head_dim) for m in models.CATALOG.values()}
    assert len(shapes) >= 12
    for hf_id in (
        "meta-llama/Llama-3.1-8B",
        "meta-llama/Llama-3.1-70B",
        "meta-llama/Llama-3.1-405B",
        "meta-llama/Llama-3.2-1B",
        "meta-llama/Llama-3.2-3B",
        "meta-llama/Llama-3.3-70B-Instruct",
        "google/gemma-3-4b-it",
        "google/gemma-3-12b-it",
        "google/gemma-3-27b-it",
        "Qwen/Qwen3-8B",
        "Qwen/Qwen3-32B",
        "mistralai/Mistral-7B-v0.1",
        "mistralai/Mixtral-8x7B-v0.1",
    ):
        assert models.lookup(hf_id) is not None, hf_id


def test_catalog_entries_are_consistent() -> None:
    for arch in models.CATALOG.values():
        assert arch.attention_heads % arch.kv_heads == 0, arch.hf_id
        assert arch.dtype in models.DTYPE_BYTES
        assert arch.max_context and arch.max_context >= 8192


def test_lookup_ignores_case_and_knows_nothing_else() -> None:
    arch = models.lookup("META-LLAMA/llama-3.1-8b-instruct")
    assert arch is not None and arch.hf_id == "meta-llama/Llama-3.1-8B-Instruct"
    assert models.lookup("acme/unknown-7b") is None


def test_weight_bytes_by_dtype() -> None:
    arch = models.lookup("meta-llama/Llama-3.1-8B")
    assert arch is not None
    assert arch.weight_bytes == 8.03e9 * 2
    assert models.ModelArch("x/y", 8.0, 32, 32, 8, 128, "int4").weight_bytes == 4_000_000_000


@pytest.mark.parametrize(
    ("fixture", "hf_id"),
    [
        ("Llama-3.1-8B.json", "meta-llama/Llama-3.1-8B"),
        ("gemma-3-4b-it.json", "google/gemma-3-4b-it"),
        ("gemma-3-27b-it.json", "google/gemma-3-27b-it"),
        ("Mixtral-8x7B-v0.1.json", "mistralai/Mixtral-8x7B-v0.1"),
        ("Qwen3-32B.json", "Qwen/Qwen3-32B"),
        ("Qwen3-30B-A3B.json", "Qwen/Qwen3-30B-A3B"),
    ],
)
def test_config_json_agrees_with_the_catalog(fixture: str, hf_id: str) -> None:
    parsed, known = fixture_arch(fixture, hf_id), models.lookup(hf_id)
    assert known is not None
    assert (parsed.layers, parsed.attention_heads, parsed.kv_heads, parsed.head_dim, parsed.dtype, parsed.max_context) == (
        known.layers,
        known.attention_heads,
        known.kv_heads,
        known.head_dim,
        known.dtype,
        known.max_context,
    )
    # Norms and biases are not counted: the derived count may fall short by well under 0.1%.
    assert parsed.params_b == pytest.approx(known.params_b, rel=2e-3)
    assert parsed.source == "config.json"


def test_llama_parameter_count_by_hand() -> None:
    embeddings = 128256 * 4096 * 2  # untied input and output embeddings
    attention = 2 * 4096 * 32 * 128 + 2 * 4096 * 8 * 128  # q and o, k and v
    mlp = 3 * 4096 * 14336  # gate, up, down
    assert fixture_arch("Llama-3.1-8B.json").params_b * 1e9 == pytest.approx(embeddings + 32 * (attention + mlp))


def test_gemma3_text_config_relies_on_defaults() -> None:
    # The 4B config.json states neither heads nor head_dim; transformers' Gemma3TextConfig does.
    arch = fixture_arch("gemma-3-4b-it.json")
    assert (arch.attention_heads, arch.kv_heads, arch.head_dim, arch.max_context) == (8, 4, 256, 131072)
    assert arch.params_b == pytest.approx(4.3, rel=1e-3)  # includes the SigLIP vision tower


def test_mixture_of_experts_counts_every_expert() -> None:
    mixtral = fixture_arch("Mixtral-8x7B-v0.1.json")
    assert mixtral.params_b == pytest.approx(46.7, rel=1e-3)
    assert fixture_arch("Qwen3-30B-A3B.json").params_b == pytest.approx(30.5, rel=2e-3)


def parse(data: dict[str, Any], params_b: float | None = None) -> models.ModelArch:
    return models.parse_config_json("models[0].configJson", "acme/m", data, origin="cfg.json", params_b=params_b)


LLAMA_LIKE: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "vocab_size": 32000,
    "torch_dtype": "float32",
}


def test_config_json_fallbacks() -> None:
    arch = parse(LLAMA_LIKE)
    assert arch.kv_heads == 16  # no num_key_value_heads: multi-head attention
    assert arch.head_dim == 2048 // 16
    assert arch.dtype == "bfloat16"  # vLLM serves float32 checkpoints in 16 bits
    assert arch.max_context is None
    assert parse({**LLAMA_LIKE, "torch_dtype": None, "dtype": "float16"}).dtype == "float16"


def test_parameter_count_from_the_caller_when_not_derivable() -> None:
    other = {**LLAMA_LIKE, "model_type": "phimoe"}
    with pytest.raises(ConfigError, match=r"model_type phimoe is not derivable.*paramsBillions"):
        parse(other)
    assert parse(other, params_b=3.8).params_b == 3.8


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_hidden_layers": None}, "num_hidden_layers is missing"),
        ({"num_attention_heads": "16"}, "num_attention_heads is '16'"),
        ({"num_key_value_heads": 5}, r"num_key_value_heads \(5\) does not divide"),
        ({"kv_lora_rank": 512}, "latent attention"),
        ({"layer_types": ["linear_attention", "full_attention"]}, "layer_types has linear_attention"),
        ({"quantization_config": {"quant_method": "bitsandbytes"}}, r"quantized checkpoint \(bitsandbytes\)"),
        ({"quantization_config": {"quant_method": "awq", "bits": 3}}, r"bits 3; 4 or 8"),
        ({"torch_dtype": "float64"}, "one of bfloat16"),
        ({"vocab_size": None}, "vocab_size is missing; .* to count parameters"),
    ],
)
def test_config_json_rejects(change: dict[str, Any], message: str) -> None:
    data = {k: v for k, v in {**LLAMA_LIKE, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=message) as err:
        parse(data)
    assert err.value.key == "models[0].configJson" and err.value.value == "cfg.json"


def test_multimodal_other_than_gemma3_needs_a_count() -> None:
    data = {"model_type": "llava", "text_config": LLAMA_LIKE, "vision_config": {"model_type": "clip_vision_model"}}
    with pytest.raises(ConfigError, match="encoders of multimodal model_type llava"):
        parse(data)
    assert parse(data, params_b=7.1).layers == 16


def test_config_json_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        models.from_config_json_path("models[0].configJson", "a/b", str(tmp_path / "missing.json"))
    broken = tmp_path / "config.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        models.from_config_json_path("models[0].configJson", "a/b", str(broken))
    broken.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="JSON object"):
        models.from_config_json_path("models[0].configJson", "a/b", str(broken))


VALID = {"paramsBillions": 9.0, "layers": 40, "attentionHeads": 32, "kvHeads": 8, "headDim": 128, "maxContext": 32768}


def test_architecture_mapping() -> None:
    arch = models.from_mapping(KEY, "acme/m", VALID)
    assert arch == models.ModelArch("acme/m", 9.0, 40, 32, 8, 128, "bfloat16", 32768, "architecture")
    # `pulumi config set` stores numbers as text
    as_text = models.from_mapping(KEY, "acme/m", {k: str(v) for k, v in VALID.items()} | {"dtype": "fp8"})
    assert (as_text.layers, as_text.params_b, as_text.dtype) == (40, 9.0, "float8")
    assert models.from_mapping(KEY, "acme/m", {k: v for k, v in VALID.items() if k != "maxContext"}).max_context is None


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"layers": None}, "layers", "is required"),
        ({"layers": 0}, "layers", "whole number from 1"),
        ({"attentionHeads": 2.5}, "attentionHeads", "whole number"),
        ({"kvHeads": 64}, "kvHeads", "from 1 to 32"),
        ({"kvHeads": 5}, "kvHeads", r"must divide attentionHeads \(32\)"),
        ({"headDim": True}, "headDim", "whole number"),
        ({"paramsBillions": None}, "paramsBillions", "is required"),
        ({"paramsBillions": "lots"}, "paramsBillions", "in billions"),
        ({"dtype": "float64"}, "dtype", "one of bfloat16"),
        ({"maxContext": 10}, "maxContext", "from 128"),
        ({"hiddenSize": 4096}, "hiddenSize", "unknown field"),
    ],
)
def test_architecture_mapping_rejects(change: dict[str, Any], field: str, message: str) -> None:
    raw = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=message) as err:
        models.from_mapping(KEY, "acme/m", raw)
    assert err.value.key == f"{KEY}.{field}"


def test_architecture_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="a mapping of paramsBillions") as err:
        models.from_mapping(KEY, "acme/m", [1, 2])  # type: ignore[arg-type]
    assert err.value.key == KEY


def _transport(status: int, body: Any = None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        assert request.url.path == "/acme/m/resolve/main/config.json"
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handle)


def test_fetch_from_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(models.HUB_OFFLINE_ENV, raising=False)
    arch = models.fetch_from_hub("acme/m", "tok", transport=_transport(200, json.loads((FIXTURES / "Qwen3-32B.json").read_text())))
    assert arch is not None and arch.source == "hub" and arch.layers == 64


def test_fetch_from_hub_falls_back_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(models.HUB_OFFLINE_ENV, raising=False)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no network", request=request)

    assert models.fetch_from_hub("acme/m", "tok", transport=_transport(401, {"error": "gated"})) is None
    assert models.fetch_from_hub("acme/m", "tok", transport=httpx.MockTransport(unreachable)) is None
    assert models.fetch_from_hub("acme/m", "tok", transport=_transport(200, {"model_type": "llama"})) is None


def test_offline_refuses_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(models.HUB_OFFLINE_ENV, "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):
        models.download_config_json("acme/m", "tok", transport=_transport(200, {}))


def test_lookup_never_asks_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("sizing reached for the Hub")

    monkeypatch.setattr(models, "fetch_from_hub", forbidden)
    monkeypatch.setattr(models, "download_config_json", forbidden)
    monkeypatch.delenv(models.HUB_OFFLINE_ENV, raising=False)
    monkeypatch.setenv("HF_TOKEN", "tok")
    assert models.lookup("acme/m") is None
    assert models.lookup("meta-llama/Llama-3.1-8B") is models.CATALOG["meta-llama/llama-3.1-8b"]


def test_hub_token_from_env_or_file(tmp_path: Path) -> None:
    assert models.hub_token({"HF_TOKEN": " t1 "}) == "t1"
    (tmp_path / "token").write_text("t2\n", encoding="utf-8")
    assert models.hub_token({"HF_HOME": str(tmp_path)}) == "t2"
    assert models.hub_token({"HF_TOKEN_PATH": str(tmp_path / "none")}) is None


# --- each catalog entry against its committed config.json fact file --------------------------------
# fact file -> catalog ids it backs (tests/fixtures/model_configs/README.md gives the sources).
FACT_FILES = {
    "Llama-3.1-8B.json": ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct"),
    "Meta-Llama-3-8B-Instruct.json": ("meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B-Instruct"),
    "Meta-Llama-3-70B-Instruct.json": ("meta-llama/Meta-Llama-3-70B", "meta-llama/Meta-Llama-3-70B-Instruct"),
    "gemma-2b.json": ("google/gemma-2b", "google/gemma-2b-it", "google/gemma-1.1-2b-it"),
    "gemma-7b.json": ("google/gemma-7b", "google/gemma-7b-it", "google/gemma-1.1-7b-it"),
    "gemma-3-4b-it.json": ("google/gemma-3-4b-it", "google/gemma-3-4b-pt"),
    "gemma-3-27b-it.json": ("google/gemma-3-27b-it", "google/gemma-3-27b-pt"),
    "Mixtral-8x7B-v0.1.json": ("mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
    "Qwen3-32B.json": ("Qwen/Qwen3-32B",),
    "Qwen3-30B-A3B.json": ("Qwen/Qwen3-30B-A3B",),
    "Qwen2.5-32B.json": ("Qwen/Qwen2.5-32B",),
    "Qwen2.5-32B-Instruct.json": ("Qwen/Qwen2.5-32B-Instruct",),
    "Qwen2.5-VL-7B-Instruct.json": ("Qwen/Qwen2.5-VL-7B-Instruct",),
    # Since issue 15, from the makers' repositories (each file's _source)
    "Qwen3-30B-A3B-2507.json": ("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-30B-A3B-Thinking-2507"),
    "Qwen3-4B-2507.json": ("Qwen/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B-Thinking-2507"),
    "DeepSeek-R1-Distill-Llama-8B.json": ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B",),
    "DeepSeek-R1-Distill-Qwen-32B.json": ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",),
    "DeepSeek-R1-Distill-Llama-70B.json": ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B",),
    "gemma-4-31B-it.json": ("google/gemma-4-31B-it", "google/gemma-4-31B"),
    "gemma-4-26B-A4B-it.json": ("google/gemma-4-26B-A4B-it", "google/gemma-4-26B-A4B"),
    "gpt-oss-120b.json": ("openai/gpt-oss-120b",),
    # Google's copies of the Hub files in AI-Hypercomputer/maxtext
    "Qwen3-235B-A22B-2507.json": ("Qwen/Qwen3-235B-A22B-Instruct-2507", "Qwen/Qwen3-235B-A22B-Thinking-2507"),
    "Qwen3-Coder-480B-A35B-Instruct.json": ("Qwen/Qwen3-Coder-480B-A35B-Instruct",),
    "Qwen3-Coder-30B-A3B-Instruct.json": ("Qwen/Qwen3-Coder-30B-A3B-Instruct",),
    "gpt-oss-20b.json": ("openai/gpt-oss-20b",),
    "Qwen3-VL-2B.json": ("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-2B-Thinking"),
    "Qwen3-VL-4B.json": ("Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-4B-Thinking"),
    "Qwen3-VL-30B-A3B.json": ("Qwen/Qwen3-VL-30B-A3B-Instruct", "Qwen/Qwen3-VL-30B-A3B-Thinking"),
    "Llama-4-Scout-17B-16E-Instruct.json": ("meta-llama/Llama-4-Scout-17B-16E-Instruct",),
    "Llama-4-Maverick-17B-128E-Instruct.json": ("meta-llama/Llama-4-Maverick-17B-128E-Instruct",),
    # Pieced together from copies and published tensor counts (their _source)
    "phi-4.json": ("microsoft/phi-4",),
    "Qwen3-VL-8B.json": ("Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-8B-Thinking"),
}


@pytest.mark.parametrize(("fixture", "hf_id"), [(f, i) for f, ids in FACT_FILES.items() for i in ids])
def test_catalog_entry_matches_its_fact_file(fixture: str, hf_id: str) -> None:
    parsed, known = fixture_arch(fixture, hf_id), models.lookup(hf_id)
    assert known is not None and known.source == "catalog"
    fields = ("layers", "attention_heads", "kv_heads", "head_dim", "dtype", "max_context", "kv_groups", "vision_heads")
    assert {f: getattr(parsed, f) for f in fields} == {f: getattr(known, f) for f in fields}
    assert parsed.params_b == pytest.approx(known.params_b, rel=2e-3)
    if known.unquantized_params_b:
        # _unquantized_params_b: embeddings plus a vision tower whose count config.json does not give
        kept = json.loads((FIXTURES / fixture).read_text()).get("_unquantized_params_b", parsed.unquantized_params_b)
        assert kept == pytest.approx(known.unquantized_params_b, rel=1e-3)


def test_every_fact_file_is_sourced_and_checked() -> None:
    files = {p.name for p in FIXTURES.glob("*.json")}
    assert files == set(FACT_FILES)
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    for name in files:
        assert "_source" in json.loads((FIXTURES / name).read_text()) or name in readme, name


def test_the_issue_models_are_in_the_catalog() -> None:
    for hf_id in (
        "Qwen/Qwen2.5-32B",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "Qwen/Qwen3-32B-FP8",
        "google/gemma-7b-it",
        "google/gemma-2b",
        "meta-llama/Meta-Llama-3-8B-Instruct",
        "meta-llama/Meta-Llama-3-70B-Instruct",
        "meta-llama/Llama-3.3-70B-Instruct",
        "google/gemma-4-31B-it",
        "google/gemma-4-26B-A4B-it",
        "Qwen/Qwen3-30B-A3B-Instruct-2507",
        "Qwen/Qwen3-30B-A3B-Thinking-2507",
        "Qwen/Qwen3-4B-Instruct-2507",
        "Qwen/Qwen3-4B-Thinking-2507",
        "Qwen/Qwen3-30B-A3B-Instruct-2507-FP8",
        "openai/gpt-oss-120b",
        "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        "Qwen/Qwen3-235B-A22B-Instruct-2507",
        "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8",
        "Qwen/Qwen3-235B-A22B-FP8",
        "Qwen/Qwen3-Coder-480B-A35B-Instruct",
        "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
        "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8",
        "openai/gpt-oss-20b",
        "Qwen/Qwen3-VL-8B-Instruct",
        "Qwen/Qwen3-VL-30B-A3B-Instruct-FP8",
        "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
        "microsoft/phi-4",
    ):
        assert models.lookup(hf_id) is not None, hf_id


@pytest.mark.parametrize(
    ("fixture", "total_b", "vision_m"),
    # Per-tensor counts of the released checkpoints: https://huggingface.co/OpenExplorer/Qwen3-VL-{2B,4B,8B}-Instruct
    [("Qwen3-VL-2B.json", 2.128, 407.0), ("Qwen3-VL-4B.json", 4.438, 415.3), ("Qwen3-VL-8B.json", 8.767, 576.4)],
)
def test_qwen3_vl_counts_match_the_published_tensor_counts(fixture: str, total_b: float, vision_m: float) -> None:
    model = fixture_arch(fixture)
    assert model.params_b == pytest.approx(total_b, rel=5e-4)  # norms are left out: under 0.01%
    data = json.loads((FIXTURES / fixture).read_text())
    text = {**data["text_config"], "tie_word_embeddings": data["tie_word_embeddings"]}
    text_only = models.parse_config_json("k", "x/y", text, origin=fixture)
    assert (model.params_b - text_only.params_b) * 1e3 == pytest.approx(vision_m, abs=0.05)


def test_derived_count_matches_the_checkpoints_stored_size() -> None:
    # model.safetensors.index.json total_size of the bfloat16 checkpoint (the fact file's _source)
    stored_parameters = 61064245248 / 2
    assert fixture_arch("Qwen3-Coder-30B-A3B-Instruct.json").params_b * 1e9 == pytest.approx(stored_parameters, rel=1e-5)


def test_a_multimodal_output_head_is_tied_by_the_top_level_flag() -> None:
    data = json.loads((FIXTURES / "Qwen3-VL-30B-A3B.json").read_text())
    untied = models.parse_config_json("k", "x/y", data, origin="f")
    tied = models.parse_config_json("k", "x/y", {**data, "tie_word_embeddings": True}, origin="f")
    text = data["text_config"]
    assert untied.params_b - tied.params_b == pytest.approx(text["vocab_size"] * text["hidden_size"] / 1e9)


@pytest.mark.parametrize(
    ("fixture", "card_total_b", "moe_layers"),
    # MODEL_CARD.md: 109B and 400B total. vLLM on TPU quantizes the routed experts of every MoE layer
    # of an FP8 checkpoint: Scout's 48 layers are all MoE, Maverick's the 24 odd ones.
    [("Llama-4-Scout-17B-16E-Instruct.json", 109, 48), ("Llama-4-Maverick-17B-128E-Instruct.json", 400, 24)],
)
def test_llama4_counts_and_the_share_fp8_leaves_in_16_bits(fixture: str, card_total_b: float, moe_layers: int) -> None:
    model = fixture_arch(fixture)
    assert model.params_b == pytest.approx(card_total_b, rel=0.005)
    data = json.loads((FIXTURES / fixture).read_text())
    text = data["text_config"]
    routed = text["num_local_experts"] * 3 * text["hidden_size"] * text["intermediate_size"]
    kept = model.params_b - moe_layers * routed / 1e9
    assert kept == pytest.approx(data["_unquantized_params_b"], rel=1e-4)


@pytest.mark.parametrize(
    ("hf_id", "checked", "context"),
    [
        # transformers convert_llama4_weights_to_hf.py max_context_length(): 256K for the base models
        ("meta-llama/Llama-4-Scout-17B-16E", "meta-llama/Llama-4-Scout-17B-16E-Instruct", 262144),
        ("meta-llama/Llama-4-Maverick-17B-128E", "meta-llama/Llama-4-Maverick-17B-128E-Instruct", 262144),
        # QwenLM/Qwen3 docs/source/deployment/vllm.md: Qwen3's max_position_embeddings is 40960
        ("Qwen/Qwen3-235B-A22B", "Qwen/Qwen3-235B-A22B-Instruct-2507", 40960),
    ],
)
def test_rows_without_a_fact_file_are_a_checked_row_with_its_context(hf_id: str, checked: str, context: int) -> None:
    row, checked_row = models.lookup(hf_id), models.lookup(checked)
    assert checked_row is not None and any(checked in ids for ids in FACT_FILES.values())
    assert row == dataclasses.replace(checked_row, hf_id=hf_id, max_context=context)


def test_llama4_as_transformers_saves_it_now() -> None:
    # Re-saved by newer transformers, Llama 4's config lists its sparse layers and layer kinds.
    data = json.loads((FIXTURES / "Llama-4-Maverick-17B-128E-Instruct.json").read_text())
    text = data["text_config"]
    layers = text["num_hidden_layers"]
    saved = {
        **{k: v for k, v in text.items() if k != "interleave_moe_layer_step"},
        "moe_layers": list(range(1, layers, 2)),
        "layer_types": ["full_attention" if (i + 1) % 4 == 0 else "chunked_attention" for i in range(layers)],
    }
    resaved = models.parse_config_json("k", "x/y", {**data, "text_config": saved}, origin="f")
    assert resaved.params_b == fixture_arch("Llama-4-Maverick-17B-128E-Instruct.json").params_b
    assert resaved.kv_groups == ((layers, 8, 128),)


def test_gemma4_parameter_count_from_the_makers_shapes() -> None:
    # google-deepmind/gemma gm/nn/gemma4: Einsum shapes of _modules.Attention (q, o; kv, or k alone
    # on global layers with k_eq_v), FeedForward (gating 2 x hidden x embed, linear), _moe.MoERagged
    # (router, gating, linear), the tied embedder, and the vision encoder (27 blocks of 16 x 72-wide
    # heads, a gated MLP of 4304, the 16x16x3 patch projection, the (10240, 2, 1152) position table)
    # plus mm_input_projection into the text width. Norms and scales are left out.
    def vision(text: int) -> int:
        block = 4 * 16 * 1152 * 72 + 3 * 1152 * 4304
        return 27 * block + 768 * 1152 + 10240 * 2 * 1152 + 1152 * text

    def gemma4(embed: int, layers: int, heads: int, kv: int, global_kv: int, mlp: int) -> int:
        local, full = layers * 5 // 6, layers // 6
        attention = local * (2 * heads * 256 * embed + 2 * kv * embed * 256) + full * (2 * heads * 512 * embed + global_kv * embed * 512)
        return 262144 * embed + attention + layers * mlp + vision(embed)

    dense = gemma4(5376, 60, 32, 16, 4, 3 * 5376 * 4 * 5376)
    moe = gemma4(2816, 30, 16, 8, 2, 3 * 2816 * 2112 + 128 * 3 * 704 * 2816 + 2816 * 128)
    for name, count in (("gemma-4-31B-it.json", dense), ("gemma-4-26B-A4B-it.json", moe)):
        stated = json.loads((FIXTURES / name).read_text())
        assert stated["_params_b"] == pytest.approx(count / 1e9, abs=1e-4), name
    assert models.lookup("google/gemma-4-31B-it").params_b == pytest.approx(31.27, abs=0.01)  # type: ignore[union-attr]
    assert models.lookup("google/gemma-4-26B-A4B-it").params_b == pytest.approx(25.81, abs=0.01)  # type: ignore[union-attr]


def test_gpt_oss_keeps_attention_in_16_bits() -> None:
    # openai/gpt-oss README: MXFP4 for the MoE linear weights only.
    arch = fixture_arch("gpt-oss-120b.json")
    assert arch.dtype == "mxfp4" and arch.params_b == pytest.approx(116.83, rel=1e-3)  # the model card's total
    embeddings = 2 * 201088 * 2880
    attention = 36 * (2 * 2880 * 64 * 64 + 2 * 2880 * 8 * 64)
    assert arch.unquantized_params_b * 1e9 == embeddings + attention + 36 * 2880 * 128
    assert 60e9 < arch.weight_bytes < 70e9  # ~61 GiB of safetensors


# --- quantization ---------------------------------------------------------------------------------
def test_quantized_sibling_by_model_id() -> None:
    fp8 = models.lookup("Qwen/Qwen3-32B-FP8")
    base = models.lookup("Qwen/Qwen3-32B")
    assert fp8 is not None and base is not None
    assert (fp8.dtype, fp8.quantization, fp8.layers) == ("float8", "model id", base.layers)
    # 31.2B block weights at 1 byte, 1.56B of embeddings and output head kept at 2 bytes
    assert fp8.weight_bytes == round((32.76 - 1.5558) * 1e9 + 1.5558e9 * 2)
    assert models.lookup("RedHatAI/Meta-Llama-3-70B-Instruct-FP8") is not None  # a third party's quantization
    awq = models.lookup("Qwen/Qwen2.5-32B-Instruct-AWQ")
    assert awq is not None and awq.dtype == "int4"
    assert models.quantization_from_id("x/Model-W8A8") == ("int8", "x/Model")
    assert models.quantization_from_id("x/Model-GPTQ-Int4") == ("int4", "x/Model")
    assert models.lookup("acme/unknown-FP8") is None


@pytest.mark.parametrize(
    ("quantization", "dtype"),
    [
        ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "float8"),
        ({"quant_method": "awq", "bits": 4, "group_size": 128}, "int4"),
        ({"quant_method": "gptq", "bits": 8}, "int8"),
        ({"quant_method": "mxfp4"}, "mxfp4"),
        (
            {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}},
            "float8",
        ),
        ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int"}}}}, "int4"),
    ],
)
def test_quantization_config_sets_the_weight_width(quantization: dict[str, Any], dtype: str) -> None:
    arch = parse({**LLAMA_LIKE, "quantization_config": quantization})
    assert arch.dtype == dtype and arch.quantization == quantization["quant_method"]
    embeddings = 32000 * 2048  # tied: kept in 16 bits
    assert arch.unquantized_params_b == pytest.approx(embeddings / 1e9)
    kept = embeddings / 1e9
    assert arch.weight_bytes == round((arch.params_b - kept) * 1e9 * models.DTYPE_BYTES[dtype] + kept * 1e9 * 2)


def test_served_as_another_format() -> None:
    base = models.CATALOG["qwen/qwen3-32b"]
    assert base.served_as("bfloat16") is base
    int8 = base.served_as("int8")
    assert int8.dtype == "int8" and int8.weight_bytes < base.weight_bytes


# --- attention layouts and multimodal towers -------------------------------------------------------
def test_gemma4_style_global_layers() -> None:
    # A synthetic config with Gemma 4's fields (tpu-inference utils.get_layer_kv_params reads the same).
    text = {
        **LLAMA_LIKE,
        "model_type": "gemma4_text",
        "num_key_value_heads": 8,
        "head_dim": 128,
        "global_head_dim": 256,
        "num_global_key_value_heads": 2,
        "attention_k_eq_v": True,
        "layer_types": ["sliding_attention"] * 12 + ["full_attention"] * 4,
    }
    arch = parse(text, params_b=2.0)
    assert arch.kv_groups == ((12, 8, 128), (4, 2, 256))
    without_k_eq_v = parse({**text, "attention_k_eq_v": False}, params_b=2.0)
    assert without_k_eq_v.kv_groups == ((12, 8, 128), (4, 8, 256))
    with pytest.raises(ConfigError, match="layer_types list of 16"):
        parse({**text, "layer_types": ["full_attention"]}, params_b=2.0)


def test_qwen25_vl_counts_its_vision_tower() -> None:
    arch = fixture_arch("Qwen2.5-VL-7B-Instruct.json")
    assert arch.params_b == pytest.approx(8.29, abs=0.01)  # the model card's 8.29B, vision tower included
    text_only = parse({k: v for k, v in json.loads((FIXTURES / "Qwen2.5-VL-7B-Instruct.json").read_text()).items() if k != "vision_config"})
    assert 0.6 < arch.params_b - text_only.params_b < 0.7
