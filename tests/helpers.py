"""Helpers the test modules share: lookups in a program run, the shipped stacks' runs, a model's
config and the `make check` CLI. Fixtures live in conftest.py; these are plain functions."""

from __future__ import annotations

import copy
import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import tool_cli
from components import tokens
from offline_plan.harness import ProgramRun, Registration, run_program

ROOT = Path(__file__).resolve().parent.parent
# Every shipped stack (Pulumi.<stack>.yaml), as the tools discover them.
STACKS = tool_cli.stack_names(ROOT)
CLI_TIMEOUT = 60


def only(run: ProgramRun, type_: str, name: str | None = None) -> Registration:
    """The one registration of a type (and name): a second one, or none, fails the test."""
    found = [r for r in run.registrations if r.type == type_ and (name is None or r.name == name)]
    assert len(found) == 1, f"{type_} {name}: {[r.name for r in found]}"
    return found[0]


def of_type(run: ProgramRun, type_: str) -> list[Registration]:
    return [r for r in run.registrations if r.type == type_]


def container(run: ProgramRun, model: str) -> dict[str, Any]:
    """The first container (vLLM) of a model's Deployment."""
    deployment = only(run, tokens.DEPLOYMENT, model)
    return deployment.inputs["spec"]["template"]["spec"]["containers"][0]


def objects(run: ProgramRun, kind: str | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the run registers (of one kind), as its inputs."""
    return [
        r.inputs
        for r in run.registrations
        if r.custom and r.type.startswith("kubernetes:") and (kind is None or r.inputs.get("kind") == kind)
    ]


@functools.cache
def _shipped_run(stack: str) -> ProgramRun:
    return run_program(stack)


def shipped_run(stack: str) -> ProgramRun:
    """The real program on the stack's own config (`run_program(stack)`), run once per test session;
    each caller gets its own copy, so a test that edits what it reads cannot change another's."""
    return copy.deepcopy(_shipped_run(stack))


def base_model() -> dict[str, Any]:
    """One model's config: Llama 3.1 70B on a v6e 2x4 slice (conftest.BASE's model, autoscaled to 2)."""
    return {"name": "llama-70b", "hfId": "meta-llama/Llama-3.1-70B", "generation": "v6e", "topology": "2x4", "maxReplicas": 2}


def run_policy_check(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`make check`'s command, `python -m policy_runner check ARGS`, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "policy_runner", "check", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        input=stdin,
    )
