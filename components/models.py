"""Architecture facts of open models, as sizing needs them.

Three ways in: the catalog below (numbers from each model's published config.json on the
Hugging Face Hub, each family with its source; parameter counts computed from those configs as
`_derive_params` does, which match the checkpoints' tensor counts but for the norms), a model described in stack
config under `architecture:` (`from_mapping`), or a config.json file (`from_config_json_path`).

Sizing is hermetic: nothing here reaches the network while a program, the policy pack, a plan or
a test runs, so one commit sizes a model the same everywhere. Only `python -m recommend
--from-hub` (`make recommend FROM_HUB=1`) calls `fetch_from_hub`, to print the entry to add or to
write a config.json fact file under tests/fixtures/model_configs/.

Quantized checkpoints: the weight format comes from config.json's quantization_config or, for a
catalog model's quantized sibling, from the model id (`-FP8`, `-Int8`/`-W8A8`, `-AWQ`/`-Int4`/
`-GPTQ-Int4`/`-W4A16`); embeddings, the output head and a vision tower stay in 16 bits (for
Llama 4 everything but the routed experts, as vLLM on TPU quantizes its FP8 checkpoints).

Since issue 15 the catalog also holds models whose Hub config.json could not be read here, with the
numbers from other sources (each fact file's _source): Google's copies of the Hub files in
AI-Hypercomputer/maxtext (Qwen3-235B-A22B-2507, Qwen3-Coder-480B-A35B, gpt-oss-20b, Qwen3-VL 2B/4B/
30B-A3B), the makers' own repositories (Gemma 4 31B and 26B-A4B, the Qwen3 2507 releases of 30B-A3B
and 4B, gpt-oss-120b, the DeepSeek-R1 distills), transformers' Llama 4 classes with maxtext's
configs, and, where nothing first-party is reachable, agreeing copies checked against published
counts (Qwen3-Coder-30B-A3B, Qwen3-VL-8B, Phi-4). Still out, as no source here states their numbers
(they must not be guessed): Qwen3-VL 32B and 235B-A22B, the Gemma 4 E2B/E4B (per-layer embeddings,
shared KV layers and audio encoder not modelled) and the Qwen2.5-Math based distills. `--from-hub`
or `--config-json` (with `--params-b`) sizes any of them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.coerce import real_number, whole_number

if TYPE_CHECKING:  # for the annotations: httpx is a tools requirement, imported where the download runs
    import httpx
from components.errors import ConfigError

# Bytes per weight of each serving dtype.
DTYPE_BYTES: Mapping[str, float] = {
    "bfloat16": 2,
    "float16": 2,
    "float8": 1,
    "int8": 1,
    "int4": 0.5,
    # MXFP4 (gpt-oss): 4-bit values plus one 8-bit scale per 32 of them.
    "mxfp4": 0.53125,
}
# What a slot of the KV cache holds per value: tpu-inference stores bfloat16 unless vLLM's
# --kv-cache-dtype says fp8 (Google's Ironwood recipes use fp8: AI-Hypercomputer/tpu-recipes
# inference/ironwood/vLLM/*).
KV_CACHE_DTYPE_BYTES: Mapping[str, int] = {"auto": 2, "bfloat16": 2, "fp8": 1}
QUANTIZATIONS = ("auto", "bfloat16", "float8", "int8", "int4")
# vLLM's dtype=auto serves float32 checkpoints in 16 bits, so float32 never reaches HBM as such.
DTYPE_ALIASES: Mapping[str, str] = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "float32": "bfloat16",
    "fp32": "bfloat16",
    "float": "bfloat16",
    "fp8": "float8",
    "float8_e4m3fn": "float8",
    "float8_e5m2": "float8",
    "int4": "int4",
}

DTYPE_CHOICES = f"one of {', '.join(DTYPE_BYTES)} (or float32, served as bfloat16)"


def _dtype(value: Any) -> str | None:
    name = DTYPE_ALIASES.get(str(value).lower(), str(value).lower())
    return name if name in DTYPE_BYTES else None


HUB_CONFIG_URL = "https://huggingface.co/{hf_id}/resolve/main/config.json"
HUB_TIMEOUT_SECONDS = 10.0
HUB_TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
HUB_OFFLINE_ENV = "HF_HUB_OFFLINE"

# A quantized sibling of a catalog model, told by the suffix of its id (Qwen/Qwen3-32B-FP8,
# RedHatAI/...-FP8-dynamic, Qwen/Qwen2.5-32B-Instruct-AWQ, ...-GPTQ-Int4, ...-W8A8).
_ID_QUANTIZATION = (
    (re.compile(r"[-_](fp8|fp8[-_]dynamic|fp8[-_]block)$", re.I), "float8"),
    (re.compile(r"[-_](int8|w8a8|w8a16|gptq[-_]int8)$", re.I), "int8"),
    (re.compile(r"[-_](awq|int4|w4a16|gptq[-_]int4|gptq)$", re.I), "int4"),
)


def quantization_from_id(hf_id: str) -> tuple[str, str] | None:
    """(weight dtype, the id without its quantization suffix), or None for an unquantized id."""
    for pattern, dtype in _ID_QUANTIZATION:
        match = pattern.search(hf_id)
        if match:
            return dtype, hf_id[: match.start()]
    return None


@dataclass(frozen=True)
class ModelArch:
    """What sizing needs to know about a model. params_b counts ALL weights (every expert of a
    mixture of experts, the vision tower of a multimodal model): all of them sit in HBM."""

    hf_id: str
    params_b: float
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    dtype: str = "bfloat16"
    max_context: int | None = None
    source: str = "catalog"
    # Weights a quantized checkpoint keeps in 16 bits: the embeddings, the output head, a vision
    # tower. 0 when unknown, which is exact for 16-bit weights.
    unquantized_params_b: float = 0.0
    # Layers whose KV cache has another shape (Gemma 4's full-attention layers: global_head_dim,
    # num_global_key_value_heads); 0 when every layer caches kv_heads x head_dim.
    global_layers: int = 0
    global_kv_heads: int = 0
    global_head_dim: int = 0
    # How the weights are quantized (quant_method, or "model id"), None when they are not.
    quantization: str | None = None
    # Attention heads of a vision encoder, which vLLM splits over the tensor-parallel devices too;
    # 0 for a text-only model.
    vision_heads: int = 0

    @property
    def weight_bytes(self) -> int:
        kept = min(self.unquantized_params_b, self.params_b) if DTYPE_BYTES[self.dtype] < 2 else 0.0
        return round((self.params_b - kept) * 1e9 * DTYPE_BYTES[self.dtype] + kept * 1e9 * 2)

    @property
    def kv_groups(self) -> tuple[tuple[int, int, int], ...]:
        """(layers, KV heads, head_dim) of each kind of attention layer."""
        local = (self.layers - self.global_layers, self.kv_heads, self.head_dim)
        if not self.global_layers:
            return (local,)
        return (local, (self.global_layers, self.global_kv_heads, self.global_head_dim))

    def served_as(self, dtype: str) -> ModelArch:
        """The same model with its weights in another format (recommend --quantization)."""
        if dtype == self.dtype:
            return self
        return dataclasses.replace(self, dtype=dtype, quantization=None if dtype in ("bfloat16", "float16") else "as asked")


def _family(
    ids: tuple[str, ...],
    params_b: float,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    max_context: int,
    unquantized_b: float = 0.0,
    global_attention: tuple[int, int, int] = (0, 0, 0),
    vision_heads: int = 0,
) -> tuple[ModelArch, ...]:
    """Base and instruction-tuned variants share one architecture. unquantized_b: what a quantized
    sibling keeps in 16 bits (embeddings, output head and vision tower; for Llama 4 all but the
    routed experts). global_attention: (layers, KV heads, head_dim) of Gemma 4-style full-attention
    layers. vision_heads: the vision encoder's attention heads."""
    layers_g, kv_g, dim_g = global_attention
    return tuple(
        ModelArch(
            i,
            params_b,
            layers,
            heads,
            kv_heads,
            head_dim,
            "bfloat16",
            max_context,
            unquantized_params_b=unquantized_b,
            global_layers=layers_g,
            global_kv_heads=kv_g,
            global_head_dim=dim_g,
            vision_heads=vision_heads,
        )
        for i in ids
    )


