"""`python -m recommend --model ID`: the TPU slice a model needs, and the table behind the choice.

The arithmetic is components/sizing.py's, the very code that resolves `topology: auto` in a
stack, so what this prints is what a deployment would get. It never touches the network, except
with --from-hub, which reads the model's config.json from the Hugging Face Hub (HF_TOKEN or the
token file huggingface_hub writes), sizes it, prints the catalog entry to add and, with --save,
writes the fact file under tests/fixtures/model_configs/. Exit status: 0 when some generation
asked about has a slice that fits, 1 when none has, 2 on bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

import tool_cli
from components import facts, models, sizing
from components.coerce import real_number, whole_number
from components.errors import ConfigError, for_user

ALL = "all"
HF_ID_RE = re.compile(r"[\w.-]+/[\w.-]+")
FACTS_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "model_configs"
# The config.json fields sizing reads; a fact file keeps these and its source.
FACT_FIELDS = (
    "architectures",
    "model_type",
    "hidden_size",
    "intermediate_size",
    "moe_intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "global_head_dim",
    "num_global_key_value_heads",
    "attention_k_eq_v",
    "layer_types",
    "vocab_size",
    "tie_word_embeddings",
    "max_position_embeddings",
    "num_local_experts",
    "num_experts",
    "decoder_sparse_step",
    "mlp_only_layers",
    "moe_layers",
    "interleave_moe_layer_step",
    "intermediate_size_mlp",
    "kv_lora_rank",
    "torch_dtype",
    "dtype",
    "quantization_config",
    "text_config",
    "vision_config",
)


class BadInput(tool_cli.BadInput):
    """One line naming the option, the value and what is allowed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise BadInput(message)


