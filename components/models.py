"""Architecture facts of open models, as sizing needs them.

Three ways in: the catalog below (numbers from each model's published config.json on the
Hugging Face Hub; parameter counts computed from those configs as `_derive_params` does, which
match the model cards' rounded figures), a model described in stack config under
`architecture:` (`from_mapping`), or a config.json file (`from_config_json_path`). `lookup`
also reads config.json from the Hub when a Hugging Face token is in the environment, so that a
preview can size a model the catalog lacks; without a token or network it answers None.

Gemma 4 is left out on purpose: its published configs were not at hand to check, and sizing
numbers must not be guessed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from components.coerce import real_number, whole_number
from components.errors import ConfigError

# Bytes per weight of each serving dtype.
DTYPE_BYTES: Mapping[str, float] = {
    "bfloat16": 2,
    "float16": 2,
    "float8": 1,
    "int8": 1,
    "int4": 0.5,
}
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
}

DTYPE_CHOICES = f"one of {', '.join(DTYPE_BYTES)} (or float32, served as bfloat16)"


def _dtype(value: Any) -> str | None:
    name = DTYPE_ALIASES.get(str(value).lower(), str(value).lower())
    return name if name in DTYPE_BYTES else None


HUB_CONFIG_URL = "https://huggingface.co/{hf_id}/resolve/main/config.json"
# A preview waits on this; a slow or absent network must cost seconds, not minutes.
HUB_TIMEOUT_SECONDS = 5.0
HUB_TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
HUB_OFFLINE_ENV = "HF_HUB_OFFLINE"


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

    @property
    def weight_bytes(self) -> int:
        return round(self.params_b * 1e9 * DTYPE_BYTES[self.dtype])


def _family(
    ids: tuple[str, ...], params_b: float, layers: int, heads: int, kv_heads: int, head_dim: int, max_context: int
) -> tuple[ModelArch, ...]:
    """Base and instruction-tuned variants share one architecture."""
    return tuple(ModelArch(i, params_b, layers, heads, kv_heads, head_dim, "bfloat16", max_context) for i in ids)


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
    *_family(("meta-llama/Llama-3.3-70B-Instruct",), 70.55, 80, 64, 8, 128, 131072),
    # google/gemma-3-*: 1B is text only (model_type gemma3_text); the others nest text_config
    *_family(("google/gemma-3-1b-it", "google/gemma-3-1b-pt"), 1.0, 26, 4, 1, 256, 32768),
    *_family(("google/gemma-3-4b-it", "google/gemma-3-4b-pt"), 4.3, 34, 8, 4, 256, 131072),
    *_family(("google/gemma-3-12b-it", "google/gemma-3-12b-pt"), 12.19, 48, 16, 8, 256, 131072),
    *_family(("google/gemma-3-27b-it", "google/gemma-3-27b-pt"), 27.43, 62, 32, 16, 128, 131072),
    # google/gemma-2-*
    *_family(("google/gemma-2-9b", "google/gemma-2-9b-it"), 9.24, 42, 16, 8, 256, 8192),
    *_family(("google/gemma-2-27b", "google/gemma-2-27b-it"), 27.23, 46, 32, 16, 128, 8192),
    # Qwen/Qwen3-*: head_dim is stated (128), not hidden_size / heads
    *_family(("Qwen/Qwen3-4B",), 4.02, 36, 32, 8, 128, 40960),
    *_family(("Qwen/Qwen3-8B",), 8.19, 36, 32, 8, 128, 40960),
    *_family(("Qwen/Qwen3-14B",), 14.77, 40, 40, 8, 128, 40960),
    *_family(("Qwen/Qwen3-32B",), 32.76, 64, 64, 8, 128, 40960),
    *_family(("Qwen/Qwen3-30B-A3B",), 30.53, 48, 32, 4, 128, 40960),  # MoE: 128 experts, 8 active
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
    *_family(("mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"), 46.7, 32, 32, 8, 128, 32768),
    *_family(("mistralai/Mixtral-8x22B-v0.1", "mistralai/Mixtral-8x22B-Instruct-v0.1"), 140.6, 56, 48, 8, 128, 65536),
)
CATALOG: Mapping[str, ModelArch] = {m.hf_id.lower(): m for m in _CATALOG}


def lookup(hf_id: str) -> ModelArch | None:
    """The catalog's entry (case-insensitive), else the Hub's config.json when a token is set."""
    known = CATALOG.get(hf_id.lower())
    if known is not None:
        return known
    token = next((os.environ[name] for name in HUB_TOKEN_ENV if os.environ.get(name)), None)
    offline = os.environ.get(HUB_OFFLINE_ENV, "").lower() in ("1", "true", "yes", "on")
    if token is None or offline:
        return None
    return fetch_from_hub(hf_id, token)


def fetch_from_hub(hf_id: str, token: str, transport: httpx.BaseTransport | None = None) -> ModelArch | None:
    """The model's config.json from the Hub, or None on any failure: sizing then treats the model
    as unknown and asks for `topology` or `architecture`, which is the safe outcome."""
    try:
        with httpx.Client(timeout=HUB_TIMEOUT_SECONDS, transport=transport, follow_redirects=True) as client:
            response = client.get(HUB_CONFIG_URL.format(hf_id=hf_id), headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
            data = response.json()
        return parse_config_json("hub", hf_id, data, origin=hf_id, source="hub")
    except (httpx.HTTPError, ValueError, ConfigError):
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
DERIVABLE_MODEL_TYPES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text")
# Attention kinds whose KV cache is 2 x kv_heads x head_dim per token and layer (sliding-window
# layers are counted at full length: an upper bound, since the window caps their cache).
STANDARD_ATTENTION = ("full_attention", "sliding_attention")


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
    derived for DERIVABLE_MODEL_TYPES (plus the Gemma 3 vision tower); any other model needs
    params_b from the caller, and the error says so."""
    if not isinstance(data, Mapping):
        raise ConfigError(key, origin, "config.json must hold a JSON object")
    nested = isinstance(data.get("text_config"), Mapping)
    text: Mapping[str, Any] = data["text_config"] if nested else data
    model_type = str(text.get("model_type") or data.get("model_type") or "")
    fields = _Fields(
        key,
        origin,
        "text_config." if nested else "",
        {**MODEL_TYPE_DEFAULTS.get(model_type, {}), **{k: v for k, v in text.items() if v is not None}},
    )
    if "kv_lora_rank" in fields.values:
        raise fields.fail("latent attention (kv_lora_rank) caches KV differently")
    odd = sorted(set(fields.values.get("layer_types") or ()) - set(STANDARD_ATTENTION))
    if odd:
        raise fields.fail(f"{fields.prefix}layer_types has {odd[0]}, whose cache sizing does not model")
    quantization = fields.values.get("quantization_config") or data.get("quantization_config")
    if quantization is not None:
        method = quantization.get("quant_method") if isinstance(quantization, Mapping) else quantization
        raise fields.fail(f"quantized checkpoint ({method}): state its dtype")

    for_kv = "for the KV cache"
    heads = fields.count("num_attention_heads", for_kv)
    kv_heads = fields.count("num_key_value_heads", for_kv) if "num_key_value_heads" in fields.values else heads
    head_dim = fields.count("head_dim", for_kv) if "head_dim" in fields.values else fields.count("hidden_size", for_kv) // heads
    layers = fields.count("num_hidden_layers", for_kv)
    if heads % kv_heads:
        raise fields.fail(f"{fields.prefix}num_key_value_heads ({kv_heads}) does not divide num_attention_heads ({heads})")
    if params_b is None:
        if model_type not in DERIVABLE_MODEL_TYPES:
            raise ConfigError(
                key,
                origin,
                f"the parameter count of model_type {model_type or '(none)'} is not derivable from config.json "
                f"(derivable: {', '.join(DERIVABLE_MODEL_TYPES)}); state it: paramsBillions under `architecture:`, or recommend --params-b",
            )
        total = _derive_params(fields, layers, heads, kv_heads, head_dim)
        if nested:
            vision = data.get("vision_config")
            if data.get("model_type") != "gemma3" or not isinstance(vision, Mapping):
                raise ConfigError(
                    key,
                    origin,
                    f"the encoders of multimodal model_type {data.get('model_type')} are not derivable; state the total "
                    "parameter count: paramsBillions under `architecture:`, or recommend --params-b",
                )
            total += _siglip_params(_Fields(key, origin, "vision_config.", vision), fields.count("hidden_size", "to count parameters"))
        params_b = total / 1e9
    stated = fields.values.get("torch_dtype") or fields.values.get("dtype") or data.get("torch_dtype") or data.get("dtype")
    dtype = _dtype(stated or "bfloat16")
    if dtype is None:
        raise ConfigError(key, origin, f"torch_dtype is {stated!r}; {DTYPE_CHOICES}")
    max_context = fields.values.get("max_position_embeddings")
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
    )


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
    moe_mlp = experts * 3 * hidden * expert_size + hidden * experts  # the experts and their router
    dense_layers = len(fields.values.get("mlp_only_layers") or ())
    dense_mlp = 3 * hidden * fields.count("intermediate_size", purpose) if dense_layers else 0
    return embeddings + layers * attention + dense_layers * dense_mlp + (layers - dense_layers) * moe_mlp


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
