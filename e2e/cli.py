"""`make e2e STACK=dev [KEEP=1]`: the stack on a real GCP project, end to end.

Steps: `pulumi up` with the policy pack (as `make up`); the stack outputs; each model answering
/health through `kubectl port-forward` within its startup probe's allowance; a short
`python -m loadtest` run through that forward; each HPA reading its metric; `pulumi preview
--expect-no-changes` (a second run must change nothing); `pulumi destroy` after emptying the model
cache buckets. Destroy is attempted even when a step failed or the run is interrupted, unless
--keep. A summary table of every step ends the run.

Exit codes: 0 every step passed; 1 a step failed; 2 bad usage, or a missing tool or credential
(checked before anything is created); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import tool_cli
from components import facts
from components.config import load_stack_config, raw_stack_config
from components.errors import ConfigError
from components.vllm_server import NAME as SERVER
from loadtest.cli import API_KEY_ENV
from offline_plan.harness import read_stack_config

PROG = "e2e"
ROOT = Path(__file__).resolve().parent.parent
# Seconds between checks while waiting for a server or an HPA; tests shorten it.
POLL_SECONDS = 5.0
# Two steps are enough to show the server streams under concurrent load; the sizing run is
# `make loadtest`, which takes minutes.
LOADTEST_CONCURRENCY = "1,4"
# Each tool and how to get it; the kubeconfig the stack exports authenticates through the plugin.
TOOLS = {
    "pulumi": "install the Pulumi CLI (https://www.pulumi.com/docs/iac/download-install/)",
    "gcloud": "install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)",
    "kubectl": "run `gcloud components install kubectl`",
    "gke-gcloud-auth-plugin": "run `gcloud components install gke-gcloud-auth-plugin`",
}


class Refusal(tool_cli.BadInput):
    """Nothing can start: bad input or a missing tool or credential. One line, exit 2."""


class StepFailed(Exception):
    """A step did not pass; the message is its row in the summary."""


class Skipped(Exception):
    """A step that does not apply, e.g. the HPA check of a model that does not autoscale."""


def _Parser(**kwargs: Any) -> tool_cli.ArgumentParser:
    return tool_cli.ArgumentParser(error_prog=PROG, **kwargs)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def build_parser() -> tool_cli.ArgumentParser:
    parser = _Parser(
        prog=f"python -m {PROG}",
        allow_abbrev=False,
        description="The stack on a real GCP project, end to end: up, serve, load, HPA, no drift, destroy.",
    )
    parser.add_argument("--stack", required=True, help="the stack to create, check and destroy (a Pulumi.<stack>.yaml)")
    parser.add_argument("--keep", action="store_true", help="leave the stack running: skip pulumi destroy")
    parser.add_argument("--loadtest-duration", type=_positive, default=20.0, help="seconds per load test step (default: %(default)s)")
    parser.add_argument(
        "--hpa-timeout",
        type=_positive,
        default=600.0,
        # The adapter reads Cloud Monitoring, whose samples reach it a minute or two after the pods export them.
        help="seconds to wait for each HPA to read its metric (default: %(default)s)",
    )
    return parser


def _run(argv: Sequence[str], *, capture: bool = False, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # stdin closed: a prompt (a missing passphrase, a stack to select) fails instead of hanging.
    return subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=capture, text=True, env=env, check=False)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def check_stack(stack: str, keep: bool) -> Path:
    """The stack's policy config, once the stack file exists and destroying it is safe."""
    stack_file = tool_cli.stack_file(stack, ROOT)
    if not stack_file.is_file():
        raise Refusal(f"no stack file {stack_file.name} (stacks: {', '.join(tool_cli.stack_names(ROOT))})")
    policy_config = ROOT / "policies" / "config" / f"{stack}.json"
    if not policy_config.is_file():
        raise Refusal(f"no policy config {policy_config.relative_to(ROOT)} for stack {stack}")
    if keep:
        return policy_config
    try:  # read as the program reads it, so the schema's defaults decide what is protected
        project, flat, secret_keys, _ = read_stack_config(stack, ROOT)
        config = load_stack_config(raw_stack_config(project, flat, secret_keys), stack)
    except ConfigError as error:
        raise Refusal(str(error)) from None
    # A destroy of a protected stack deletes the node pools and the workloads, then stops at the
    # cluster or a bucket: an outage, not a teardown. e2e is for a throwaway stack.
    held = []
    if config.protect_data:
        held.append("tpu-serving:protectData: true")
    if config.cluster.deletion_protection:
        held.append("cluster.deletionProtection (default true)")
    if held:
        raise Refusal(f"stack {stack} protects what e2e would destroy ({', '.join(held)}): use a throwaway stack, or --keep")
    return policy_config