def _parser() -> _Parser:
    parser = _Parser(prog="python -m recommend", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Hugging Face model id, e.g. meta-llama/Llama-3.1-70B")
    parser.add_argument(
        "--generation",
        action="append",
        help=f"TPU generation: {', '.join(facts.GENERATIONS)} or {ALL}; repeat to compare (default v6e)",
    )
    parser.add_argument("--max-model-len", default=str(sizing.DEFAULT_MAX_MODEL_LEN), help="tokens per sequence (default %(default)s)")
    parser.add_argument("--concurrency", default=str(sizing.DEFAULT_CONCURRENCY), help="sequences served at once (default %(default)s)")
    parser.add_argument(
        "--memory-utilization",
        default=str(sizing.DEFAULT_MEMORY_UTILIZATION),
        help="share of HBM vLLM may use, --gpu-memory-utilization (default %(default)s)",
    )
    parser.add_argument(
        "--quantization",
        default="auto",
        help=f"weights as served: {', '.join(models.QUANTIZATIONS)} (default auto: the checkpoint's, from config.json or the id)",
    )
    parser.add_argument(
        "--kv-cache-dtype",
        default=sizing.DEFAULT_KV_CACHE_DTYPE,
        help=f"vLLM --kv-cache-dtype: {', '.join(sizing.KV_CACHE_DTYPES)} (default %(default)s: bfloat16 on TPU)",
    )
    parser.add_argument("--allow-multi-host", action="store_true", help="consider slices of several VMs")
    parser.add_argument("--config-json", metavar="PATH", help="the model's config.json, for a model the catalog lacks")
    parser.add_argument("--params-b", metavar="BILLIONS", help="total parameters, when the config.json's model type does not give them")
    parser.add_argument(
        "--from-hub",
        action="store_true",
        help="online: read config.json from the Hugging Face Hub (HF_TOKEN or a token file) and print the catalog entry to add",
    )
    parser.add_argument("--save", action="store_true", help="with --from-hub: write the fact file under tests/fixtures/model_configs/")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


@dataclass(frozen=True)
class Request:
    arch: models.ModelArch
    generations: tuple[facts.Generation, ...]
    max_model_len: int
    concurrency: int
    memory_utilization: float
    allow_multi_host: bool
    as_json: bool
    kv_cache_dtype: str = sizing.DEFAULT_KV_CACHE_DTYPE
    checkpoint_dtype: str = "bfloat16"
    hub_config: Mapping[str, Any] | None = None
    save: bool = False


def _whole(option: str, text: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    value = whole_number(text)
    if value is None or not low <= value <= high:
        raise BadInput(f"{option} = {text!r}: a whole number from {low} to {high}")
    return value


def _number(option: str, text: str, bounds: tuple[float, float], what: str) -> float:
    low, high = bounds
    value = real_number(text)
    if value is None or not low <= value <= high:
        raise BadInput(f"{option} = {text!r}: {what} from {low:g} to {high:g}")
    return value


def _request(argv: Sequence[str] | None) -> Request:
    args = _parser().parse_args(argv)
    if not HF_ID_RE.fullmatch(args.model):
        raise BadInput(f"--model = {args.model!r}: a Hugging Face model id such as meta-llama/Llama-3.1-8B")
    names: list[str] = []
    for name in args.generation or ["v6e"]:
        if name != ALL and name not in facts.GENERATIONS:
            raise BadInput(f"--generation = {name!r}: one of {', '.join(facts.GENERATIONS)}, {ALL}")
        names += list(facts.GENERATIONS) if name == ALL else [name]
    max_model_len = _whole("--max-model-len", args.max_model_len, sizing.MAX_MODEL_LEN_RANGE)
    concurrency = _whole("--concurrency", args.concurrency, sizing.CONCURRENCY_RANGE)
    utilization = _number("--memory-utilization", args.memory_utilization, sizing.MEMORY_UTILIZATION_RANGE, "a share")
    if args.quantization not in models.QUANTIZATIONS:
        raise BadInput(f"--quantization = {args.quantization!r}: one of {', '.join(models.QUANTIZATIONS)}")
    if args.kv_cache_dtype not in sizing.KV_CACHE_DTYPES:
        raise BadInput(f"--kv-cache-dtype = {args.kv_cache_dtype!r}: one of {', '.join(sizing.KV_CACHE_DTYPES)}")
    params_b = None if args.params_b is None else _number("--params-b", args.params_b, (0.01, 100_000), "billions of parameters")
    if args.from_hub and args.config_json is not None:
        raise BadInput("--from-hub: reads the Hub's config.json, so it does not go with --config-json")
    if args.save and not args.from_hub:
        raise BadInput("--save: only goes with --from-hub")
    if params_b is not None and args.config_json is None and not args.from_hub:
        raise BadInput(f"--params-b = {args.params_b!r}: only goes with --config-json or --from-hub (catalog models have their count)")
    hub_config: Mapping[str, Any] | None = None
    if args.from_hub:
        try:
            hub_config = models.download_config_json(args.model, models.hub_token())
        except ValueError as err:
            raise BadInput(f"--from-hub: {err}") from None
        arch = models.parse_config_json(
            "--from-hub", args.model, hub_config, origin=models.HUB_CONFIG_URL.format(hf_id=args.model), params_b=params_b, source="hub"
        )
    elif args.config_json is not None:
        arch = models.from_config_json_path("--config-json", args.model, args.config_json, params_b)
    else:
        found = models.lookup(args.model)
        if found is None:
            raise BadInput(
                f"--model = {args.model!r}: not in the catalog (components/models.py); pass --config-json PATH with its "
                "config.json, or read it once with --from-hub (make recommend FROM_HUB=1, online)"
            )
        arch = found
    checkpoint_dtype = arch.dtype
    if args.quantization != "auto":
        arch = arch.served_as(args.quantization)
    sizing.check_context("--max-model-len", arch, max_model_len)
    return Request(
        arch=arch,
        generations=tuple(facts.GENERATIONS[n] for n in dict.fromkeys(names)),
        max_model_len=max_model_len,
        concurrency=concurrency,
        memory_utilization=utilization,
        allow_multi_host=args.allow_multi_host,
        as_json=args.json,
        kv_cache_dtype=args.kv_cache_dtype,
        checkpoint_dtype=checkpoint_dtype,
        hub_config=hub_config,
        save=args.save,
    )


@dataclass(frozen=True)
class Plan:
    """One generation's candidates, cheapest first, and the one chosen (None when none fits)."""

    generation: facts.Generation
    candidates: tuple[sizing.Sizing, ...]
    allow_multi_host: bool

    @property
    def choice(self) -> sizing.Sizing | None:
        return sizing.choose(self.candidates, self.allow_multi_host)

    def relative_cost(self, candidate: sizing.Sizing) -> float:
        """Chip-hours against the choice (or the smallest slice when nothing fits): within a
        generation every chip costs the same per hour."""
        base = self.choice or self.candidates[0]
        return candidate.slice.chips / base.slice.chips

    def status(self, candidate: sizing.Sizing) -> str:
        if candidate is self.choice:
            return "yes: the choice"
        if not candidate.fits:
            return f"no: {candidate.shortfall}"
        if candidate.slice.multi_host and not self.allow_multi_host:
            return "yes, but multi-host (--allow-multi-host)"
        return "yes"


def _plans(request: Request) -> tuple[Plan, ...]:
    return tuple(
        Plan(
            generation,
            sizing.candidates(
                request.arch, generation, request.max_model_len, request.concurrency, request.memory_utilization, request.kv_cache_dtype
            ),
            request.allow_multi_host,
        )
        for generation in request.generations
    )


def _gib(n_bytes: int) -> float:
    return round(sizing.gib(n_bytes), 2)


def _serving_args(choice: sizing.Sizing) -> dict[str, Any]:
    return {
        "generation": choice.generation.name,
        "topology": choice.slice.topology,
        "machine_type": choice.slice.machine_type,
        "vms": choice.slice.vms,
        "chips": choice.slice.chips,
        "tensor_parallel_size": choice.tensor_parallel_size,
        "kv_cache_dtype": choice.kv_cache_dtype,
        "max_num_seqs": choice.max_num_seqs,
        "max_num_batched_tokens": choice.max_num_batched_tokens,
    }


def as_json(request: Request, plans: Sequence[Plan]) -> dict[str, Any]:
    arch = request.arch
    return {
        "model": {
            "hf_id": arch.hf_id,
            "source": arch.source,
            "params_b": arch.params_b,
            "layers": arch.layers,
            "attention_heads": arch.attention_heads,
            "kv_heads": arch.kv_heads,
            "head_dim": arch.head_dim,
            "dtype": arch.dtype,
            "checkpoint_dtype": request.checkpoint_dtype,
            "quantization": arch.quantization,
            "unquantized_params_b": arch.unquantized_params_b,
            "weights_gib": _gib(arch.weight_bytes),
            "max_context": arch.max_context,
            "kv_groups": [list(group) for group in arch.kv_groups],
        },
        "request": {
            "max_model_len": request.max_model_len,
            "concurrency": request.concurrency,
            "memory_utilization": request.memory_utilization,
            "kv_cache_dtype": request.kv_cache_dtype,
            "allow_multi_host": request.allow_multi_host,
        },
        "generations": [
            {
                "generation": plan.generation.name,
                "hbm_gib_per_chip": plan.generation.hbm_gib_per_chip,
                "devices_per_chip": plan.generation.devices_per_chip,
                "choice": _serving_args(plan.choice) if plan.choice else None,
                "candidates": [
                    {
                        "topology": c.slice.topology,
                        "machine_type": c.slice.machine_type,
                        "vms": c.slice.vms,
                        "chips": c.slice.chips,
                        "tensor_parallel_size": c.tensor_parallel_size,
                        "multi_host": c.slice.multi_host,
                        "hbm_gib": _gib(c.hbm_bytes),
                        "usable_gib": _gib(c.usable_bytes),
                        "weights_gib": _gib(c.weights_bytes),
                        "overhead_gib": _gib(c.overhead_bytes),
                        "kv_budget_gib": _gib(c.kv_budget_bytes),
                        "kv_bytes_per_token": c.kv_bytes_per_token,
                        "max_sequences": c.max_sequences,
                        "fits": c.fits,
                        "why_not": c.why_not,
                        "status": plan.status(c),
                        "relative_cost": plan.relative_cost(c),
                    }
                    for c in plan.candidates
                ],
            }
            for plan in plans
        ],
    }


def _print_tables(console: Console, request: Request, plans: Sequence[Plan]) -> None:
    arch = request.arch
    console.print(
        f"[bold]{arch.hf_id}[/] ({arch.source}): {arch.params_b:g}B parameters in {arch.dtype}, {arch.layers} layers, "
        f"{arch.attention_heads} attention heads, {_kv_shape(arch)}, max context {arch.max_context or 'unknown'}"
    )
    console.print(f"Weights: {_weights_formula(arch)}")
    if arch.dtype != request.checkpoint_dtype:
        console.print(
            f"[yellow]--quantization {arch.dtype}: the checkpoint is {request.checkpoint_dtype}; serve a checkpoint stored in "
            f"{arch.dtype} (e.g. a -FP8 / -AWQ sibling) for this sizing to hold[/]"
        )
    console.print(
        f"Asked: {request.max_model_len} tokens per sequence, {request.concurrency} at once, memory utilization "
        f"{request.memory_utilization:g}, KV cache {request.kv_cache_dtype} "
        f"({models.KV_CACHE_DTYPE_BYTES[request.kv_cache_dtype]} bytes per value), "
        f"{'multi-host allowed' if request.allow_multi_host else 'single-host only'}"
    )
    for plan in plans:
        devices = plan.generation.devices_per_chip
        table = Table(
            title=f"{plan.generation.name}: {plan.generation.hbm_gib_per_chip:g} GiB HBM per chip, "
            f"{devices} device{'s' if devices > 1 else ''} per chip (tensor parallel = devices)",
            title_justify="left",
        )
        for header in (
            "topology",
            "VMs x machine",
            "chips",
            "TP",
            "HBM GiB (usable)",
            "weights GiB",
            "overhead GiB",
            "KV budget GiB",
            "KV per token",
            f"seqs of {request.max_model_len}",
            "fits",
            "cost",
        ):
            table.add_column(header, justify="left" if header in ("topology", "VMs x machine", "fits") else "right")
        for c in plan.candidates:
            table.add_row(
                c.slice.topology,
                f"{c.slice.vms} x {c.slice.machine_type}",
                str(c.slice.chips),
                str(c.tensor_parallel_size),
                f"{sizing.gib(c.hbm_bytes):g} ({sizing.gib(c.usable_bytes):.1f})",
                f"{sizing.gib(c.weights_bytes):.1f}",
                f"{sizing.gib(c.overhead_bytes):.1f}",
                f"{sizing.gib(c.kv_budget_bytes):.1f}",
                f"{c.kv_bytes_per_token // 1024} KiB",
                "-" if c.heads_problem else str(c.max_sequences),
                plan.status(c),
                f"{plan.relative_cost(c):g}x",
                style="bold green" if c is plan.choice else None,
            )
        console.print(table)
        choice = plan.choice
        if choice is None:
            console.print(f"[bold red]{plan.generation.name}: no slice fits[/]")
            continue
        console.print(f"[bold]choice:[/] {choice.describe()}")
        kv_key = f", kvCacheDtype: {choice.kv_cache_dtype}" if choice.kv_cache_dtype != sizing.DEFAULT_KV_CACHE_DTYPE else ""
        kv_flag = f" --kv-cache-dtype {choice.kv_cache_dtype}" if kv_key else ""
        # What the stack needs to build a multi-host slice (components/config.py): the opt-in and one zone.
        if choice.slice.multi_host:
            kv_key += ", allowMultiHost: true, zones: one zone"
        console.print(
            f"  stack config: generation: {plan.generation.name}, topology: {choice.slice.topology}, machineType: "
            f"{choice.slice.machine_type}{kv_key}; vLLM: --tensor-parallel-size {choice.tensor_parallel_size} "
            f"--max-num-seqs {choice.max_num_seqs} --max-num-batched-tokens {choice.max_num_batched_tokens}{kv_flag}"
        )
    console.print(
        f"Fits: after weights and overhead ({sizing.RUNTIME_GIB_PER_CHIP:g} GiB per chip + "
        f"{sizing.ACTIVATION_SHARE_OF_WEIGHTS:.0%} of the weights), the KV cache holds at least "
        f"{sizing.MIN_KV_SEQUENCES} sequences (or all asked, if fewer) and the heads split over the TP devices.\n"
        f"KV per token = 2 (K, V) x layers x max(KV heads, TP) x head_dim (padded to 128) x "
        f"{models.KV_CACHE_DTYPE_BYTES[request.kv_cache_dtype]} bytes, summed over each kind of layer.\n"
        "Cost: chip-hours relative to the choice, within a generation; per-chip prices differ between generations."
    )


def _kv_shape(arch: models.ModelArch) -> str:
    return " + ".join(f"{layers} layers x {kv} KV heads of {dim}" for layers, kv, dim in arch.kv_groups)


def _weights_formula(arch: models.ModelArch) -> str:
    per = models.DTYPE_BYTES[arch.dtype]
    if per < 2 and arch.unquantized_params_b:
        kept = arch.unquantized_params_b
        return (
            f"({arch.params_b:g}B - {kept:.4g}B kept in 16 bits) x {per:g} + {kept:.4g}B x 2 bytes = "
            f"{sizing.gib(arch.weight_bytes):.1f} GiB"
        )
    return f"{arch.params_b:g}B x {per:g} bytes = {sizing.gib(arch.weight_bytes):.1f} GiB"


def fact_file(hf_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a config.json that sizing reads, with where they came from."""
    kept = {k: v for k, v in config.items() if k in FACT_FIELDS}
    return {"_source": models.HUB_CONFIG_URL.format(hf_id=hf_id), **kept}


def catalog_entry(arch: models.ModelArch) -> str:
    """The line to paste into components/models.py's _CATALOG."""
    line = (
        f'    *_family(("{arch.hf_id}",), {arch.params_b:.4g}, {arch.layers}, {arch.attention_heads}, {arch.kv_heads}, '
        f"{arch.head_dim}, {arch.max_context or 0}, {arch.unquantized_params_b:.4f}"
        f"{f', vision_heads={arch.vision_heads}' if arch.vision_heads else ''}),"
    )
    notes = []
    if arch.dtype != "bfloat16":
        notes.append(f"weights are {arch.dtype}: give the entry dtype={arch.dtype!r}")
    if arch.global_layers:
        notes.append("its full-attention layers cache another shape: keep it as a fact file read by from_config_json_path")
    return line + (f"  # {'; '.join(notes)}" if notes else "")


def _from_hub_report(request: Request) -> None:
    assert request.hub_config is not None
    name = request.arch.hf_id.split("/")[-1]
    print(f"# {request.arch.hf_id}: read from {models.HUB_CONFIG_URL.format(hf_id=request.arch.hf_id)}", file=sys.stderr)
    print(f"# catalog entry (components/models.py _CATALOG):\n{catalog_entry(request.arch)}", file=sys.stderr)
    if request.save:
        path = FACTS_DIR / f"{name}.json"
        path.write_text(json.dumps(fact_file(request.arch.hf_id, request.hub_config), indent=2) + "\n", encoding="utf-8")
        print(f"# fact file written: {path}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        request = _request(argv)
    except BadInput as err:
        return tool_cli.fail(for_user(f"recommend: {err}"))
    except ConfigError as err:
        return tool_cli.fail(for_user(f"recommend: {err.key} = {err.value!r}: {err.allowed}"))
    if request.hub_config is not None:
        _from_hub_report(request)
    plans = _plans(request)
    if request.as_json:
        print(json.dumps(as_json(request, plans), indent=2))
    else:
        console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
        _print_tables(console, request, plans)
    return tool_cli.EXIT_OK if any(plan.choice for plan in plans) else tool_cli.EXIT_FINDING
