"""`python -m policy_runner check FILE.yaml|DIR|- ... [--config policies/config/prod.json]`: the
pack over plain Kubernetes YAML. Exit 0 when no mandatory violation, 1 when there is one, 2 when
the files, the config or the pack cannot be used, or when no object is of a kind the pack reads.
Objects of other kinds and template placeholders are listed as not checked."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import tool_cli
from policy_runner.config import PolicyConfigError, load_policy_config
from policy_runner.coverage import coverage
from policy_runner.manifests import PROJECT, STACK, ManifestError, load_manifests, manifest_files
from policy_runner.report import render
from policy_runner.session import POLICY_PACK, PolicyPackError, analyze


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_cli.ArgumentParser(prog="python -m policy_runner", description="Run the stack's policy pack without the Pulumi CLI.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check Kubernetes YAML files (multi-document) as one stack")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE.yaml", help="files, directories (their *.yaml, *.yml) or - for stdin")
    check.add_argument("--config", type=Path, help="a --policy-pack-config JSON file, e.g. policies/config/prod.json")
    check.add_argument("--policy-pack", type=Path, default=POLICY_PACK, help="the policy pack directory (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        files = manifest_files(args.files)
        resources = load_manifests(files)
        seen = coverage(resources)
        if not seen.checked:
            raise ManifestError(f"nothing to check: {seen.notes[0]}")
        report = analyze(resources, load_policy_config(args.config), project=PROJECT, stack=STACK, policy_pack=args.policy_pack)
    except (ManifestError, PolicyConfigError, PolicyPackError) as err:
        return tool_cli.fail(f"error: {err}")
    print(render(report, local_path=os.path.relpath(args.policy_pack), notes=seen.notes))
    advisory = len(report.violations) - len(report.mandatory)
    print(
        f"{seen.checked} of {len(resources)} objects checked, from {len(files)} files: "
        f"{len(report.mandatory)} mandatory, {advisory} advisory violations"
    )
    return report.exit_code


if __name__ == "__main__":
    tool_cli.run(main, "policy_runner")