# Columns: params (billions), num_hidden_layers, num_attention_heads, num_key_value_heads,
# head_dim (or hidden_size / num_attention_heads), max_position_embeddings. All are bfloat16
# (torch_dtype). Gemma 3 models above 1B are multimodal: their numbers are the text_config's
# and the parameter count includes the SigLIP vision tower.
_CATALOG = (
    # meta-llama/Llama-3.1-*, 3.2-*, 3.3-* config.json
    *_family(
        (
            "meta-llama/Llama-3.1-8B",
            "meta-llama/Llama-3.1-8B-Instruct",
            "meta-llama/Meta-Llama-3.1-8B",
            "meta-llama/Meta-Llama-3.1-8B-Instruct",
        ),
        8.03,
        32,
        32,
        8,
        128,
        131072,
        1.0507,  # 128256 x 4096, untied
    ),
    *_family(
        (
            "meta-llama/Llama-3.1-70B",
            "meta-llama/Llama-3.1-70B-Instruct",
            "meta-llama/Meta-Llama-3.1-70B",
            "meta-llama/Meta-Llama-3.1-70B-Instruct",
        ),
        70.55,
        80,
        64,
        8,
        128,
        131072,
        2.1013,  # 128256 x 8192, untied
    ),
    *_family(
        (
            "meta-llama/Llama-3.1-405B",
            "meta-llama/Llama-3.1-405B-Instruct",
            "meta-llama/Meta-Llama-3.1-405B",
            "meta-llama/Meta-Llama-3.1-405B-Instruct",
        ),
        405.85,
        126,
        128,
        8,
        128,
        131072,
    ),
    *_family(("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B-Instruct"), 1.236, 16, 32, 8, 64, 131072),
    *_family(("meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.2-3B-Instruct"), 3.213, 28, 24, 8, 128, 131072),
    *_family(("meta-llama/Llama-3.3-70B-Instruct",), 70.55, 80, 64, 8, 128, 131072, 2.1013),
    # meta-llama/Meta-Llama-3-*: as 3.1 but 8192 tokens of context (fact files Meta-Llama-3-8B-Instruct.json,
    # Meta-Llama-3-70B-Instruct.json, read from uploads of the gated originals)
    *_family(("meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B-Instruct"), 8.03, 32, 32, 8, 128, 8192, 1.0507),
    *_family(("meta-llama/Meta-Llama-3-70B", "meta-llama/Meta-Llama-3-70B-Instruct"), 70.55, 80, 64, 8, 128, 8192, 2.1013),
    # google/gemma-3-*: 1B is text only (model_type gemma3_text); the others nest text_config
    *_family(("google/gemma-3-1b-it", "google/gemma-3-1b-pt"), 1.0, 26, 4, 1, 256, 32768),
    *_family(("google/gemma-3-4b-it", "google/gemma-3-4b-pt"), 4.3, 34, 8, 4, 256, 131072, vision_heads=16),
    *_family(("google/gemma-3-12b-it", "google/gemma-3-12b-pt"), 12.19, 48, 16, 8, 256, 131072, vision_heads=16),
    *_family(("google/gemma-3-27b-it", "google/gemma-3-27b-pt"), 27.43, 62, 32, 16, 128, 131072, vision_heads=16),
    # google/gemma-* (Gemma 1, fact files gemma-2b.json, gemma-7b.json): tied embeddings, 256000 tokens
    *_family(("google/gemma-2b", "google/gemma-2b-it", "google/gemma-1.1-2b-it"), 2.506, 18, 8, 1, 256, 8192, 0.5243),
    *_family(("google/gemma-7b", "google/gemma-7b-it", "google/gemma-1.1-7b-it"), 8.538, 28, 16, 16, 256, 8192, 0.7864),
    # google/gemma-2-*
    *_family(("google/gemma-2-9b", "google/gemma-2-9b-it"), 9.24, 42, 16, 8, 256, 8192),
    *_family(("google/gemma-2-27b", "google/gemma-2-27b-it"), 27.23, 46, 32, 16, 128, 8192),
    # Qwen/Qwen3-*: head_dim is stated (128), not hidden_size / heads
    *_family(("Qwen/Qwen3-4B",), 4.02, 36, 32, 8, 128, 40960),
    *_family(("Qwen/Qwen3-8B",), 8.19, 36, 32, 8, 128, 40960),
    *_family(("Qwen/Qwen3-14B",), 14.77, 40, 40, 8, 128, 40960),
    *_family(("Qwen/Qwen3-32B",), 32.76, 64, 64, 8, 128, 40960, 1.5558),
    *_family(("Qwen/Qwen3-30B-A3B",), 30.53, 48, 32, 4, 128, 40960, 0.6223),  # MoE: 128 experts, 8 active
    # Qwen/Qwen2.5-32B (its config.json, fact file Qwen2.5-32B.json) and -Instruct (32768 tokens)
    *_family(("Qwen/Qwen2.5-32B",), 32.76, 64, 40, 8, 128, 131072, 1.5571),
    *_family(("Qwen/Qwen2.5-32B-Instruct",), 32.76, 64, 40, 8, 128, 32768, 1.5571),
    # Qwen/Qwen2.5-VL-7B-Instruct: multimodal; 8.29B counts the 0.68B vision tower (fact file)
    *_family(("Qwen/Qwen2.5-VL-7B-Instruct",), 8.292, 28, 28, 4, 128, 128000, 1.7665, vision_heads=16),
    # Qwen/Qwen3-VL-*: multimodal, each count includes its vision tower and deepstack mergers (fact files)
    *_family(("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-2B-Thinking"), 2.127, 28, 16, 8, 128, 262144, 0.7181, vision_heads=16),
    *_family(("Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-4B-Thinking"), 4.438, 36, 32, 8, 128, 262144, 0.8043, vision_heads=16),
    *_family(("Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-8B-Thinking"), 8.767, 36, 32, 8, 128, 262144, 1.821, vision_heads=16),
    *_family(("Qwen/Qwen3-VL-30B-A3B-Instruct", "Qwen/Qwen3-VL-30B-A3B-Thinking"), 31.07, 48, 32, 4, 128, 262144, 1.161, vision_heads=16),
    # microsoft/phi-4 (fact file: copies of its config.json; Phi3's fused projections count the same)
    *_family(("microsoft/phi-4",), 14.66, 40, 40, 10, 128, 16384, 1.0276),
    # meta-llama/Llama-4-*: every expert and the vision encoder resident (fact files). 16-bit share: all
    # but the routed experts, which vLLM on TPU quantizes in an FP8 checkpoint (Maverick-...-Instruct-FP8
    # by its id). Context: 256K for the base models, 10M / 1M for the Instruct ones (transformers'
    # converter, convert_llama4_weights_to_hf.py max_context_length).
    *_family(("meta-llama/Llama-4-Scout-17B-16E",), 108.64, 48, 40, 8, 128, 262144, 12.0045, vision_heads=16),
    *_family(("meta-llama/Llama-4-Scout-17B-16E-Instruct",), 108.64, 48, 40, 8, 128, 10485760, 12.0045, vision_heads=16),
    *_family(("meta-llama/Llama-4-Maverick-17B-128E",), 401.58, 48, 40, 8, 128, 262144, 15.0362, vision_heads=16),
    *_family(("meta-llama/Llama-4-Maverick-17B-128E-Instruct",), 401.58, 48, 40, 8, 128, 1048576, 15.0362, vision_heads=16),
    # mistralai/*: Mixtral counts all 8 experts (2 active per token)
    *_family(
        ("mistralai/Mistral-7B-v0.1", "mistralai/Mistral-7B-Instruct-v0.1", "mistralai/Mistral-7B-Instruct-v0.2"),
        7.24,
        32,
        32,
        8,
        128,
        32768,
    ),
    *_family(("mistralai/Mistral-7B-v0.3", "mistralai/Mistral-7B-Instruct-v0.3"), 7.25, 32, 32, 8, 128, 32768),
    *_family(("mistralai/Mistral-Small-24B-Base-2501", "mistralai/Mistral-Small-24B-Instruct-2501"), 23.57, 40, 32, 8, 128, 32768),
    *_family(("mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"), 46.7, 32, 32, 8, 128, 32768, 0.2621),
    *_family(("mistralai/Mixtral-8x22B-v0.1", "mistralai/Mixtral-8x22B-Instruct-v0.1"), 140.6, 56, 48, 8, 128, 65536),
    # Since issue 15, from the makers' own sources (each fact file's _source). Qwen/Qwen3-*-2507: the
    # Qwen3 sizes with 262144 tokens of context (QwenLM/Qwen3 README)
    *_family(("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-30B-A3B-Thinking-2507"), 30.53, 48, 32, 4, 128, 262144, 0.6223),
    *_family(("Qwen/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B-Thinking-2507"), 4.02, 36, 32, 8, 128, 262144, 0.389),
    # Qwen/Qwen3-235B-A22B-*-2507 and Qwen/Qwen3-Coder-480B-A35B-Instruct: Google's copies of their
    # config.json in AI-Hypercomputer/maxtext (fact files); every expert is resident
    *_family(("Qwen/Qwen3-235B-A22B-Instruct-2507", "Qwen/Qwen3-235B-A22B-Thinking-2507"), 235.09, 94, 64, 4, 128, 262144, 1.2447),
    # Qwen/Qwen3-235B-A22B, the first release: the same shapes (maxtext configs/models/qwen3-235b-a22b.yml)
    # with Qwen3's 40960 positions (QwenLM/Qwen3 docs/source/deployment/vllm.md)
    *_family(("Qwen/Qwen3-235B-A22B",), 235.09, 94, 64, 4, 128, 40960, 1.2447),
    *_family(("Qwen/Qwen3-Coder-480B-A35B-Instruct",), 480.15, 62, 96, 8, 128, 262144, 1.867),
    # Qwen/Qwen3-Coder-30B-A3B-Instruct: the Qwen3-30B-A3B shapes with 262144 tokens (fact file)
    *_family(("Qwen/Qwen3-Coder-30B-A3B-Instruct",), 30.53, 48, 32, 4, 128, 262144, 0.6223),
    # deepseek-ai/DeepSeek-R1-Distill-*: the architecture of the base each is fine-tuned from
    # (deepseek-ai/DeepSeek-R1 README): Llama-3.1-8B, Qwen2.5-32B, Llama-3.3-70B-Instruct
    *_family(("deepseek-ai/DeepSeek-R1-Distill-Llama-8B",), 8.03, 32, 32, 8, 128, 131072, 1.0507),
    *_family(("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",), 32.76, 64, 40, 8, 128, 131072, 1.5571),
    *_family(("deepseek-ai/DeepSeek-R1-Distill-Llama-70B",), 70.55, 80, 64, 8, 128, 131072, 2.1013),
    # google/gemma-4-*: shapes from google-deepmind/gemma gm/nn/gemma4 (5 sliding-window layers of
    # 256-wide heads, then 1 full-attention layer of 512-wide heads whose K is also V); the count
    # includes the 0.58B vision encoder, which a quantized checkpoint keeps in 16 bits with the
    # tied embeddings. 26B-A4B: 128 experts (8 active) beside a dense MLP, all resident.
    *_family(("google/gemma-4-31B-it", "google/gemma-4-31B"), 31.27, 60, 32, 16, 256, 262144, 1.9849, (10, 4, 512), vision_heads=16),
    *_family(("google/gemma-4-26B-A4B-it", "google/gemma-4-26B-A4B"), 25.81, 30, 16, 8, 256, 262144, 1.3109, (5, 2, 512), vision_heads=16),
)
# openai/gpt-oss-120b (openai/gpt-oss ModelConfig): 128 experts, 4 active, all resident; the experts
# are MXFP4, attention, router, embeddings and output head (2.13B) bfloat16: 116.83B is the model card's total.
_CATALOG = (
    *_CATALOG,
    ModelArch("openai/gpt-oss-120b", 116.83, 36, 64, 8, 64, "mxfp4", 131072, unquantized_params_b=2.1271, quantization="mxfp4"),
    # openai/gpt-oss-20b: 24 layers of 32 experts (maxtext's copy of its config.json), MXFP4 alike
    ModelArch("openai/gpt-oss-20b", 20.91, 24, 64, 8, 64, "mxfp4", 131072, unquantized_params_b=1.7975, quantization="mxfp4"),
)
CATALOG: Mapping[str, ModelArch] = {m.hf_id.lower(): m for m in _CATALOG}


