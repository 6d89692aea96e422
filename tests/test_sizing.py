"""Slice sizing: the arithmetic by hand, the public guidance, and the requests it must refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components import facts, models, sizing
from components.errors import ConfigError

KEY = "models[0].topology"
V6E = facts.GENERATIONS["v6e"]
GIB = facts.GIB


# No Hugging Face token from the environment reaches these tests (conftest.no_hub_token).
pytestmark = pytest.mark.usefixtures("no_hub_token")


def arch(hf_id: str) -> models.ModelArch:
    found = models.lookup(hf_id)
    assert found is not None
    return found


def resolve(
    model: models.ModelArch | None,
    topology: str = "auto",
    *,
    generation: facts.Generation = V6E,
    machine_type: str | None = None,
    max_model_len: int = sizing.DEFAULT_MAX_MODEL_LEN,
    concurrency: int = sizing.DEFAULT_CONCURRENCY,
    utilization: float = sizing.DEFAULT_MEMORY_UTILIZATION,
    multi_host: bool = False,
) -> sizing.Resolution:
    return sizing.resolve(KEY, model, generation, topology, machine_type, max_model_len, concurrency, utilization, multi_host)


def one_slice(model: models.ModelArch, topology: str, machine_type: str | None = None) -> sizing.Sizing:
    chosen = resolve(model, topology, machine_type=machine_type).sizing
    assert chosen is not None
    return chosen


def test_llama_8b_on_one_v6e_chip_by_hand() -> None:
    s = one_slice(arch("meta-llama/Llama-3.1-8B"), "1x1")
    assert s.weights_bytes == 16_060_000_000  # 8.03e9 parameters x 2 bytes (bfloat16)
    assert s.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131_072  # K and V x layers x KV heads x head_dim x 2 bytes
    assert s.kv_bytes_per_sequence == 131_072 * 4096 == GIB // 2
    assert s.usable_bytes == int(32 * GIB * 0.95) == 32_641_751_449
    assert s.overhead_bytes == GIB + 803_000_000  # 1 GiB for the one chip + 5% of the weights
    assert s.kv_budget_bytes == 32_641_751_449 - 16_060_000_000 - 1_876_741_824 == 14_705_009_625
    assert s.max_sequences == 27  # 14_705_009_625 // (GIB / 2) = 27.4
    assert s.max_num_seqs == 32  # what was asked: vLLM preempts if all 32 ever reach 4096 tokens at once
    assert s.max_num_batched_tokens == sizing.MAX_NUM_BATCHED_TOKENS == 512
    assert s.need_bytes == 16_060_000_000 + 1_876_741_824 + 32 * GIB // 2  # full concurrency would not fit...
    assert s.need_bytes > s.usable_bytes and s.fits  # ...but the minimum KV budget does


def test_llama_70b_on_v6e_2x4_by_hand() -> None:
    s = one_slice(arch("meta-llama/Llama-3.1-70B"), "2x4")
    assert s.slice == facts.Slice("2x4", 8, 1, "ct6e-standard-8t")
    assert s.weights_bytes == 141_100_000_000
    assert s.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2 == 327_680
    assert s.usable_bytes == int(8 * 32 * GIB * 0.95)
    assert s.overhead_bytes == 8 * GIB + 7_055_000_000
    assert s.max_sequences == (s.usable_bytes - 141_100_000_000 - (8 * GIB + 7_055_000_000)) // (327_680 * 4096) == 77
    assert s.max_num_seqs == 32
    assert s.tensor_parallel_size == 8


def test_kv_heads_are_replicated_beyond_their_count() -> None:
    llama = arch("meta-llama/Llama-3.1-70B")
    assert sizing.kv_bytes_per_token(llama, 8) == 327_680
    assert sizing.kv_bytes_per_token(llama, 16) == 2 * 80 * 16 * 128 * 2  # each of 16 chips holds one of 8 heads


def test_head_dim_is_padded_as_the_tpu_kernels_do() -> None:
    base = models.ModelArch("x/y", 1.0, 10, 8, 8, 64)
    assert sizing.kv_bytes_per_token(base, 1) == 2 * 10 * 8 * 64 * 2
    odd = models.ModelArch("x/y", 1.0, 10, 8, 8, 80)
    assert sizing.kv_bytes_per_token(odd, 1) == 2 * 10 * 8 * 128 * 2


@pytest.mark.parametrize(
    ("hf_id", "topology"),
    [
        ("meta-llama/Llama-3.1-8B", "1x1"),
        ("meta-llama/Llama-3.1-8B-Instruct", "1x1"),
        ("Qwen/Qwen3-8B", "1x1"),
        ("Qwen/Qwen3-32B", "2x2"),
        ("meta-llama/Llama-3.1-70B", "2x4"),
        ("meta-llama/Llama-3.3-70B-Instruct", "2x4"),
    ],
)
def test_public_guidance_with_default_settings(hf_id: str, topology: str) -> None:
    chosen = resolve(arch(hf_id))
    assert (chosen.slice.topology, chosen.slice.vms) == (topology, 1)
    assert chosen.sizing is not None and chosen.sizing.fits


@pytest.mark.parametrize(("hf_id", "topology"), [("meta-llama/Llama-3.1-70B", "2x2"), ("Qwen/Qwen3-32B", "1x1")])
def test_public_guidance_too_small(hf_id: str, topology: str) -> None:
    with pytest.raises(ConfigError, match="too small") as err:
        resolve(arch(hf_id), topology)
    assert err.value.key == KEY


def test_explicit_topology_too_small_prints_the_numbers() -> None:
    with pytest.raises(ConfigError) as err:
        resolve(arch("meta-llama/Llama-3.1-70B"), "2x2")
    message = str(err.value)
    assert "needs 147.0 GiB (weights 131.4 + overhead 10.6 + KV 5.0 for 4 x 4096 tokens)" in message
    assert "has 121.6 GiB usable (4 x 32 GiB x 0.95)" in message
    assert message.endswith("the smallest v6e slice that fits is 2x4")


def test_explicit_topology_whose_chips_do_not_split_the_heads() -> None:
    with pytest.raises(ConfigError, match="cannot shard google/gemma-3-1b-it: tensor parallel 8 does not divide 4 attention heads"):
        resolve(arch("google/gemma-3-1b-it"), "2x4")
    assert sizing.tp_problem(arch("google/gemma-3-1b-it"), 4) is None  # 1 KV head, replicated on 4 chips
    odd = models.ModelArch("x/y", 1.0, 10, 12, 12, 128)
    assert sizing.tp_problem(odd, 8) == "tensor parallel 8 does not divide 12 attention heads"
    six_kv = models.ModelArch("x/y", 1.0, 10, 24, 6, 128)
    assert sizing.tp_problem(six_kv, 4) == "tensor parallel 4 and 6 KV heads: neither divides the other"


def test_a_vision_encoders_heads_must_split_too() -> None:
    vl = arch("Qwen/Qwen3-VL-8B-Instruct")  # 32 text heads, 8 KV heads, a vision encoder of 16
    assert vl.vision_heads == 16 and sizing.tp_problem(vl, 8) is None
    with pytest.raises(ConfigError, match="tensor parallel 32 does not divide the vision encoder's 16 heads"):
        resolve(vl, "4x8", multi_host=True)
    assert sizing.tp_problem(arch("Qwen/Qwen3-8B"), 32) is None  # the same text model alone: KV heads replicated


def test_auto_skips_slices_whose_chips_do_not_split_the_heads() -> None:
    # 186 GiB of weights need 8 chips, and 8 does not divide 12 heads.
    big = models.ModelArch("acme/wide", 100.0, 40, 12, 4, 128)
    with pytest.raises(ConfigError, match="2x4: tensor parallel 8 does not divide 12 attention heads") as err:
        resolve(big)
    assert "no single-host v6e slice fits acme/wide" in str(err.value)
    assert "allowMultiHost" in str(err.value)


def test_auto_with_an_unknown_model_asks_for_topology_or_architecture() -> None:
    with pytest.raises(ConfigError, match=r"set topology .*architecture: or configJson:") as err:
        resolve(None)
    assert err.value.key == KEY


def test_explicit_topology_with_an_unknown_model() -> None:
    chosen = resolve(None, "2x2", concurrency=20)
    assert chosen.sizing is None
    assert chosen.slice == facts.Slice("2x2", 4, 1, "ct6e-standard-4t")
    assert (chosen.max_num_seqs, chosen.max_num_batched_tokens) == (32, 512)


def test_unknown_topology_lists_the_generations_topologies() -> None:
    with pytest.raises(ConfigError, match="auto or a v6e topology: 1x1, 2x2, 2x4, 4x4, 4x8, 8x8, 8x16, 16x16") as err:
        resolve(arch("meta-llama/Llama-3.1-8B"), "2x2x1")
    assert err.value.key == KEY


def test_machine_type_must_form_the_topology() -> None:
    two_vms = resolve(arch("meta-llama/Llama-3.1-70B"), "2x4", machine_type="ct6e-standard-4t")
    assert two_vms.slice == facts.Slice("2x4", 8, 2, "ct6e-standard-4t") and two_vms.slice.multi_host
    with pytest.raises(ConfigError, match="cannot form v6e 2x4; it is built from ct6e-standard-4t, ct6e-standard-8t") as err:
        resolve(None, "2x4", machine_type="ct6e-standard-1t")
    assert err.value.key == "models[0].machineType"
    with pytest.raises(ConfigError, match="v6e machine types: ct6e-standard-1t"):
        resolve(None, "2x4", machine_type="ct5lp-hightpu-4t")


def test_auto_within_one_machine_type() -> None:
    chosen = resolve(arch("meta-llama/Llama-3.1-8B"), machine_type="ct6e-standard-4t")
    assert chosen.slice == facts.Slice("2x2", 4, 1, "ct6e-standard-4t")


def test_max_model_len_beyond_the_model() -> None:
    with pytest.raises(ConfigError, match="handles at most 40960 tokens") as err:
        resolve(arch("Qwen/Qwen3-8B"), max_model_len=65536)
    assert err.value.key == "models[0].maxModelLen"


def test_multi_host_only_when_allowed() -> None:
    llama = arch("meta-llama/Llama-3.1-405B")
    with pytest.raises(ConfigError, match=r"no single-host v6e slice fits .*2x4: needs .* try allowMultiHost: true"):
        resolve(llama)
    chosen = resolve(llama, multi_host=True)
    assert (chosen.slice.topology, chosen.slice.vms) == ("4x8", 8)


def test_longer_sequences_need_a_bigger_slice() -> None:
    llama = arch("meta-llama/Llama-3.1-8B")
    # 32768 tokens take 4 GiB each; one chip has room for 3, under the minimum of 4.
    assert resolve(llama, max_model_len=32768).slice.topology == "2x2"
    # Asking for only 2 sequences lowers the minimum, and one chip does.
    assert resolve(llama, max_model_len=32768, concurrency=2).slice.topology == "1x1"


@pytest.mark.parametrize(("concurrency", "expected"), [(1, 1), (20, 32), (32, 32), (1000, 256)])
def test_max_num_seqs_rounds_concurrency_up_to_the_cap(concurrency: int, expected: int) -> None:
    assert resolve(arch("meta-llama/Llama-3.1-70B"), "2x4", concurrency=concurrency).max_num_seqs == expected


def test_max_num_seqs_cap() -> None:
    assert resolve(arch("meta-llama/Llama-3.2-1B"), "2x4", concurrency=4096).max_num_seqs == 256
    assert sizing.default_max_num_seqs(4096) == sizing.MAX_NUM_SEQS_CAP == 256


@settings(max_examples=60, deadline=None)
@given(
    hf_id=st.sampled_from(sorted(models.CATALOG)),
    generation=st.sampled_from(sorted(facts.GENERATIONS)),
    max_model_len=st.sampled_from([1024, 4096, 8192, 32768]),
    concurrency=st.integers(1, 512),
    utilization=st.floats(0.5, 0.99),
    multi_host=st.booleans(),
)
def test_auto_takes_the_cheapest_slice_that_fits(
    hf_id: str, generation: str, max_model_len: int, concurrency: int, utilization: float, multi_host: bool
) -> None:
    model, gen = models.CATALOG[hf_id], facts.GENERATIONS[generation]
    if model.max_context is not None and max_model_len > model.max_context:
        return
    allowed = [s for s in sizing.candidates(model, gen, max_model_len, concurrency, utilization) if multi_host or not s.slice.multi_host]
    try:
        chosen = resolve(
            model, generation=gen, max_model_len=max_model_len, concurrency=concurrency, utilization=utilization, multi_host=multi_host
        )
    except ConfigError:
        assert not any(s.fits for s in allowed)
        return
    assert chosen.sizing is not None and chosen.sizing.fits
    assert chosen.sizing.min_need_bytes <= chosen.sizing.usable_bytes
    assert all(not s.fits for s in allowed if s.slice.chips < chosen.slice.chips)
    assert 1 <= chosen.max_num_seqs <= sizing.MAX_NUM_SEQS_CAP
    assert chosen.max_num_batched_tokens >= chosen.max_num_seqs


def test_stack_config_sizes_through_the_catalog_architecture_and_config_json() -> None:
    from components.config import ModelConfig, load_stack_config

    base = {"project": "my-project-1", "region": "us-east5", "cluster": {"zones": ["us-east5-b"]}}
    stated = {"paramsBillions": 8, "layers": 32, "attentionHeads": 32, "kvHeads": 8, "headDim": 128}
    mixtral_json = str(Path(__file__).parent / "fixtures" / "model_configs" / "Mixtral-8x7B-v0.1.json")

    def first_model(raw: dict[str, object]) -> ModelConfig:
        return load_stack_config({**base, "models": [{"name": "m", **raw}]}, "dev").models[0]

    llama = first_model({"hfId": "meta-llama/Llama-3.1-70B"})
    assert (llama.slice.topology, llama.max_num_seqs, llama.max_num_batched_tokens) == ("2x4", 32, 512)
    assert first_model({"hfId": "acme/m", "architecture": stated}).slice.topology == "1x1"
    assert first_model({"hfId": "acme/moe", "configJson": mixtral_json}).slice.topology == "2x2"
    with pytest.raises(ConfigError) as err:
        first_model({"hfId": "acme/m", "architecture": {**stated, "kvHeads": 3}})
    assert err.value.key == "models[0].architecture.kvHeads"


# --- Google's published choices ------------------------------------------------------------------
# (model, generation, maxModelLen, Google's topology, source). The recommender must answer with a
# slice no larger (in chips) than Google's, and one whose weights fit.
TPU_RECIPES = "AI-Hypercomputer/tpu-recipes@c8cfe2f6"
GKE_SAMPLES = "GoogleCloudPlatform/kubernetes-engine-samples@2b503651"
TPU_INFERENCE = "vllm-project/tpu-inference@b8692ff0"
# Llama 4 Scout's JetStream-MaxText recipe, deleted from tpu-recipes in 17637930 (May 2026).
TPU_RECIPES_BEFORE_JETSTREAM_REMOVAL = "AI-Hypercomputer/tpu-recipes@eb4eb610"
GOOGLE_CHOICES = [
    ("meta-llama/Llama-3.1-8B-Instruct", "v6e", 2048, "1x1", f"{TPU_RECIPES} inference/trillium/vLLM/Llama3.x (v6e-1)"),
    ("meta-llama/Llama-3.3-70B-Instruct", "v6e", 2048, "2x4", f"{TPU_RECIPES} inference/trillium/vLLM/Llama3.x"),
    ("Qwen/Qwen2.5-32B", "v6e", 4096, "2x2", f"{TPU_RECIPES} inference/trillium/vLLM/Qwen2.5-32B"),
    ("Qwen/Qwen2.5-VL-7B-Instruct", "v6e", 16384, "1x1", f"{TPU_RECIPES} inference/trillium/vLLM/Qwen2.5-VL"),
    ("Qwen/Qwen3-4B", "v6e", 4096, "1x1", f"{TPU_RECIPES} inference/trillium/vLLM/Qwen3"),
    ("Qwen/Qwen3-32B", "v6e", 4096, "2x2", f"{TPU_RECIPES} inference/trillium/vLLM/Qwen3"),
    ("Qwen/Qwen3-32B", "tpu7x", 9216, "1x1x1", f"{TPU_RECIPES} inference/ironwood/vLLM/Qwen3-32B (TP 2, fp8)"),
    ("meta-llama/Llama-3.1-70B", "v6e", 4096, "2x4", f"{GKE_SAMPLES} ai-ml/vllm-tpu/vllm-llama3-70b.yaml"),
    ("google/gemma-4-31B-it", "v6e", 16384, "2x4", f"{TPU_RECIPES} inference/trillium/vLLM/Gemma4 (README, TP 8)"),
    ("google/gemma-4-26B-A4B-it", "v6e", 16384, "2x4", f"{TPU_RECIPES} inference/trillium/vLLM/Gemma4/docker-compose-gemma4-26B-A4B.yml"),
    ("google/gemma-4-31B-it", "v6e", 16384, "2x2", f"{TPU_RECIPES} inference/trillium/vLLM/Gemma4 (README: Min TPUs (Chips) 4x)"),
    ("google/gemma-4-26B-A4B-it", "v6e", 16384, "2x2", f"{TPU_RECIPES} inference/trillium/vLLM/Gemma4 (README: Min TPUs (Chips) 4x)"),
    ("google/gemma-4-31B-it", "tpu7x", 1524, "2x2x1", f"{TPU_RECIPES} inference/ironwood/vLLM/Gemma4/gemma4-server.yaml (fp8)"),
    ("openai/gpt-oss-120b", "tpu7x", 9216, "2x2x1", f"{TPU_RECIPES} inference/ironwood/vLLM/GPT-OSS/README-gcs.md"),
    (
        "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
        "tpu7x",
        10240,
        "2x2x1",
        f"{TPU_RECIPES} inference/ironwood/vLLM/Qwen3-Coder-480B-A35B/README.md (TP 8, fp8 KV cache)",
    ),
    (
        "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8",
        "tpu7x",
        262144,  # no --max-model-len: vLLM takes the model's
        "2x2x1",
        f"{TPU_INFERENCE} examples/offload/gke/benchmarks/single-host/deploy-baseline.yaml (TP 8)",
    ),
    (
        "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "v6e",
        2048,
        "2x4",
        f"{TPU_RECIPES_BEFORE_JETSTREAM_REMOVAL} inference/trillium/JetStream-Maxtext/Llama-4-Scout-17B-16E (TP 8)",
    ),
]
# Not listed: Llama 4 Maverick, which the same removed recipe served on v6e with MaxText's tensor x
# autoregressive parallelism (8 x 8); vLLM's tensor parallelism alone cannot split its 40 heads over
# 16 or more chips.


@pytest.mark.parametrize(("hf_id", "generation", "max_model_len", "google", "source"), GOOGLE_CHOICES)
def test_no_larger_than_googles_choice(hf_id: str, generation: str, max_model_len: int, google: str, source: str) -> None:
    gen = facts.GENERATIONS[generation]
    chosen = resolve(arch(hf_id), generation=gen, max_model_len=max_model_len)
    assert chosen.sizing is not None and chosen.sizing.fits, source
    assert chosen.sizing.weights_bytes + chosen.sizing.overhead_bytes < chosen.sizing.usable_bytes
    google_chips = gen.slices_of(google)[0].chips
    assert chosen.slice.chips <= google_chips, source


def test_issue_models_never_get_a_slice_their_weights_do_not_fit() -> None:
    for hf_id in (
        "Qwen/Qwen3-32B-FP8",
        "google/gemma-7b-it",
        "google/gemma-2b",
        "meta-llama/Meta-Llama-3-70B-Instruct",
        "google/gemma-4-31B-it",
        "google/gemma-4-26B-A4B-it",
        "openai/gpt-oss-120b",
        "Qwen/Qwen3-30B-A3B-Instruct-2507",
        "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        "Qwen/Qwen3-235B-A22B-Instruct-2507",
        "Qwen/Qwen3-Coder-480B-A35B-Instruct",
        "Qwen/Qwen3-Coder-30B-A3B-Instruct",
        "Qwen/Qwen3-VL-8B-Instruct",
        "Qwen/Qwen3-VL-30B-A3B-Instruct",
        "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
        "openai/gpt-oss-20b",
        "microsoft/phi-4",
    ):
        for gen in facts.GENERATIONS.values():
            model = arch(hf_id)
            try:
                chosen = resolve(model, generation=gen, max_model_len=min(4096, model.max_context or 4096), multi_host=True)
            except ConfigError:
                assert all(not s.fits for s in sizing.candidates(model, gen, 4096, 32, 0.95))
                continue
            assert chosen.sizing is not None and chosen.sizing.weights_bytes < chosen.sizing.usable_bytes


# --- Ironwood: tensor parallel counts devices -------------------------------------------------------
TPU7X = facts.GENERATIONS["tpu7x"]


def test_ironwood_one_chip_two_devices() -> None:
    chosen = resolve(arch("Qwen/Qwen3-32B"), generation=TPU7X, max_model_len=9216)
    assert chosen.slice == facts.Slice("1x1x1", 1, 1, "tpu7x-standard-1t")
    assert chosen.sizing is not None and chosen.sizing.tensor_parallel_size == 2
    # 8 KV heads split over 2 devices: nothing replicated
    assert chosen.sizing.kv_bytes_per_token == 2 * 64 * 8 * 128 * 2
    four = resolve(arch("meta-llama/Llama-3.1-70B"), "2x2x1", generation=TPU7X).sizing
    assert four is not None and four.tensor_parallel_size == 8


def test_ironwood_replicates_kv_heads_per_device() -> None:
    gemma = arch("google/gemma-2b")  # 1 KV head: each of the 2 devices of a chip keeps a copy
    one = resolve(gemma, "1x1x1", generation=TPU7X).sizing
    assert one is not None and one.kv_bytes_per_token == 2 * 18 * 2 * 256 * 2


def test_stack_config_tensor_parallel_is_devices() -> None:
    from components.config import load_stack_config

    base = {"project": "my-project-1", "region": "us-central1", "cluster": {"zones": ["us-central1-c"]}}
    raw = {"name": "m", "hfId": "Qwen/Qwen3-32B", "generation": "tpu7x", "kvCacheDtype": "fp8"}
    model = load_stack_config({**base, "models": [raw]}, "dev").models[0]
    assert (model.slice.topology, model.tensor_parallel_size, model.kv_cache_dtype) == ("1x1x1", 2, "fp8")
    with pytest.raises(ConfigError, match=r"must equal the chips of 1x1x1 \(2 devices: 1 chips x 2\)"):
        load_stack_config({**base, "models": [{**raw, "tensorParallelSize": 1}]}, "dev")
    with pytest.raises(ConfigError) as err:
        load_stack_config({**base, "models": [{**raw, "kvCacheDtype": "int4"}]}, "dev")
    assert err.value.key == "models[0].kvCacheDtype"


# --- KV cache dtype and layer kinds ------------------------------------------------------------------
def test_fp8_kv_cache_halves_the_cache() -> None:
    llama = arch("meta-llama/Llama-3.1-8B")
    assert sizing.kv_bytes_per_token(llama, 1, "fp8") * 2 == sizing.kv_bytes_per_token(llama, 1) == 131_072
    # 32768 tokens: bfloat16 needs 2x2 (test_longer_sequences_need_a_bigger_slice), fp8 fits one chip
    assert resolve(llama, max_model_len=32768).slice.topology == "2x2"
    fp8 = sizing.resolve(KEY, llama, V6E, "auto", None, 32768, 32, 0.95, False, kv_cache_dtype="fp8")
    assert fp8.slice.topology == "1x1"


def test_global_layers_cache_their_own_shape() -> None:
    mixed = models.ModelArch("x/y", 1.0, 10, 16, 8, 128, global_layers=2, global_kv_heads=2, global_head_dim=256)
    assert sizing.kv_bytes_per_token(mixed, 1) == 2 * 8 * 8 * 128 * 2 + 2 * 2 * 2 * 256 * 2
    assert sizing.tp_problem(mixed, 4) is None  # 2 global KV heads replicated on 4 devices
    assert sizing.tp_problem(models.ModelArch("x/y", 1.0, 10, 24, 8, 128, global_layers=1, global_kv_heads=3, global_head_dim=256), 8)


# --- hermetic: no network ------------------------------------------------------------------------
def test_sizing_makes_no_network_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import recommend

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("sizing opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.delenv(models.HUB_OFFLINE_ENV, raising=False)  # even with the Hub allowed and a token
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    assert models.lookup("acme/not-in-the-catalog") is None
    for hf_id in ("Qwen/Qwen3-32B-FP8", "google/gemma-7b-it", "acme/unknown"):
        recommend.main(["--model", hf_id, "--generation", "all", "--json"])
    test_stack_config_tensor_parallel_is_devices()
