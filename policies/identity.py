"""Exposure and identity: who can reach the model server, and who can reach the project and its
bucket. A model server on a public address without a key, or a bucket grant that reaches every
bucket of the project, costs more than TPU hours."""

from __future__ import annotations

import ipaddress
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from components import facts, tokens
from policies.k8s import UNKNOWN, KubeObject, at, listed, plain, pod_templates, same_namespace, stack_objects

BUCKET = tokens.BUCKET
# Resource modules whose IAM grants reach every bucket below them.
ABOVE_BUCKETS = ("projects", "organizations", "folder")
PUBLIC_PRINCIPALS = ("allUsers", "allAuthenticatedUsers")


def _iam_grant(args: ResourceValidationArgs) -> tuple[Any, list[Any]] | None:
    """(role, members) of an IAM member or binding resource of any scope."""
    if not args.resource_type.rsplit(":", 1)[-1].endswith(("IAMMember", "IAMBinding")):
        return None
    props = plain(args.props)
    members = listed(props.get("members")) or [props.get("member")]
    return props.get("role"), members


def _scope(resource_type: str) -> str:
    """gcp:projects/iAMMember:IAMMember -> projects"""
    return resource_type.split(":")[1].split("/")[0] if resource_type.count(":") >= 2 else ""


# --- public-endpoint-auth (stack) ----------------------------------------------------------------
def _public(service: KubeObject) -> bool | None:
    if at(service.body, "spec", "type") != "LoadBalancer":
        return False if at(service.body, "spec", "type") is not UNKNOWN else None
    annotations = at(service.body, "metadata", "annotations")
    values = [at(annotations, key) for key in facts.INTERNAL_LB_ANNOTATIONS]
    if annotations is UNKNOWN or UNKNOWN in values:
        return None
    return facts.INTERNAL_LB_VALUE not in values


def _prefix_length(cidr: str) -> int | None:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen
    except ValueError:
        return None  # the API server rejects it; nothing is exposed through it


def _open_ranges(service: KubeObject) -> str | None:
    """Why the Service's source ranges admit the internet, None when they do not or cannot be read."""
    ranges = at(service.body, "spec", "loadBalancerSourceRanges")
    if ranges is UNKNOWN:
        return None
    if not ranges:
        return "no spec.loadBalancerSourceRanges, so every address on the internet reaches it"
    wide = [r for r in listed(ranges) if isinstance(r, str) and _prefix_length(r) == 0]
    return f"loadBalancerSourceRanges {', '.join(wide)} admit every address" if wide else None


def _unauthenticated(service: KubeObject, objects: list[KubeObject]) -> list[str]:
    """The vLLM containers behind the Service that answer without an API key."""
    selector = at(service.body, "spec", "selector")
    if not isinstance(selector, dict) or UNKNOWN in selector.values():
        return []
    found: list[str] = []
    for obj in objects:
        if same_namespace(service.namespace, obj.namespace) is not True:
            continue
        for pod in pod_templates(obj):
            if isinstance(pod.labels, dict) and all(pod.labels.get(k) == v for k, v in selector.items()):
                found.extend(c.label for c in pod.vllm if c.authenticated is False)
    return found


def validate_public_endpoint(args: StackValidationArgs, report: ReportViolation) -> None:
    objects = stack_objects(args.resources)
    for service in (o for o in objects if o.kind == "Service" and _public(o)):
        problems = [p for p in (_open_ranges(service),) if p]
        problems += [f"{label} answers without an API key" for label in _unauthenticated(service, objects)]
        if problems:
            report(
                f"{service.label} is an external LoadBalancer: {'; '.join(problems)}. Annotate it "
                f"{facts.INTERNAL_LB_ANNOTATIONS[0]}: {facts.INTERNAL_LB_VALUE}, or list client CIDRs in loadBalancerSourceRanges "
                f"and turn on vLLM's API key (--api-key, or {' / '.join(facts.VLLM_API_KEY_ENVS)}); even then "
                f"{', '.join(facts.VLLM_UNAUTHENTICATED_PATHS)} stay open to those ranges.",
                service.urn,
            )


# --- bucket-access -------------------------------------------------------------------------------
def validate_bucket(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != BUCKET:
        return
    props = plain(args.props)
    uniform, prevention = props.get("uniformBucketLevelAccess"), props.get("publicAccessPrevention")
    if uniform is not UNKNOWN and uniform is not True:
        report(
            f"Bucket {args.name}: uniformBucketLevelAccess is {uniform}; object ACLs can then grant access that IAM does "
            f"not show. Set uniformBucketLevelAccess: true.",
            None,
        )
    if prevention is not UNKNOWN and prevention != "enforced":
        report(
            f"Bucket {args.name}: publicAccessPrevention is {prevention or 'not set (inherited)'}; one allUsers grant "
            f"would publish the weights and compiled graphs. Set publicAccessPrevention: enforced.",
            None,
        )


# --- project-iam-storage-role --------------------------------------------------------------------
def validate_project_storage_role(args: ResourceValidationArgs, report: ReportViolation) -> None:
    grant = _iam_grant(args)
    scope = _scope(args.resource_type)
    if grant is None or scope not in ABOVE_BUCKETS or not isinstance(grant[0], str) or not grant[0].startswith("roles/storage."):
        return
    report(
        f"{args.resource_type.rsplit(':', 1)[-1]} {args.name}: {grant[0]} granted on the {scope.rstrip('s')} reaches every "
        f"bucket in it. Grant it on the one bucket instead (gcp.storage.BucketIAMMember).",
        None,
    )


# --- no-basic-roles ------------------------------------------------------------------------------
def validate_basic_roles(args: ResourceValidationArgs, report: ReportViolation) -> None:
    grant = _iam_grant(args)
    if grant is not None and grant[0] in facts.BASIC_ROLES:
        report(
            f"{args.resource_type.rsplit(':', 1)[-1]} {args.name}: {grant[0]} is a basic role (thousands of permissions "
            f"across every service). Grant the predefined role the member needs, e.g. roles/storage.objectUser on a bucket.",
            None,
        )


# --- no-public-principals ------------------------------------------------------------------------
def validate_public_principals(args: ResourceValidationArgs, report: ReportViolation) -> None:
    grant = _iam_grant(args)
    public = [m for m in (grant[1] if grant else []) if m in PUBLIC_PRINCIPALS]
    if grant is not None and public:
        report(
            f"{args.resource_type.rsplit(':', 1)[-1]} {args.name}: {grant[0]} granted to {', '.join(public)}, i.e. to "
            f"anyone. Grant it to the workload's own identity.",
            None,
        )


POLICIES = [
    StackValidationPolicy(
        name="public-endpoint-auth",
        description="A LoadBalancer Service that is not internal lists client source ranges and its vLLM pods require an API key.",
        validate=validate_public_endpoint,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.CRITICAL,
    ),
    ResourceValidationPolicy(
        name="bucket-access",
        description="Buckets use uniform bucket-level access and enforce public access prevention.",
        validate=validate_bucket,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="project-iam-storage-role",
        description="Cloud Storage roles are granted on the bucket, not on the project, folder or organization.",
        validate=validate_project_storage_role,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="no-basic-roles",
        description="No IAM grant uses a basic role (roles/owner, roles/editor, roles/viewer).",
        validate=validate_basic_roles,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="no-public-principals",
        description="No IAM grant to allUsers or allAuthenticatedUsers.",
        validate=validate_public_principals,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.CRITICAL,
    ),
]
