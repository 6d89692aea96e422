"""`make plan [STACK=dev]`: what `pulumi up` would create, with no CLI and no cloud account.

Runs the real program under the SDK's mock monitor, prints the resource tree, writes
build/<stack>/plan.json (shaped like `pulumi preview --json`) and the Kubernetes manifests,
runs the policy pack over the analyzer gRPC protocol with the stack's policy config, and
checks that a second `pulumi up` would change nothing (offline_plan/second_apply.py).
Exits 0 on a clean plan; 1 on a mandatory policy violation, a manifest the schema refuses or a
replacement on the second apply; 2 on bad input (config, stack file, stack name, policy config).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

import yaml

import tool_cli
from components.errors import ConfigError, StackFileError, for_user, mask
from offline_plan import graph, render, schemas, second_apply
from offline_plan.harness import ROOT, ProgramRun, config_position, read_stack_config, run_program
from policy_runner.config import PolicyConfigError
from policy_runner.report import render as render_policies
from policy_runner.session import PolicyPackError, PolicyPackSession, start_policy_pack
from tool_cli import EXIT_BAD_INPUT, EXIT_FINDING

# Pulumi's stack names; the name also becomes a folder under --out, so no '/' and no '..'.
STACK_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class BadInput(tool_cli.BadInput):
    """A flag whose value cannot be used: one line naming it (as a make variable under make)."""


class _Masking(io.TextIOBase):
    """Everything printed passes through errors.mask: no secret-shaped text reaches a terminal or a CI log."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_cli.ArgumentParser(prog="python -m offline_plan", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev", help="the stack whose Pulumi.<stack>.yaml to plan (default: dev)")
    parser.add_argument("--policy-config", type=Path, help="policy pack config (default: policies/config/<stack>.json)")
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="output folder (default: build/)")
    parser.add_argument("--project-dir", type=Path, default=ROOT, help="folder with Pulumi.yaml, __main__.py and the stack files")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(_Masking(sys.stdout)), contextlib.redirect_stderr(_Masking(sys.stderr)):
        try:
            return _run(args)
        except StackFileError as error:
            print(error, file=sys.stderr)
            return EXIT_BAD_INPUT
        except ConfigError as error:
            where = config_position(args.stack, error.key, args.project_dir)
            print(f"{where[0]}:{where[1]}:{where[2]}: {error}" if where else error, file=sys.stderr)
            return EXIT_BAD_INPUT
        except BadInput as error:
            print(for_user(f"error: {error}"), file=sys.stderr)
            return EXIT_BAD_INPUT
        except FileNotFoundError as error:
            print(for_user(f"error: {error}"), file=sys.stderr)
            return EXIT_BAD_INPUT
        except (PolicyPackError, PolicyConfigError) as error:
            print(f"error: policy pack: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    if not STACK_NAME_RE.fullmatch(args.stack) or ".." in args.stack:
        raise BadInput(f"--stack = {args.stack!r}: a stack name of letters, digits, '-', '_' and '.'")
    # A failed plan must not leave an earlier run's build/<stack>/ behind, looking like this one's.
    shutil.rmtree(args.out / args.stack, ignore_errors=True)
    if args.policy_config is not None and not args.policy_config.is_file():
        raise BadInput(f"--policy-config = '{args.policy_config}': no such file (default: policies/config/<stack>.json)")
    try:
        project, config, secret_keys, notes = read_stack_config(args.stack, args.project_dir)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} (--stack)") from None
    # The pack's interpreter starts on the other core while this one runs the program.
    with ThreadPoolExecutor(max_workers=1) as worker:
        program = worker.submit(run_program, args.stack, config, secret_keys, project=project, program=args.project_dir / "__main__.py")
        with start_policy_pack(project=project, stack=args.stack) as session:
            run = program.result()
            run.notes = notes
            return _plan(args, run, session)


def _plan(args: argparse.Namespace, run: ProgramRun, session: PolicyPackSession) -> int:
    print(f"Previewing update ({args.stack}) offline: mock monitor, no cloud; PLACEHOLDER-* values are computed by the cloud\n")
    print("\n".join(render.tree_lines(run)))
    print(f"\nResources:\n    + {len(run.registrations) + 1} to create\n")
    for note in run.notes:
        print(f"note: {note}")

    out = args.out / args.stack
    shutil.rmtree(out, ignore_errors=True)
    (out / "manifests").mkdir(parents=True)
    manifests = render.write_manifests(run, out / "manifests")

    cluster = next((r for r in run.registrations if r.type == graph.CLUSTER_TYPE), None)
    k8s_version = schemas.k8s_version_of(cluster.inputs.get("minMasterVersion") if cluster else None)
    # The files as written (secrets masked), not the objects before: what `kubectl apply` would get.
    problems = schemas.validate_all([yaml.safe_load(p.read_text(encoding="utf-8")) for p in manifests], k8s_version)
    errors = [p for p in problems if p.severity == "error"]
    print(f"\nManifests: {len(manifests)} validated against Kubernetes {k8s_version} (strict) and the custom-resource schemas")
    for problem in problems:
        print(f"    {problem.describe()}")

    resource_graph = graph.build_graph(run.registrations)
    path = graph.critical_path(resource_graph)
    print(f"\nCritical path {path.describe()}")
    for line in graph.describe_waits(graph.needless_waits(resource_graph), resource_graph):
        print(f"    {line}")
    try:
        pictures = graph.write_graph(resource_graph, path, out)
    except graph.GraphvizError as error:
        pictures = [out / "graph.dot"]
        print(f"note: no graph.svg: {error}")
    if graph.dot_binary() is None:
        print(f"note: no graph.svg: Graphviz's `{graph.DOT}` is not on PATH (apt-get install graphviz); {out / 'graph.dot'} has the graph")

    config = args.policy_config or args.project_dir / "policies" / "config" / f"{args.stack}.json"
    session.configure(config if config.exists() else None)
    report = session.analyze(run.policy_resources())
    print("\n" + render_policies(report))
    policy = {
        "pack": report.pack.name,
        "config": _shown_path(config) if config.exists() else None,
        "violations": [
            {"policy": v.policy_name, "enforcementLevel": v.enforcement_level, "urn": v.urn, "message": v.detail}
            for v in sorted(report.violations, key=lambda v: (v.policy_name, v.urn))
        ],
    }
    stability = second_apply.check(args.stack, program=args.project_dir / "__main__.py")
    print("\n".join(stability.lines()) + "\n")
    document = render.plan_document(run, policy, run.notes)
    document["secondApply"] = [{"urn": c.urn, "op": c.op, "path": c.path, "before": c.before, "after": c.after} for c in stability.changes]
    render.write_json(document, out / "plan.json")
    print(f"wrote {out / 'plan.json'}, {len(manifests)} manifests under {out / 'manifests'}, {', '.join(p.name for p in pictures)}")
    # A replacement on the second apply loses a TPU slice (or the cluster) for nothing.
    return EXIT_FINDING if errors or stability.replacements else report.exit_code


def _shown_path(path: Path) -> str:
    """The policy config as recorded in plan.json: relative to the project when inside it (as
    `make plan` passes it), so the same input gives the same bytes on any machine."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


if __name__ == "__main__":
    tool_cli.run(main, "offline_plan")
