"""`python -m offline_plan.bench`: how fast the offline plan is, as ratios that mean the same on
a slow and a fast machine. Measures and prints; asserts nothing.

(a) the dev stack's whole plan (`python -m offline_plan --stack dev`) against a bare
    `import pulumi, pulumi_gcp, pulumi_kubernetes`, each a fresh interpreter; target <= 3x.
(b) the program under the mock monitor for a generated 20-model stack against a 1-model stack,
    each in a fresh interpreter (nothing cached from the run before); target <= 2x.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import tool_cli

ROOT = Path(__file__).resolve().parent.parent
PLAN_COMMAND = (sys.executable, "-m", "offline_plan", "--stack", "dev")
BARE_IMPORT = (sys.executable, "-c", "import pulumi, pulumi_gcp, pulumi_kubernetes")
PLAN_TARGET = 3.0
SCALE_TARGET = 2.0
SCALE_MODELS = (1, 20)
# The smallest real serving shape: an 8B model on one v6e chip, repeated under distinct names.
BENCH_MODEL: dict[str, Any] = {
    "hfId": "meta-llama/Llama-3.1-8B",
    "generation": "v6e",
    "topology": "1x1",
    "maxModelLen": 4096,
    "concurrency": 16,
    "minReplicas": 1,
    "maxReplicas": 1,
}
BENCH_CLUSTER: dict[str, Any] = {
    "name": "llm-bench",
    "mode": "standard",
    "zones": ["us-east5-b"],
    "releaseChannel": "REGULAR",
    "deletionProtection": False,
}
# Runs inside each fresh interpreter: the program's time alone, without interpreter start-up.
TIME_PROGRAM = """
import json, sys, time
from pathlib import Path
from offline_plan.harness import run_program
start = time.perf_counter()
run = run_program(sys.argv[1], program=Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - start, "resources": len(run.registrations)}))
"""


class MeasurementFailed(RuntimeError):
    pass


def _run(command: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stderr.strip() or done.stdout.strip()).splitlines()[-3:])
        raise MeasurementFailed(f"`{shlex.join(command)}` exited {done.returncode}" + (f": {tail}" if tail else ""))
    return done.stdout


def time_command(command: Sequence[str], runs: int, cwd: Path = ROOT) -> list[float]:
    """Wall-clock seconds of `runs` runs of `command`, each a fresh process."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        _run(command, cwd)
        times.append(time.perf_counter() - start)
    return times


def write_bench_project(directory: Path, models: Sequence[int]) -> Path:
    """A copy of the project with stacks bench<N> serving N small models each; returns its program.
    The components are linked, not copied, so the bench always runs the current code."""
    for name in ("__main__.py", "Pulumi.yaml"):
        shutil.copy2(ROOT / name, directory / name)
    (directory / "components").symlink_to(ROOT / "components", target_is_directory=True)
    for count in models:
        config = {
            "gcp:project": "my-llm-bench",
            "gcp:region": "us-east5",
            "tpu-serving:cluster": BENCH_CLUSTER,
            "tpu-serving:protectData": False,
            "tpu-serving:models": [{"name": f"model-{index:02d}", **BENCH_MODEL} for index in range(1, count + 1)],
        }
        (directory / f"Pulumi.bench{count}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return directory / "__main__.py"


def time_program(program: Path, stack: str, runs: int) -> tuple[list[float], int]:
    """Seconds `run_program` takes for `stack`, each run in a fresh interpreter, and the number of
    resources it registered."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    times, resources = [], 0
    for _ in range(runs):
        # The project's directory as cwd, so `import components` finds its link, as the CLI would.
        result = json.loads(_run([sys.executable, "-c", TIME_PROGRAM, stack, str(program)], program.parent, env).strip().splitlines()[-1])
        times.append(float(result["seconds"]))
        resources = int(result["resources"])
    return times, resources


@dataclass(frozen=True)
class Comparison:
    name: str
    measured: str
    baseline: str
    measured_seconds: list[float]
    baseline_seconds: list[float]
    target: float

    @property
    def ratio(self) -> float:
        return statistics.median(self.measured_seconds) / statistics.median(self.baseline_seconds)

    @property
    def met(self) -> bool:
        return self.ratio <= self.target


def render(comparisons: Sequence[Comparison], failures: Sequence[str], runs: int) -> str:
    header = ("comparison", "measured (median)", "baseline (median)", "ratio", "target", "met")
    rows = [
        (
            c.name,
            f"{c.measured}: {statistics.median(c.measured_seconds):.2f} s",
            f"{c.baseline}: {statistics.median(c.baseline_seconds):.2f} s",
            f"{c.ratio:.2f}x",
            f"<= {c.target:g}x",
            "yes" if c.met else "NO",
        )
        for c in comparisons
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"offline plan speed, {runs} runs each, fresh interpreters", ""]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines += [f"not measured: {failure}" for failure in failures]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_cli.ArgumentParser(prog="python -m offline_plan.bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs of each command; the median counts (default 5)")
    parser.add_argument("--plan-command", default=shlex.join(PLAN_COMMAND), help="the plan command to time (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    comparisons: list[Comparison] = []
    failures: list[str] = []
    try:
        plan = time_command(shlex.split(args.plan_command), args.runs)
        bare = time_command(BARE_IMPORT, args.runs)
        comparisons.append(Comparison("dev plan vs bare import", "plan dev", "import SDKs", plan, bare, PLAN_TARGET))
    except MeasurementFailed as error:
        failures.append(f"dev plan: {error}")
    with tempfile.TemporaryDirectory(prefix="offline-plan-bench-") as tmp:
        program = write_bench_project(Path(tmp), SCALE_MODELS)
        small, large = SCALE_MODELS
        try:
            small_times, small_resources = time_program(program, f"bench{small}", args.runs)
            large_times, large_resources = time_program(program, f"bench{large}", args.runs)
            comparisons.append(
                Comparison(
                    f"{large} models vs {small} model",
                    f"{large_resources} resources",
                    f"{small_resources} resources",
                    large_times,
                    small_times,
                    SCALE_TARGET,
                )
            )
        except MeasurementFailed as error:
            failures.append(f"model scaling: {error}")
    print(render(comparisons, failures, args.runs))
    return tool_cli.EXIT_FINDING if failures else tool_cli.EXIT_OK


if __name__ == "__main__":
    tool_cli.run(main, "offline_plan.bench")