def preflight(environ: Mapping[str, str]) -> None:
    """Every tool and credential the run needs, so a missing one stops it before `pulumi up`."""

    def require(tool: str) -> None:
        if shutil.which(tool) is None:
            raise Refusal(f"{tool} is not on PATH: {TOOLS[tool]}")

    require("pulumi")
    if _run(["pulumi", "whoami"], capture=True).returncode != 0:
        raise Refusal(
            "`pulumi whoami` failed: run `pulumi login` (Pulumi Cloud: PULUMI_ACCESS_TOKEN; GCS state: pulumi login gs://BUCKET/PREFIX)"
        )
    require("gcloud")
    credentials = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if credentials:
        if not Path(credentials).is_file():
            raise Refusal(f"GOOGLE_APPLICATION_CREDENTIALS names no file ({credentials})")
    # The token is captured and dropped: it proves the credentials work and is never shown.
    elif _run(["gcloud", "auth", "application-default", "print-access-token"], capture=True).returncode != 0:
        raise Refusal("no GCP credentials: run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS")
    require("kubectl")
    require("gke-gcloud-auth-plugin")


@dataclass(frozen=True)
class Model:
    name: str
    namespace: str
    bucket: str
    external: bool


def models_in(outputs: Mapping[str, Any]) -> list[Model]:
    """The per-model exports ({namespace, bucket, slice, serviceAddress, curl}) of the program."""
    return [
        Model(
            name=name,
            namespace=value["namespace"],
            bucket=str(value.get("bucket") or ""),
            # The curl output sends the key from $VLLM_API_KEY exactly when the model is external.
            external=f"${API_KEY_ENV}" in str(value.get("curl") or ""),
        )
        for name, value in sorted(outputs.items())
        if isinstance(value, dict) and isinstance(value.get("namespace"), str)
    ]


def startup_seconds(deployment: Mapping[str, Any]) -> float:
    """The longest startup allowance of the Deployment's containers (`startupMinutes` for vLLM),
    with Kubernetes' probe defaults."""
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    budgets = [
        probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
        for probe in (c.get("startupProbe") or {} for c in containers)
    ]
    return float(max(budgets, default=30))


def current_value(metric: Mapping[str, Any]) -> str | None:
    """An HPA status.currentMetrics entry's value: {type: Pods, pods: {current: {averageValue}}}."""
    kind = str(metric.get("type", ""))
    current = (metric.get(kind[:1].lower() + kind[1:]) or {}).get("current") or {}
    return next((str(current[key]) for key in ("averageValue", "value", "averageUtilization") if key in current), None)


def hpa_problem(hpa: Mapping[str, Any]) -> str | None:
    """Why an HPA cannot scale on its metric yet, or None when it reads a value."""
    name = f"hpa/{hpa.get('metadata', {}).get('name', '?')}"
    status = hpa.get("status") or {}
    for condition in status.get("conditions") or []:
        inactive = condition.get("type") == "ScalingActive" and condition.get("status") == "False"
        if inactive or condition.get("reason") == "FailedGetPodsMetric":
            return f"{name}: {condition.get('type')}={condition.get('status')} {condition.get('reason')}: {condition.get('message', '')}"
    if not any(current_value(metric) is not None for metric in status.get("currentMetrics") or []):
        return f"{name}: no current metric value"
    return None


@dataclass
class Result:
    step: str
    status: str
    detail: str
    seconds: float


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    def run(self, step: str, action: Callable[[], str]) -> bool:
        """Runs one step and records it; True when it passed."""
        print(f"\n{PROG}: {step}", flush=True)
        started = time.monotonic()
        try:
            detail, status = action(), "PASS"
        except Skipped as reason:
            detail, status = str(reason), "SKIP"
        except StepFailed as reason:
            detail, status = str(reason), "FAIL"
        except OSError as error:
            detail, status = f"{type(error).__name__}: {error}", "FAIL"
        except KeyboardInterrupt:
            self.results.append(Result(step, "FAIL", "interrupted", time.monotonic() - started))
            raise
        self.results.append(Result(step, status, detail, time.monotonic() - started))
        return status == "PASS"

    def skip(self, step: str, reason: str) -> None:
        self.results.append(Result(step, "SKIP", reason, 0.0))

    @property
    def failed(self) -> bool:
        return any(r.status == "FAIL" for r in self.results)

    def lines(self, stack: str) -> list[str]:
        width = max([len("step"), *(len(r.step) for r in self.results)])
        rows = [f"{PROG} summary, stack {stack}:", f"  {'step':<{width}}  result  {'time':>7}  detail"]
        for r in self.results:
            minutes, seconds = divmod(round(r.seconds), 60)
            rows.append(f"  {r.step:<{width}}  {r.status:<6}  {f'{minutes}m{seconds:02d}s':>7}  {r.detail}".rstrip())
        return rows


