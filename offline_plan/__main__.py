"""`make plan [STACK=dev]`: what `pulumi up` would create, with no CLI and no cloud account.

Runs the real program under the SDK's mock monitor, prints the resource tree, writes
build/<stack>/plan.json (shaped like `pulumi preview --json`) and the Kubernetes manifests,
runs the policy pack over the analyzer gRPC protocol with the stack's policy config, and
checks that a second `pulumi up` would change nothing (offline_plan/second_apply.py).
Exits non-zero when the config is invalid, a mandatory policy fails or the second apply replaces a resource.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from components.errors import ConfigError
from offline_plan import graph, render, schemas, second_apply
from offline_plan.harness import ROOT, ProgramRun, read_project_name, run_program
from policy_runner.config import PolicyConfigError
from policy_runner.report import render as render_policies
from policy_runner.session import PolicyPackError, PolicyPackSession, start_policy_pack


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline_plan", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev", help="the stack whose Pulumi.<stack>.yaml to plan (default: dev)")
    parser.add_argument("--policy-config", type=Path, help="policy pack config (default: policies/config/<stack>.json)")
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="output folder (default: build/)")
    parser.add_argument("--project-dir", type=Path, default=ROOT, help="folder with Pulumi.yaml, __main__.py and the stack files")
    args = parser.parse_args(argv)

    project = read_project_name(args.project_dir)
    # The pack's interpreter starts on the other core while this one runs the program.
    with ThreadPoolExecutor(max_workers=1) as worker:
        program = worker.submit(run_program, args.stack, program=args.project_dir / "__main__.py")
        try:
            with start_policy_pack(project=project, stack=args.stack) as session:
                return _plan(args, program.result(), session)
        except ConfigError as error:
            print(error, file=sys.stderr)
            return 1
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except (PolicyPackError, PolicyConfigError) as error:
            print(f"error: policy pack: {error}", file=sys.stderr)
            return 2


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
    problems = schemas.validate_all(schemas.kubernetes_manifests(run.registrations), k8s_version)
    errors = [p for p in problems if p.severity == "error"]
    print(f"\nManifests: {len(manifests)} validated against Kubernetes {k8s_version} (strict) and the custom-resource schemas")
    for problem in problems:
        print(f"    {problem.describe()}")

    resource_graph = graph.build_graph(run.registrations)
    path = graph.critical_path(resource_graph)
    print(f"\nCritical path {path.describe()}")
    for line in graph.describe_waits(graph.needless_waits(resource_graph), resource_graph):
        print(f"    {line}")
    pictures = graph.write_graph(resource_graph, path, out)

    config = args.policy_config or args.project_dir / "policies" / "config" / f"{args.stack}.json"
    session.configure(config if config.exists() else None)
    report = session.analyze(run.policy_resources())
    print("\n" + render_policies(report))
    policy = {
        "pack": report.pack.name,
        "config": str(config.relative_to(ROOT)) if config.exists() and config.is_relative_to(ROOT) else None,
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
    return 1 if errors or stability.replacements else report.exit_code


if __name__ == "__main__":
    sys.exit(main())
