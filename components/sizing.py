"""Choosing a TPU slice for a model: the HBM arithmetic and the rules on top of it.

On a slice of N chips vLLM runs tensor parallel N x devices_per_chip (JAX devices: a tpu7x chip
has two TensorCores, each its own device; facts.Generation) and may use memory_utilization of the
HBM for weights, KV cache and working memory. A slice fits when, after the weights and the overhead
below, the KV cache still holds MIN_KV_SEQUENCES sequences of max_model_len tokens (or
`concurrency` of them, when fewer are asked for). "auto" takes the cheapest fitting slice:
fewest chips (TPU prices are per chip-hour within a generation), one VM before several.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from components import facts
from components.errors import ConfigError
from components.models import KV_CACHE_DTYPE_BYTES, ModelArch

# tpu-inference's KV cache is bfloat16 (DEFAULT_KV_CACHE_DTYPE), whatever the weights are, unless
# vLLM's --kv-cache-dtype asks for fp8 (kvCacheDtype / recommend --kv-cache-dtype).
KV_CACHE_BYTES_PER_VALUE = 2
DEFAULT_KV_CACHE_DTYPE = "auto"
KV_CACHE_DTYPES = tuple(KV_CACHE_DTYPE_BYTES)
# tpu-inference pads head_dim to a multiple of 128 in the KV cache, except 64, which has its own
# kernel (padding_utils.get_padded_head_dim).
KV_HEAD_DIM_ALIGNMENT = 128
KV_HEAD_DIM_UNPADDED = 64
# An allowance, not a measurement: XLA's runtime, compiled programs and collective buffers hold
# memory on every chip outside weights and KV cache. vLLM measures the real figure when it starts;
# the plan only has to stay on the safe side of it.
RUNTIME_GIB_PER_CHIP = 1.0
# Transient activations of a step (MLP intermediates, attention scores, logits) grow with the
# model's width, hence with its weights; at MAX_NUM_BATCHED_TOKENS they stay well under 5% of the
# weights for every catalog model.
ACTIVATION_SHARE_OF_WEIGHTS = 0.05
# A slice whose KV cache holds fewer full-length sequences than this serves them nearly one at a
# time and preempts as soon as long requests overlap: not a serving setup. 4 keeps 8B-class
# models on one v6e chip at 4096 tokens (room for about 27) and turns away a 12B model there (3).
MIN_KV_SEQUENCES = 4
# Beyond this the decode batch stops paying on one slice, and the TPU runner compiles one graph per
# batch-size bucket up to max_num_seqs: more buckets, longer cold starts.
MAX_NUM_SEQS_CAP = 256
# Tokens per engine step: decode tokens of the running batch plus a chunk of prefill. vLLM on TPU
# chunks prefill, so this need not reach max_model_len; 512 is what the seed ran with for 70B on
# v6e 2x4, and it stays >= MAX_NUM_SEQS_CAP so a full decode batch fits in one step.
MAX_NUM_BATCHED_TOKENS = 512

# Defaults and ranges of the stack config's serving keys; the recommend CLI uses the same.
DEFAULT_MAX_MODEL_LEN = 4096
DEFAULT_CONCURRENCY = 32
DEFAULT_MEMORY_UTILIZATION = 0.95
MAX_MODEL_LEN_RANGE = (128, 1_048_576)
CONCURRENCY_RANGE = (1, 4096)
MEMORY_UTILIZATION_RANGE = (0.5, 0.99)


def gib(n_bytes: float) -> float:
    return n_bytes / facts.GIB


def _pow2_at_least(n: int) -> int:
    return 1 << (n - 1).bit_length()


def tp_problem(arch: ModelArch, tp: int) -> str | None:
    """Why vLLM cannot shard this model's attention over tp devices, or None when it can: query
    heads split evenly, KV heads either split evenly or are replicated a whole number of times, and
    a vision encoder's heads split evenly (vLLM's vision attention divides them by tp)."""
    if arch.attention_heads % tp:
        return f"tensor parallel {tp} does not divide {arch.attention_heads} attention heads"
    for _, kv_heads, _ in arch.kv_groups:
        if kv_heads % tp and tp % kv_heads:
            return f"tensor parallel {tp} and {kv_heads} KV heads: neither divides the other"
    if arch.vision_heads and arch.vision_heads % tp:
        return f"tensor parallel {tp} does not divide the vision encoder's {arch.vision_heads} heads"
    return None


def _padded_head_dim(head_dim: int) -> int:
    if head_dim == KV_HEAD_DIM_UNPADDED:
        return head_dim
    return -(-head_dim // KV_HEAD_DIM_ALIGNMENT) * KV_HEAD_DIM_ALIGNMENT


def kv_bytes_per_token(arch: ModelArch, tp: int, kv_cache_dtype: str = DEFAULT_KV_CACHE_DTYPE) -> int:
    """K and V for every layer (each kind of layer with its own heads and width). When tp exceeds
    the KV heads each device keeps a copy of its head, so the slice holds tp heads' worth
    (tpu-inference get_num_kv_heads_by_tp). Sliding-window layers count at full length."""
    per_value = KV_CACHE_DTYPE_BYTES[kv_cache_dtype]
    return sum(2 * layers * max(kv_heads, tp) * _padded_head_dim(head_dim) * per_value for layers, kv_heads, head_dim in arch.kv_groups)


def default_max_num_seqs(concurrency: int) -> int:
    """Concurrency rounded up to a power of two: the TPU runner pads batches to such buckets, so the
    round-up costs no extra compiled graph."""
    return min(_pow2_at_least(concurrency), MAX_NUM_SEQS_CAP)


@dataclass(frozen=True)
class Sizing:
    """One model on one slice: where its HBM goes and what that leaves for the KV cache."""

    arch: ModelArch
    generation: facts.Generation
    slice: facts.Slice
    max_model_len: int
    concurrency: int
    memory_utilization: float
    kv_cache_dtype: str = DEFAULT_KV_CACHE_DTYPE

    @property
    def tensor_parallel_size(self) -> int:
        """Devices, not chips: vLLM shards over every JAX device of the slice."""
        return self.slice.chips * self.generation.devices_per_chip

    @property
    def hbm_bytes(self) -> int:
        return int(self.slice.chips * self.generation.hbm_gib_per_chip * facts.GIB)

    @property
    def usable_bytes(self) -> int:
        return int(self.hbm_bytes * self.memory_utilization)

    @property
    def weights_bytes(self) -> int:
        return self.arch.weight_bytes

    @property
    def overhead_bytes(self) -> int:
        return int(self.slice.chips * RUNTIME_GIB_PER_CHIP * facts.GIB + ACTIVATION_SHARE_OF_WEIGHTS * self.weights_bytes)

    @property
    def kv_bytes_per_token(self) -> int:
        return kv_bytes_per_token(self.arch, self.tensor_parallel_size, self.kv_cache_dtype)

    @property
    def kv_bytes_per_sequence(self) -> int:
        return self.kv_bytes_per_token * self.max_model_len

    @property
    def kv_budget_bytes(self) -> int:
        """What is left for the KV cache; negative when the weights alone do not fit."""
        return self.usable_bytes - self.weights_bytes - self.overhead_bytes

    @property
    def max_sequences(self) -> int:
        """How many sequences of max_model_len tokens the KV cache holds at once."""
        return max(0, self.kv_budget_bytes // self.kv_bytes_per_sequence)

    @property
    def min_sequences(self) -> int:
        return min(self.concurrency, MIN_KV_SEQUENCES)

    @property
    def need_bytes(self) -> int:
        """Weights, overhead and a KV cache for `concurrency` full-length sequences."""
        return self.weights_bytes + self.overhead_bytes + self.concurrency * self.kv_bytes_per_sequence

    @property
    def min_need_bytes(self) -> int:
        return self.weights_bytes + self.overhead_bytes + self.min_sequences * self.kv_bytes_per_sequence

    @property
    def heads_problem(self) -> str | None:
        return tp_problem(self.arch, self.tensor_parallel_size)

    @property
    def why_not(self) -> str | None:
        """None when the model fits; otherwise the reason, with the numbers."""
        if self.heads_problem is not None:
            return self.heads_problem
        if self.max_sequences >= self.min_sequences:
            return None
        return (
            f"needs {gib(self.min_need_bytes):.1f} GiB (weights {gib(self.weights_bytes):.1f} + overhead "
            f"{gib(self.overhead_bytes):.1f} + KV {gib(self.min_sequences * self.kv_bytes_per_sequence):.1f} for "
            f"{self.min_sequences} x {self.max_model_len} tokens), has {gib(self.usable_bytes):.1f} GiB usable "
            f"({self.slice.chips} x {self.generation.hbm_gib_per_chip:g} GiB x {self.memory_utilization:g})"
        )

    @property
    def fits(self) -> bool:
        return self.why_not is None

    @property
    def max_num_seqs(self) -> int:
        # Not capped at max_sequences (full-length sequences that fit): vLLM's paged KV cache is
        # allocated per token, real requests are rarely all maxModelLen long, and when they are the
        # scheduler preempts. Such a cap would also keep KV-cache usage far below any HPA target.
        return default_max_num_seqs(self.concurrency)

    @property
    def max_num_batched_tokens(self) -> int:
        return MAX_NUM_BATCHED_TOKENS

    @property
    def where(self) -> str:
        """The topology, and its VMs when there are several: 2x4 exists both ways on v5e and v6e."""
        return self.slice.topology + (f" on {self.slice.vms} VMs" if self.slice.multi_host else "")

    @property
    def shortfall(self) -> str | None:
        """why_not in a few words."""
        if self.heads_problem is not None or self.fits:
            return self.heads_problem
        return f"needs {gib(self.min_need_bytes):.1f} GiB, has {gib(self.usable_bytes):.1f}"

    @property
    def brief(self) -> str:
        return f"{self.where}: {self.shortfall or 'fits'}"

    def describe(self) -> str:
        """One line for a preview or a report."""
        held = min(self.max_sequences, self.concurrency)
        short = "" if held >= self.concurrency else f" (of {self.concurrency} asked: add replicas or a larger slice for the rest)"
        return (
            f"{self.generation.name} {self.slice.topology} ({self.slice.vms} x {self.slice.machine_type}, tensor parallel "
            f"{self.tensor_parallel_size}): weights {gib(self.weights_bytes):.1f} GiB + overhead {gib(self.overhead_bytes):.1f} "
            f"of {gib(self.usable_bytes):.1f} usable leaves {gib(self.kv_budget_bytes):.1f} GiB of KV cache, room for "
            f"{self.max_sequences} sequences of {self.max_model_len} tokens; serving {held} at once{short}"
        )


@dataclass(frozen=True)
class Resolution:
    slice: facts.Slice
    max_num_batched_tokens: int
    max_num_seqs: int
    sizing: Sizing | None


def candidates(
    arch: ModelArch,
    generation: facts.Generation,
    max_model_len: int,
    concurrency: int,
    memory_utilization: float,
    kv_cache_dtype: str = DEFAULT_KV_CACHE_DTYPE,
) -> tuple[Sizing, ...]:
    """Every slice of the generation, cheapest first (fewest chips, then fewest VMs)."""
    slices = sorted(generation.slices, key=lambda s: (s.chips, s.vms))
    return tuple(Sizing(arch, generation, s, max_model_len, concurrency, memory_utilization, kv_cache_dtype) for s in slices)


def choose(sizings: Iterable[Sizing], allow_multi_host: bool) -> Sizing | None:
    """The first that fits, of candidates() order, among the slices allowed."""
    return next((s for s in sizings if s.fits and (allow_multi_host or not s.slice.multi_host)), None)


def check_context(key: str, arch: ModelArch, max_model_len: int) -> None:
    if arch.max_context is not None and max_model_len > arch.max_context:
        raise ConfigError(key, max_model_len, f"{arch.hf_id} handles at most {arch.max_context} tokens (max_position_embeddings)")


def _sibling(key: str, name: str) -> str:
    """models[0].topology -> models[0].machineType: errors name the key the user has to change."""
    return f"{key.rsplit('.', 1)[0]}.{name}" if "." in key else name


def resolve(
    key: str,
    arch: ModelArch | None,
    generation: facts.Generation,
    topology: str,
    machine_type: str | None,
    max_model_len: int,
    concurrency: int,
    memory_utilization: float,
    allow_multi_host: bool,
    kv_cache_dtype: str = DEFAULT_KV_CACHE_DTYPE,
) -> Resolution:
    """The slice for a model and the serving limits that go with it, or a ConfigError that says
    which key to change. `key` is the topology's config key."""
    machine_key = _sibling(key, "machineType")
    if machine_type is not None and machine_type not in (m.name for m in generation.machine_types):
        names = ", ".join(m.name for m in generation.machine_types)
        raise ConfigError(machine_key, machine_type, f"{generation.name} machine types: {names}")
    if arch is not None:
        check_context(_sibling(key, "maxModelLen"), arch, max_model_len)

    if topology == "auto":
        if arch is None:
            raise ConfigError(
                key,
                topology,
                "this model is not in the catalog (components/models.py), so its size is unknown: set topology "
                f"({', '.join(generation.topologies)}) or describe the model under architecture: or configJson:",
            )
        pool = [
            s
            for s in candidates(arch, generation, max_model_len, concurrency, memory_utilization, kv_cache_dtype)
            if machine_type is None or s.slice.machine_type == machine_type
        ]
        chosen = choose(pool, allow_multi_host)
        if chosen is None:
            scope = [s for s in pool if allow_multi_host or not s.slice.multi_host]
            where = f"{'' if allow_multi_host else 'single-host '}{generation.name} slice" + (f" of {machine_type}" if machine_type else "")
            tries = ([] if allow_multi_host else ["allowMultiHost: true"]) + ["a lower maxModelLen", "another generation"]
            raise ConfigError(
                key,
                topology,
                f"no {where} fits {arch.hf_id} at maxModelLen {max_model_len}: "
                + "; ".join(s.brief for s in scope)
                + f"; try {', '.join(tries[:-1])} or {tries[-1]}",
            )
        return Resolution(chosen.slice, chosen.max_num_batched_tokens, chosen.max_num_seqs, chosen)

    slices = generation.slices_of(topology)
    if not slices:
        raise ConfigError(key, topology, f"auto or a {generation.name} topology: {', '.join(generation.topologies)}")
    if machine_type is not None:
        formed = tuple(s for s in slices if s.machine_type == machine_type)
        if not formed:
            makers = sorted({s.machine_type for s in slices})
            raise ConfigError(machine_key, machine_type, f"cannot form {generation.name} {topology}; it is built from {', '.join(makers)}")
        slices = formed
    chosen_slice = min(slices, key=lambda s: s.vms)
    if arch is None:
        return Resolution(chosen_slice, MAX_NUM_BATCHED_TOKENS, default_max_num_seqs(concurrency), None)
    sizing = Sizing(arch, generation, chosen_slice, max_model_len, concurrency, memory_utilization, kv_cache_dtype)
    if not sizing.fits:
        better = choose(candidates(arch, generation, max_model_len, concurrency, memory_utilization, kv_cache_dtype), allow_multi_host)
        advice = f"the smallest {generation.name} slice that fits is {better.where}" if better else f"no {generation.name} slice fits"
        problem = "cannot shard" if sizing.heads_problem else "too small for"
        raise ConfigError(key, topology, f"{problem} {arch.hf_id}: {sizing.why_not}; {advice}")
    return Resolution(chosen_slice, sizing.max_num_batched_tokens, sizing.max_num_seqs, sizing)
