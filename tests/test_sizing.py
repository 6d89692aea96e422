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


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in models.HUB_TOKEN_ENV:
        monkeypatch.delenv(name, raising=False)


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
    assert s.max_num_batched_tokens == sizing.MAX_NUM_BATCHED_TOKENS
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
    assert (chosen.max_num_seqs, chosen.max_num_batched_tokens) == (32, sizing.MAX_NUM_BATCHED_TOKENS)


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
    assert resolve(arch("meta-llama/Llama-3.2-1B"), "2x4", concurrency=4096).max_num_seqs == sizing.MAX_NUM_SEQS_CAP
    assert sizing.default_max_num_seqs(4096) == sizing.MAX_NUM_SEQS_CAP


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