class PortForward:
    """`kubectl port-forward service/vllm` on a free local port, restarted when it drops (it does
    while the Service has no ready pod)."""

    def __init__(self, kubectl: list[str], namespace: str, log: Path) -> None:
        self.argv = [*kubectl, "-n", namespace, "port-forward", f"service/{SERVER}", f"{_free_port()}:{facts.VLLM_PORT}"]
        self.url = f"http://127.0.0.1:{self.argv[-1].split(':')[0]}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def ensure(self) -> None:
        if self.process is None or self.process.poll() is not None:
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def last_error(self) -> str:
        return _last_line(self.log.read_text(errors="replace")) if self.log.exists() else ""

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EndToEnd:
    def __init__(self, args: argparse.Namespace, policy_config: Path, workdir: Path) -> None:
        self.stack: str = args.stack
        self.keep: bool = args.keep
        self.loadtest_duration: float = args.loadtest_duration
        self.hpa_timeout: float = args.hpa_timeout
        # As `make up` and `make preview` pass them.
        self.policy_args = ["--policy-pack", "policies", "--policy-pack-config", str(policy_config.relative_to(ROOT))]
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.kubectl = ["kubectl", "--kubeconfig", str(self.kubeconfig)]
        self.models: list[Model] = []
        self.report = Report()

    def run(self) -> None:
        try:
            if not self.report.run("up", self.up):
                for step in ("outputs", "preview --expect-no-changes"):
                    self.report.skip(step, "up failed")
                return
            if self.report.run("outputs", self.outputs):
                for model in self.models:
                    self.check_model(model)
            self.report.run("preview --expect-no-changes", self.preview)
        finally:
            if self.keep:
                self.report.skip("destroy", "--keep")
            else:
                self.report.run("destroy", self.destroy)

    def check_model(self, model: Model) -> None:
        forward = PortForward(self.kubectl, model.namespace, self.workdir / f"port-forward-{model.name}.log")
        try:
            if not self.report.run(f"wait {model.name}", lambda: self.wait(model, forward)):
                for step in ("loadtest", "hpa"):
                    self.report.skip(f"{step} {model.name}", "the server never answered")
                return
            self.report.run(f"loadtest {model.name}", lambda: self.loadtest(model, forward))
        finally:
            forward.close()
        self.report.run(f"hpa {model.name}", lambda: self.hpa(model))

    # --- steps: each returns its summary detail or raises StepFailed / Skipped ---------------

    def up(self) -> str:
        argv = ["pulumi", "up", "--yes", "--stack", self.stack, *self.policy_args]
        code = _run(argv).returncode
        if code != 0:
            raise StepFailed(f"pulumi up exited {code} (its output is above)")
        return "applied with the policy pack"

    def outputs(self) -> str:
        outputs = self._pulumi_json("stack", "output", "--json", "--stack", self.stack)
        self.models = models_in(outputs)
        if not self.models:
            raise StepFailed("the stack exports no model ({namespace, bucket, ...} per model)")
        kubeconfig = self._pulumi_json("stack", "output", "kubeconfig", "--json", "--show-secrets", "--stack", self.stack, secret=True)
        # Owner-only, in a temporary folder removed at exit: it is the cluster's credentials.
        descriptor = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(kubeconfig if isinstance(kubeconfig, str) else json.dumps(kubeconfig))
        return f"cluster {outputs.get('clusterName', '?')}: " + ", ".join(f"{m.name} in {m.namespace}" for m in self.models)

    def wait(self, model: Model, forward: PortForward) -> str:
        budget = startup_seconds(self._kubectl_json("-n", model.namespace, "get", "deployment", SERVER))
        started = time.monotonic()
        while True:
            forward.ensure()
            try:
                if httpx.get(forward.url + facts.VLLM_HEALTH_PATH, timeout=5).status_code == 200:
                    return f"{facts.VLLM_HEALTH_PATH} answered after {time.monotonic() - started:.0f}s"
            except httpx.HTTPError:
                pass  # not forwarding yet, or no ready pod behind the Service: try again
            if time.monotonic() - started >= budget:
                detail = forward.last_error()
                message = f"no answer on {facts.VLLM_HEALTH_PATH} within {budget:.0f}s (the startup probe's allowance)"
                raise StepFailed(message + (f"; port-forward: {detail}" if detail else ""))
            time.sleep(POLL_SECONDS)

    def loadtest(self, model: Model, forward: PortForward) -> str:
        env = dict(os.environ)
        if model.external and not env.get(API_KEY_ENV):
            env[API_KEY_ENV] = self._api_key()
        argv = [
            sys.executable, "-m", "loadtest", "--url", forward.url, "--concurrency", LOADTEST_CONCURRENCY,
            "--duration", f"{self.loadtest_duration:g}", "--plot", "",
        ]  # fmt: skip
        code = _run(argv, env=env).returncode
        if code != 0:
            raise StepFailed(f"python -m loadtest exited {code} (its report is above)")
        return f"concurrency {LOADTEST_CONCURRENCY}, {self.loadtest_duration:g}s per step"

    def hpa(self, model: Model) -> str:
        started = time.monotonic()
        while True:
            hpas = self._kubectl_json("-n", model.namespace, "get", "hpa").get("items") or []
            if not hpas:
                raise Skipped("no HPA: the model does not autoscale")
            problems = [problem for hpa in hpas if (problem := hpa_problem(hpa))]
            if not problems:
                values = (current_value(m) for hpa in hpas for m in hpa["status"]["currentMetrics"])
                return "current metric " + ", ".join(v for v in values if v is not None)
            if time.monotonic() - started >= self.hpa_timeout:
                raise StepFailed("; ".join(problems))
            time.sleep(POLL_SECONDS)

    def preview(self) -> str:
        argv = ["pulumi", "preview", "--expect-no-changes", "--diff", "--stack", self.stack, *self.policy_args]
        code = _run(argv).returncode
        if code != 0:
            raise StepFailed(f"pulumi preview --expect-no-changes exited {code}: a second run would change the stack (the diff is above)")
        return "a second run changes nothing"

    def destroy(self) -> str:
        # Buckets are never force-destroyed, so the weights and compiled graphs go first. Read
        # afresh: the outputs step may not have run.
        try:
            buckets = [m.bucket for m in models_in(self._pulumi_json("stack", "output", "--json", "--stack", self.stack)) if m.bucket]
        except StepFailed:
            buckets = []
        problems = []
        for bucket in buckets:
            # A bucket that was never created, or is empty, has nothing to remove.
            listing = _run(["gcloud", "storage", "ls", f"gs://{bucket}"], capture=True)
            if not (listing.returncode == 0 and listing.stdout.strip()):
                continue
            if _run(["gcloud", "storage", "rm", f"gs://{bucket}/**"]).returncode != 0:
                problems.append(f"could not empty gs://{bucket}")
        code = _run(["pulumi", "destroy", "--yes", "--stack", self.stack]).returncode
        if code != 0:
            problems.append(f"pulumi destroy exited {code}: resources are left (docs/operating.md, 'Tear down')")
        if problems:
            raise StepFailed("; ".join(problems))
        return f"destroyed; emptied {len(buckets)} bucket(s) first"

    # --- tools ------------------------------------------------------------------------------

    def _pulumi_json(self, *args: str, secret: bool = False) -> Any:
        result = _run(["pulumi", *args], capture=True)
        # Nothing from a --show-secrets call is repeated: its output is the secret.
        command = "pulumi " + " ".join(args)
        if result.returncode != 0:
            raise StepFailed(f"{command} exited {result.returncode}" + ("" if secret else f": {_last_line(result.stderr)}"))
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as error:
            raise StepFailed(f"{command} did not print JSON") from error

    def _kubectl_json(self, *args: str) -> dict[str, Any]:
        result = _run([*self.kubectl, *args, "-o", "json"], capture=True)
        if result.returncode != 0:
            raise StepFailed(f"kubectl {' '.join(args)} exited {result.returncode}: {_last_line(result.stderr)}")
        try:
            document = json.loads(result.stdout)
        except json.JSONDecodeError as error:
            raise StepFailed(f"kubectl {' '.join(args)} did not print JSON") from error
        return document if isinstance(document, dict) else {}

    def _api_key(self) -> str:
        result = _run(["pulumi", "config", "get", "tpu-serving:apiKey", "--stack", self.stack], capture=True)
        if result.returncode != 0 or not result.stdout.strip():
            raise StepFailed(f"an external model needs the API key: set {API_KEY_ENV}, or the stack secret tpu-serving:apiKey")
        return result.stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        policy_config = check_stack(args.stack, args.keep)
        preflight(os.environ)
    except Refusal as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return tool_cli.EXIT_BAD_INPUT
    with tempfile.TemporaryDirectory(prefix="e2e-") as workdir:
        run = EndToEnd(args, policy_config, Path(workdir))
        try:
            run.run()
        except KeyboardInterrupt:
            print(f"\n{PROG}: interrupted", file=sys.stderr)
            return tool_cli.EXIT_INTERRUPTED
        finally:
            print("\n" + "\n".join(run.report.lines(args.stack)), flush=True)
    return tool_cli.EXIT_FINDING if run.report.failed else tool_cli.EXIT_OK