def lookup(hf_id: str) -> ModelArch | None:
    """The catalog's entry (case-insensitive); else, for an id that names a catalog model plus a
    quantization suffix (Qwen/Qwen3-32B-FP8), that model with its weights in the stated format.
    Never the network: sizing is hermetic."""
    known = CATALOG.get(hf_id.lower())
    if known is not None:
        return known
    found = quantization_from_id(hf_id)
    if found is None:
        return None
    dtype, base_id = found
    base = CATALOG.get(base_id.lower()) or next(
        (m for m in CATALOG.values() if m.hf_id.split("/")[-1].lower() == base_id.split("/")[-1].lower()), None
    )
    if base is None or not base.unquantized_params_b:
        return None
    return dataclasses.replace(base, hf_id=hf_id, dtype=dtype, quantization="model id", source=f"catalog ({base.hf_id}, {dtype} by its id)")


def hub_token(environ: Mapping[str, str] | None = None) -> str | None:
    """HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), else the token file huggingface_hub writes
    (HF_TOKEN_PATH, or $HF_HOME/token, ~/.cache/huggingface/token)."""
    env = os.environ if environ is None else environ
    token = next((env[name].strip() for name in HUB_TOKEN_ENV if env.get(name, "").strip()), None)
    if token:
        return token
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    path = env.get("HF_TOKEN_PATH") or os.path.join(home, "token")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def hub_offline(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(HUB_OFFLINE_ENV, "").lower() in ("1", "true", "yes", "on")


def download_config_json(hf_id: str, token: str | None, transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """config.json from the Hub, for `recommend --from-hub` only: huggingface_hub's download when
    that package is installed, else one HTTPS GET. Raises ValueError with the reason."""
    if hub_offline():
        raise ValueError(f"{HUB_OFFLINE_ENV} is set: the Hub is off limits")
    if transport is None:
        try:
            from huggingface_hub import hf_hub_download  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            pass
        else:
            try:
                with open(hf_hub_download(hf_id, "config.json", token=token), encoding="utf-8") as handle:
                    loaded = json.load(handle)
            except Exception as err:  # huggingface_hub's errors vary by version
                raise ValueError(f"huggingface_hub could not fetch {hf_id}/config.json: {err}") from None
            if not isinstance(loaded, dict):
                raise ValueError("config.json must hold a JSON object")
            return loaded
    try:  # requirements-tools.txt: only `recommend --from-hub` gets here, never `pulumi up`
        import httpx
    except ImportError:
        raise ValueError("httpx is not installed: the Hub download runs in the tools' environment (make install)") from None

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(timeout=HUB_TIMEOUT_SECONDS, transport=transport, follow_redirects=True) as client:
            response = client.get(HUB_CONFIG_URL.format(hf_id=hf_id), headers=headers)
            response.raise_for_status()
            data = response.json()
    except httpx.HTTPStatusError as err:
        raise ValueError(f"the Hub answered {err.response.status_code} for {hf_id}/config.json (gated, private or misspelt?)") from None
    except (httpx.HTTPError, ValueError) as err:
        raise ValueError(f"could not read {hf_id}/config.json from the Hub: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("config.json must hold a JSON object")
    return data


def fetch_from_hub(hf_id: str, token: str, transport: httpx.BaseTransport | None = None) -> ModelArch | None:
    """The model's facts from its config.json on the Hub, or None on any failure."""
    try:
        return parse_config_json("hub", hf_id, download_config_json(hf_id, token, transport), origin=hf_id, source="hub")
    except (ValueError, ConfigError):
        return None


# --- stack config: architecture: ---------------------------------------------------------------
ARCHITECTURE_FIELDS = ("paramsBillions", "layers", "attentionHeads", "kvHeads", "headDim", "dtype", "maxContext")


def _whole(key: str, raw: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = raw.get(name)
    number = whole_number(value)
    if number is None or not low <= number <= high:
        raise ConfigError(f"{key}.{name}", value, f"{'is required: ' if value is None else ''}a whole number from {low} to {high}")
    return number


def from_mapping(key: str, hf_id: str, raw: Mapping[str, Any]) -> ModelArch:
    """A model the catalog lacks, stated in stack config; numbers as in its config.json."""
    if not isinstance(raw, Mapping):
        raise ConfigError(key, raw, f"a mapping of {', '.join(ARCHITECTURE_FIELDS)}")
    unknown = sorted(set(raw) - set(ARCHITECTURE_FIELDS))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", raw[unknown[0]], f"unknown field; allowed: {', '.join(ARCHITECTURE_FIELDS)}")
    params = raw.get("paramsBillions")
    params_b = real_number(params)
    if params_b is None or not 0.01 <= params_b <= 100_000:
        raise ConfigError(
            f"{key}.paramsBillions",
            params,
            f"{'is required: ' if params is None else ''}the total parameter count in billions (all experts), 0.01 to 100000",
        )
    heads = _whole(key, raw, "attentionHeads", 1, 1024)
    kv_heads = _whole(key, raw, "kvHeads", 1, heads)
    if heads % kv_heads:
        raise ConfigError(f"{key}.kvHeads", kv_heads, f"must divide attentionHeads ({heads})")
    dtype = _dtype(raw.get("dtype", "bfloat16"))
    if dtype is None:
        raise ConfigError(f"{key}.dtype", raw.get("dtype"), DTYPE_CHOICES)
    return ModelArch(
        hf_id=hf_id,
        params_b=params_b,
        layers=_whole(key, raw, "layers", 1, 1000),
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=_whole(key, raw, "headDim", 1, 1024),
        dtype=dtype,
        max_context=None if raw.get("maxContext") is None else _whole(key, raw, "maxContext", 128, 100_000_000),
        source="architecture",
    )


# --- config.json ---------------------------------------------------------------------------------
# Fields transformers fills in from the config class when config.json leaves them out: Gemma 3
# multimodal configs state only hidden_size, intermediate_size and layers in text_config and rely
# on Gemma3TextConfig for the rest.
MODEL_TYPE_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "gemma3_text": {
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
    },
}
# Decoders whose weights are exactly: embeddings (tied or not), then per layer q/k/v/o
# projections and a gated MLP (3 matrices) or a set of such experts. Norms and biases are left
# out: under 0.1% of any of these models.
DERIVABLE_MODEL_TYPES = (
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_5_vl",
    "qwen3",
    "qwen3_moe",
    "gemma",
    "gemma2",
    "gemma3_text",
    "gpt_oss",
    "qwen3_vl_text",
    "qwen3_vl_moe_text",
    "llama4_text",
    "phi3",
)
# Mixtures of experts whose every sparse layer also runs shared experts as wide as the routed ones
# (transformers Llama4TextMoe.shared_expert), which config.json does not state.
SHARED_EXPERTS: Mapping[str, int] = {"llama4_text": 1}
# Attention kinds whose KV cache is 2 x kv_heads x head_dim per token and layer (sliding-window and
# Llama 4's chunked layers are counted at full length: an upper bound, since window and chunk cap
# their cache).
STANDARD_ATTENTION = ("full_attention", "sliding_attention", "chunked_attention")


def from_config_json_path(key: str, hf_id: str, path: str, params_b: float | None = None) -> ModelArch:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise ConfigError(key, path, f"not valid JSON ({err.msg} at line {err.lineno})") from None
    except (OSError, ValueError) as err:  # ValueError: a path with a NUL byte
        reason = err.strerror if isinstance(err, OSError) else str(err)
        raise ConfigError(key, path, f"cannot read it: {reason} (a relative path starts where pulumi or the command runs)") from None
    return parse_config_json(key, hf_id, data, origin=path, params_b=params_b)


@dataclass(frozen=True)
class _Fields:
    """One section of a config.json, naming its fields in errors the way the file does."""

    key: str
    origin: str
    prefix: str
    values: Mapping[str, Any]

    def count(self, name: str, purpose: str) -> int:
        value = self.values.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            found = "missing" if value is None else repr(value)
            raise ConfigError(self.key, self.origin, f"{self.prefix}{name} is {found}; a positive whole number is needed {purpose}")
        return value

    def fail(self, problem: str) -> ConfigError:
        return ConfigError(self.key, self.origin, f"{problem}; describe the model under `architecture:` instead")


def parse_config_json(
    key: str, hf_id: str, data: Any, *, origin: str, params_b: float | None = None, source: str = "config.json"
) -> ModelArch:
    """A Hugging Face config.json, flat or with a nested text_config. The parameter count is
    derived for DERIVABLE_MODEL_TYPES (plus the VISION_TOWERS); any other model needs
    params_b from the caller, and the error says so."""
    if not isinstance(data, Mapping):
        raise ConfigError(key, origin, "config.json must hold a JSON object")
    nested = isinstance(data.get("text_config"), Mapping)
    text: Mapping[str, Any] = data["text_config"] if nested else data
    model_type = str(text.get("model_type") or data.get("model_type") or "")
    # The output head belongs to the ForConditionalGeneration model, so transformers 5 ties it by the
    # top-level flag (Qwen3-VL-30B-A3B: false there, true in its text_config).
    head = {"tie_word_embeddings": data["tie_word_embeddings"]} if nested and "tie_word_embeddings" in data else {}
    fields = _Fields(
        key,
        origin,
        "text_config." if nested else "",
        {**MODEL_TYPE_DEFAULTS.get(model_type, {}), **{k: v for k, v in text.items() if v is not None}, **head},
    )
    if "kv_lora_rank" in fields.values:
        raise fields.fail("latent attention (kv_lora_rank) caches KV differently")
    odd = sorted(set(fields.values.get("layer_types") or ()) - set(STANDARD_ATTENTION))
    if odd:
        raise fields.fail(f"{fields.prefix}layer_types has {odd[0]}, whose cache sizing does not model")
    quantization = fields.values.get("quantization_config") or data.get("quantization_config")
    quantized = None if quantization is None else weight_dtype_of(fields, quantization)

    for_kv = "for the KV cache"
    heads = fields.count("num_attention_heads", for_kv)
    kv_heads = fields.count("num_key_value_heads", for_kv) if "num_key_value_heads" in fields.values else heads
    head_dim = fields.count("head_dim", for_kv) if "head_dim" in fields.values else fields.count("hidden_size", for_kv) // heads
    layers = fields.count("num_hidden_layers", for_kv)
    if heads % kv_heads:
        raise fields.fail(f"{fields.prefix}num_key_value_heads ({kv_heads}) does not divide num_attention_heads ({heads})")
    global_layers, global_kv_heads, global_head_dim = _global_attention(fields, layers, kv_heads, head_dim)
    embeddings = _embedding_params(fields) + _unconverted_params(fields, quantization, layers, heads, kv_heads, head_dim)
    vision = 0
    if params_b is None:
        if model_type not in DERIVABLE_MODEL_TYPES:
            raise ConfigError(
                key,
                origin,
                f"the parameter count of model_type {model_type or '(none)'} is not derivable from config.json "
                f"(derivable: {', '.join(DERIVABLE_MODEL_TYPES)}); state it: paramsBillions under `architecture:`, or recommend --params-b",
            )
        total = _derive_params(fields, layers, heads, kv_heads, head_dim)
        vision_config = data.get("vision_config")
        if nested or isinstance(vision_config, Mapping):
            text_hidden = fields.count("hidden_size", "to count parameters")
            tower = VISION_TOWERS.get(str(data.get("model_type")))
            if tower is not None and isinstance(vision_config, Mapping):
                vision = tower(_Fields(key, origin, "vision_config.", vision_config), text_hidden)
            else:
                raise ConfigError(
                    key,
                    origin,
                    f"the encoders of multimodal model_type {data.get('model_type')} are not derivable; state the total "
                    "parameter count: paramsBillions under `architecture:`, or recommend --params-b",
                )
        params_b = (total + vision) / 1e9
    stated = fields.values.get("torch_dtype") or fields.values.get("dtype") or data.get("torch_dtype") or data.get("dtype")
    dtype = quantized or _dtype(stated or "bfloat16")
    if dtype is None:
        raise ConfigError(key, origin, f"torch_dtype is {stated!r}; {DTYPE_CHOICES}")
    max_context = fields.values.get("max_position_embeddings")
    method = quantization.get("quant_method") if isinstance(quantization, Mapping) else None
    return ModelArch(
        hf_id=hf_id,
        params_b=params_b,
        layers=layers,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        dtype=dtype,
        max_context=max_context if isinstance(max_context, int) and max_context > 0 else None,
        source=source,
        unquantized_params_b=(embeddings + vision) / 1e9,
        global_layers=global_layers,
        global_kv_heads=global_kv_heads,
        global_head_dim=global_head_dim,
        quantization=None if quantized is None else str(method or "quantization_config"),
        vision_heads=_vision_heads(data),
    )


def _vision_heads(data: Mapping[str, Any]) -> int:
    """The vision encoder's attention heads (num_heads, or num_attention_heads), 0 without one."""
    vision = data.get("vision_config")
    if not isinstance(vision, Mapping):
        return 0
    defaults = QWEN25_VISION_DEFAULTS if data.get("model_type") == "qwen2_5_vl" else {}
    heads = vision.get("num_heads") or vision.get("num_attention_heads") or defaults.get("num_heads")
    return heads if isinstance(heads, int) and not isinstance(heads, bool) and heads > 0 else 0


def weight_dtype_of(fields: _Fields, quantization: Any) -> str:
    """The stored width of the weights a quantization_config describes: fp8 / fbgemm_fp8 (8-bit
    floats), compressed-tensors (its config_groups' weights: num_bits and type), awq / gptq
    (bits), mxfp4 (gpt-oss). Anything else is refused rather than guessed."""
    if not isinstance(quantization, Mapping):
        raise fields.fail(f"quantization_config is {quantization!r}, not a mapping")
    method = str(quantization.get("quant_method") or "").lower()
    if method in ("fp8", "fbgemm_fp8"):
        return "float8"
    if method == "mxfp4":
        return "mxfp4"
    if method in ("awq", "gptq", "awq_marlin", "gptq_marlin"):
        bits = quantization.get("bits") or quantization.get("w_bit")
        if bits in (4, 8):
            return "int4" if bits == 4 else "int8"
        raise fields.fail(f"quantization_config ({method}) has bits {bits!r}; 4 or 8 are modelled")
    if method == "compressed-tensors":
        groups = quantization.get("config_groups")
        found: set[tuple[Any, str]] = set()
        for group in groups.values() if isinstance(groups, Mapping) else ():
            weights = group.get("weights") if isinstance(group, Mapping) else None
            if isinstance(weights, Mapping):
                found.add((weights.get("num_bits"), str(weights.get("type", "int"))))
        widths: dict[tuple[Any, str], str] = {(8, "float"): "float8", (8, "int"): "int8", (4, "int"): "int4"}
        if len(found) == 1 and next(iter(found)) in widths:
            return widths[next(iter(found))]
        raise fields.fail(f"compressed-tensors weights {sorted(found, key=str)} are not one of 8-bit float, 8-bit or 4-bit int")
    raise fields.fail(f"quantized checkpoint ({method or 'unknown method'}) whose weight width is not modelled")


def _embedding_params(fields: _Fields) -> int:
    """Input embeddings and output head, which quantized checkpoints keep in 16 bits."""
    hidden, vocab = fields.values.get("hidden_size"), fields.values.get("vocab_size")
    if not isinstance(hidden, int) or not isinstance(vocab, int):
        return 0
    return vocab * hidden * (1 if fields.values.get("tie_word_embeddings", True) else 2)


def _unconverted_params(fields: _Fields, quantization: Any, layers: int, heads: int, kv_heads: int, head_dim: int) -> int:
    """Attention and router weights a quantized checkpoint leaves in 16 bits when its
    quantization_config's modules_to_not_convert names them (gpt-oss quantizes only its experts)."""
    names = quantization.get("modules_to_not_convert") if isinstance(quantization, Mapping) else None
    hidden = fields.values.get("hidden_size")
    if not isinstance(names, list) or not isinstance(hidden, int):
        return 0
    kept = 0
    if any("self_attn" in str(name) for name in names):
        kept += layers * (2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim)
    experts = fields.values.get("num_local_experts") or fields.values.get("num_experts")
    if isinstance(experts, int) and any("router" in str(name) for name in names):
        kept += layers * hidden * experts
    return kept


def _global_attention(fields: _Fields, layers: int, kv_heads: int, head_dim: int) -> tuple[int, int, int]:
    """Gemma 4's full-attention layers cache global_head_dim-wide heads, and with attention_k_eq_v
    only num_global_key_value_heads of them (tpu-inference utils.get_layer_kv_params)."""
    wide = fields.values.get("global_head_dim")
    if wide is None:
        return 0, 0, 0
    kinds = fields.values.get("layer_types")
    if not isinstance(kinds, list) or len(kinds) != layers:
        raise fields.fail(f"{fields.prefix}global_head_dim without a layer_types list of {layers} entries")
    full = sum(1 for kind in kinds if kind == "full_attention")
    heads = kv_heads
    if fields.values.get("attention_k_eq_v"):
        heads = fields.values.get("num_global_key_value_heads") or kv_heads
    if not isinstance(heads, int) or not isinstance(wide, int) or heads < 1 or wide < 1:
        raise fields.fail(f"{fields.prefix}global_head_dim / num_global_key_value_heads are not positive whole numbers")
    return (full, heads, wide) if full else (0, 0, 0)


def _derive_params(fields: _Fields, layers: int, heads: int, kv_heads: int, head_dim: int) -> int:
    """The weight count of a DERIVABLE_MODEL_TYPES decoder."""
    purpose = "to count parameters"
    hidden, vocab = fields.count("hidden_size", purpose), fields.count("vocab_size", purpose)
    # PretrainedConfig's default is tied, which is what Gemma configs rely on.
    embeddings = vocab * hidden * (1 if fields.values.get("tie_word_embeddings", True) else 2)
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    experts = fields.values.get("num_local_experts") or fields.values.get("num_experts")
    if not experts:
        return embeddings + layers * (attention + 3 * hidden * fields.count("intermediate_size", purpose))
    if fields.values.get("decoder_sparse_step", 1) != 1:
        raise fields.fail(f"{fields.prefix}decoder_sparse_step is not 1, which the parameter count does not model")
    expert_size = fields.values.get("moe_intermediate_size") or fields.count("intermediate_size", purpose)
    shared = SHARED_EXPERTS.get(str(fields.values.get("model_type")), 0)
    moe_mlp = (experts + shared) * 3 * hidden * expert_size + hidden * experts  # the experts and their router
    # Llama 4 lists its sparse layers (moe_layers) or states their spacing (interleave_moe_layer_step:
    # every second on Maverick); Qwen lists its dense ones (mlp_only_layers).
    listed, step = fields.values.get("moe_layers"), fields.values.get("interleave_moe_layer_step")
    sparse = len(listed) if isinstance(listed, list) else layers // (step if isinstance(step, int) and step > 1 else 1)
    dense_layers = layers - sparse + len(fields.values.get("mlp_only_layers") or ())
    dense_width = fields.values.get("intermediate_size_mlp") or fields.count("intermediate_size", purpose)
    dense_mlp = 3 * hidden * dense_width if dense_layers else 0
    return embeddings + layers * attention + dense_layers * dense_mlp + (layers - dense_layers) * moe_mlp


# transformers' Qwen2_5_VLVisionConfig defaults, for the fields Qwen2.5-VL configs leave out.
QWEN25_VISION_DEFAULTS: Mapping[str, int] = {
    "depth": 32,
    "num_heads": 16,
    "intermediate_size": 3420,
    "in_chans": 3,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
}


def _qwen25_vision_params(vision: _Fields, text_hidden: int) -> int:
    """Qwen2.5-VL's vision tower: a 3D patch embedding, `depth` blocks (qkv and output projections
    with biases, a gated MLP with biases, two RMSNorms) and the merger MLP into the text model."""
    values = {**QWEN25_VISION_DEFAULTS, **vision.values}
    hidden = vision.count("hidden_size", "to count the vision tower's parameters")
    inner, depth = values["intermediate_size"], values["depth"]
    patch = values.get("spatial_patch_size") or values["patch_size"]
    block = 4 * hidden * hidden + 4 * hidden + 3 * hidden * inner + 2 * inner + hidden + 2 * hidden
    embed = values["in_chans"] * values["temporal_patch_size"] * patch * patch * hidden
    merged = hidden * values["spatial_merge_size"] ** 2
    merger = hidden + merged * merged + merged + merged * text_hidden + text_hidden
    return depth * block + embed + merger


def _siglip_params(vision: _Fields, text_hidden: int) -> int:
    """Gemma 3's SigLIP vision tower and its linear projector into the text model."""
    purpose = "to count the vision tower's parameters"
    hidden, inner = vision.count("hidden_size", purpose), vision.count("intermediate_size", purpose)
    patch, image = vision.count("patch_size", purpose), vision.count("image_size", purpose)
    channels = vision.values.get("num_channels", 3)
    per_layer = 4 * hidden * hidden + 4 * hidden + 2 * hidden * inner + hidden + inner + 4 * hidden  # attention, MLP, 2 norms
    embeddings = channels * patch * patch * hidden + hidden + (image // patch) ** 2 * hidden
    projector = hidden * text_hidden + hidden
    return vision.count("num_hidden_layers", purpose) * per_layer + embeddings + 2 * hidden + projector


def _qwen3_vision_params(vision: _Fields, text_hidden: int) -> int:
    """Qwen3-VL's vision tower (transformers Qwen3VLVisionModel): a 3D patch embedding with bias, a
    learned position table, `depth` blocks (two LayerNorms, qkv and output projections, a plain
    two-layer MLP, all with biases), the merger into the text model and one more merger per
    deepstack_visual_indexes entry, which normalises after the 2x2 patches are merged."""
    purpose = "to count the vision tower's parameters"
    hidden, inner = vision.count("hidden_size", purpose), vision.count("intermediate_size", purpose)
    patch, depth = vision.count("patch_size", purpose), vision.count("depth", purpose)
    values = vision.values
    block = 4 * hidden * hidden + 4 * hidden + 2 * hidden * inner + inner + hidden + 2 * 2 * hidden
    embed = values.get("in_channels", 3) * values.get("temporal_patch_size", 2) * patch * patch * hidden + hidden
    positions = values.get("num_position_embeddings", 0) * hidden
    merged = hidden * values.get("spatial_merge_size", 2) ** 2
    out = values.get("out_hidden_size") or text_hidden
    merger_linears = merged * merged + merged + merged * out + out
    deepstack = len(values.get("deepstack_visual_indexes") or ())
    mergers = (2 * hidden + merger_linears) + deepstack * (2 * merged + merger_linears)
    return depth * block + embed + positions + mergers


def _llama4_vision_params(vision: _Fields, text_hidden: int) -> int:
    """Llama 4's vision encoder (transformers Llama4VisionModel): an unbiased patch projection, a
    class token and position table, LayerNorms before and after, `num_hidden_layers` blocks of
    biased attention and MLP, the pixel-shuffle adapter's two unbiased linears (intermediate_size ->
    projector_input_dim -> projector_output_dim) and the unbiased projector into the text model."""
    purpose = "to count the vision tower's parameters"
    hidden, inner = vision.count("hidden_size", purpose), vision.count("intermediate_size", purpose)
    patch, image = vision.count("patch_size", purpose), vision.count("image_size", purpose)
    projector_in = vision.count("projector_input_dim", purpose)
    projector_out = vision.count("projector_output_dim", purpose)
    layer = 4 * (hidden * hidden + hidden) + 2 * hidden * inner + inner + hidden + 2 * 2 * hidden
    patches = (image // patch) ** 2 + 1  # and the class token
    embeddings = vision.values.get("num_channels", 3) * patch * patch * hidden + hidden + patches * hidden + 2 * 2 * hidden
    adapter = inner * projector_in + projector_out * projector_out
    projector = vision.count("vision_output_dim", purpose) * text_hidden
    return vision.count("num_hidden_layers", purpose) * layer + embeddings + adapter + projector


# Vision towers sizing can count, by the config's top-level model_type; the text side is derived
# from text_config as for a text-only model.
VISION_TOWERS = {
    "gemma3": _siglip_params,
    "qwen2_5_vl": _qwen25_vision_params,
    "qwen3_vl": _qwen3_vision_params,
    "qwen3_vl_moe": _qwen3_vision_params,
    "llama4": _llama4_vision_params,
}
