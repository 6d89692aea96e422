"""Shared fixtures: the real program run under Pulumi's mocks (offline_plan.harness)."""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Model lookups must never reach the Hugging Face Hub from a test.
os.environ["HF_HUB_OFFLINE"] = "1"


from components import models, tokens  # noqa: E402
from offline_plan import sdk  # noqa: E402
from offline_plan.harness import PlanMocks, ProgramRun, run_program  # noqa: E402
from policies import pack  # noqa: E402
from policy_runner import PolicyPackSession  # noqa: E402
from policy_runner.session import AnalyzerStub  # noqa: E402

PROJECT_NUMBER = "123456789012"
HF_TOKEN = "hf_TESTtokenDoNotLeak0123456789"


class NumberedProjectMocks(PlanMocks):
    """As the offline plan, but with a real-looking project number so member strings can be checked."""

    def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        result, failures = super().call(args)
        if args.token == tokens.GET_PROJECT:
            result["number"] = PROJECT_NUMBER
        return result, failures


BASE: dict[str, Any] = {
    "gcp:project": "acme-llm-test",
    "gcp:region": "us-east5",
    "tpu-serving:cluster": {"name": "llm-test", "mode": "standard", "zones": ["us-east5-b"]},
    "tpu-serving:models": [
        {
            "name": "llama-70b",
            "hfId": "meta-llama/Llama-3.1-70B",
            "generation": "v6e",
            "topology": "2x4",
            "minReplicas": 1,
            "maxReplicas": 2,
        }
    ],
}


def build_config(overrides: dict[str, Any] | None = None, secrets: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    values = copy.deepcopy(BASE)
    values.update(overrides or {})
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items() if v is not None}
    secrets = {"tpu-serving:hfToken": HF_TOKEN} if secrets is None else secrets
    config.update(secrets)
    return config, list(secrets)


RunStack = Callable[..., ProgramRun]


@pytest.fixture
def no_hub_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Hugging Face token from the developer's environment: model lookups behave as in CI."""
    for name in models.HUB_TOKEN_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run_stack() -> RunStack:
    def run(overrides: dict[str, Any] | None = None, secrets: dict[str, str] | None = None, stack: str = "test") -> ProgramRun:
        config, secret_keys = build_config(overrides, secrets)
        return run_program(stack, config, secret_keys, project="tpu-serving", plan_mocks=NumberedProjectMocks())

    return run


class _InProcessAnalyzer:
    """The SDK's servicer with the analyzer stub's call signature: the protocol without a process."""

    def __init__(self) -> None:
        self._servicer = sdk.policy_analyzer_servicer(pack.NAME, "0.1.0", pack.POLICIES, sdk.EnforcementLevel.MANDATORY)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        call = getattr(self._servicer, method)
        return lambda request, timeout=None: call(request, None)


def in_process_policy_session(project: str, stack: str) -> PolicyPackSession:
    return PolicyPackSession(cast(AnalyzerStub, _InProcessAnalyzer()), project=project, stack=stack)
