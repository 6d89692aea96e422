"""ModelCacheBucket: one model's Cloud Storage bucket for weights and compiled graphs, the
Kubernetes ServiceAccount its pods run as, and a bucket-level grant to that identity."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components import facts, tokens
from components.specs.namespace import ModelNamespace

# Read and write objects of this one bucket; nothing project-wide (the seed's second option).
BUCKET_ROLE = "roles/storage.objectUser"


@dataclass(frozen=True)
class ModelCacheBucketArgs:
    project: str
    project_number: pulumi.Input[str]
    bucket_name: str
    location: str
    namespace: ModelNamespace
    service_account_name: str
    protect: bool
    labels: dict[str, str]
    workload_identity_pool: pulumi.Resource
    apis: pulumi.Resource  # the project's APIs (ProjectApis), Cloud Storage's among them


class ModelCacheBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    service_account_name: pulumi.Output[str]
    grant: gcp.storage.BucketIAMMember

    def __init__(self, name: str, args: ModelCacheBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.MODEL_CACHE_BUCKET, name, None, opts)
        bucket = gcp.storage.Bucket(
            name,
            name=args.bucket_name,
            project=args.project,
            location=args.location,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=False,
            labels=args.labels,
            # Re-downloading 140 GB of weights and recompiling for 30 minutes is the cost of losing it.
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect, depends_on=[args.apis]),
        )
        account = k8s.core.v1.ServiceAccount(
            name,
            metadata={"name": args.service_account_name, "namespace": args.namespace.name, "labels": args.labels},
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.namespace.resource]),
        )
        # Built from names, not from the ServiceAccount; it waits only for the cluster's Workload
        # Identity pool, which IAM requires to exist, while the bucket itself waits only for its API.
        member = pulumi.Output.from_input(args.project_number).apply(
            lambda number: facts.workload_identity_member(number, args.project, args.namespace.name, args.service_account_name)
        )
        self.grant = gcp.storage.BucketIAMMember(
            name,
            bucket=bucket.name,
            role=BUCKET_ROLE,
            member=member,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.workload_identity_pool]),
        )
        self.bucket_name = bucket.name
        self.service_account_name = account.metadata.apply(lambda m: m["name"])
        self.register_outputs({"bucket": bucket.name, "serviceAccount": self.service_account_name})
