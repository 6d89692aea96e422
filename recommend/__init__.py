"""`python -m recommend --model ID`: the TPU slice a model needs, and the table behind the choice.

The arithmetic is components/sizing.py's, the very code that resolves `topology: auto` in a
stack, so what this prints is what a deployment would get. Exit status: 0 when some generation
asked about has a slice that fits, 1 when none has, 2 on bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from components import facts, models, sizing
from components.errors import ConfigError

ALL = "all"
HF_ID_RE = re.compile(r"[\w.-]+/[\w.-]+")


class BadInput(Exception):
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
    parser.add_argument("--allow-multi-host", action="store_true", help="consider slices of several VMs")
    parser.add_argument("--config-json", metavar="PATH", help="the model's config.json, for a model the catalog lacks")
    parser.add_argument("--params-b", metavar="BILLIONS", help="total parameters, when --config-json's model type does not give them")
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


def _whole(option: str, text: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise BadInput(f"{option} = {text!r}: a whole number from {low} to {high}")
    return int(text)


def _number(option: str, text: str, bounds: tuple[float, float], what: str) -> float:
    low, high = bounds
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
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
    params_b = None if args.params_b is None else _number("--params-b", args.params_b, (0.01, 100_000), "billions of parameters")
    if params_b is not None and args.config_json is None:
        raise BadInput(f"--params-b = {args.params_b!r}: only goes with --config-json (catalog models have their count)")
    if args.config_json is not None:
        arch = models.from_config_json_path("--config-json", args.model, args.config_json, params_b)
    else:
        found = models.lookup(args.model)
        if found is None:
            raise BadInput(
                f"--model = {args.model!r}: not in the catalog (components/models.py) and not read from the Hub "
                f"(needs {models.HUB_TOKEN_ENV[0]} and network); pass --config-json PATH with its config.json"
            )
        arch = found
    sizing.check_context("--max-model-len", arch, max_model_len)
    return Request(
        arch=arch,
        generations=tuple(facts.GENERATIONS[n] for n in dict.fromkeys(names)),
        max_model_len=max_model_len,
        concurrency=concurrency,
        memory_utilization=utilization,
        allow_multi_host=args.allow_multi_host,
        as_json=args.json,
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
            sizing.candidates(request.arch, generation, request.max_model_len, request.concurrency, request.memory_utilization),
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
            "max_context": arch.max_context,
        },
        "request": {
            "max_model_len": request.max_model_len,
            "concurrency": request.concurrency,
            "memory_utilization": request.memory_utilization,
            "allow_multi_host": request.allow_multi_host,
        },
        "generations": [
            {
                "generation": plan.generation.name,
                "hbm_gib_per_chip": plan.generation.hbm_gib_per_chip,
                "choice": _serving_args(plan.choice) if plan.choice else None,
                "candidates": [
                    {
                        "topology": c.slice.topology,
                        "machine_type": c.slice.machine_type,
                        "vms": c.slice.vms,
                        "chips": c.slice.chips,
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
        f"{arch.attention_heads} attention heads, {arch.kv_heads} KV heads of {arch.head_dim}, "
        f"max context {arch.max_context or 'unknown'}"
    )
    console.print(
        f"Asked: {request.max_model_len} tokens per sequence, {request.concurrency} at once, memory utilization "
        f"{request.memory_utilization:g}, {'multi-host allowed' if request.allow_multi_host else 'single-host only'}"
    )
    for plan in plans:
        table = Table(title=f"{plan.generation.name}: {plan.generation.hbm_gib_per_chip:g} GiB HBM per chip", title_justify="left")
        for header in (
            "topology",
            "VMs x machine",
            "chips",
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
        console.print(
            f"  stack config: generation: {plan.generation.name}, topology: {choice.slice.topology}, machineType: "
            f"{choice.slice.machine_type}; vLLM: --tensor-parallel-size {choice.tensor_parallel_size} "
            f"--max-num-seqs {choice.max_num_seqs} --max-num-batched-tokens {choice.max_num_batched_tokens}"
        )
    console.print(
        f"Fits: after weights and overhead ({sizing.RUNTIME_GIB_PER_CHIP:g} GiB per chip + "
        f"{sizing.ACTIVATION_SHARE_OF_WEIGHTS:.0%} of the weights), the KV cache holds at least "
        f"{sizing.MIN_KV_SEQUENCES} sequences (or all asked, if fewer) and the heads split over the chips.\n"
        "Cost: chip-hours relative to the choice, within a generation; per-chip prices differ between generations."
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        request = _request(argv)
    except BadInput as err:
        print(f"recommend: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"recommend: {err.key} = {err.value!r}: {err.allowed}", file=sys.stderr)
        return 2
    plans = _plans(request)
    if request.as_json:
        print(json.dumps(as_json(request, plans), indent=2))
    else:
        console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
        _print_tables(console, request, plans)
    return 0 if any(plan.choice for plan in plans) else 1
