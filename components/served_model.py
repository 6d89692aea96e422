"""ServedModel: everything one model needs, in its own namespace: the model cache bucket and the
identity its pods use, the TPU node pool (GKE Standard), the vLLM server and its autoscaling."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import facts, tokens
from components.autoscaling import Autoscaling, AutoscalingArgs
from components.config import ModelConfig
from components.model_cache_bucket import ModelCacheBucket, ModelCacheBucketArgs
from components.specs.namespace import ModelNamespace, bucket_labels, model_labels, namespace_metadata
from components.tpu_node_pool import TpuNodePool, TpuNodePoolArgs, slice_placement
from components.vllm_multihost_server import VllmMultiHostServer, VllmMultiHostServerArgs
from components.vllm_server import VllmServer, VllmServerArgs

SERVICE_ACCOUNT = "vllm"
# These resources were created at the stack's top level before ServedModel grouped them; the alias
# lets `pulumi up` on an existing stack adopt them under their new URN instead of replacing them.
# Their children need none: the engine derives a child's old URN from its parent's (inherited aliases).
WAS_TOP_LEVEL = pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)


@dataclass(frozen=True)
class StandardCluster:
    """What a TPU node pool of a GKE Standard cluster is placed with. Autopilot has none: it
    provisions the nodes from the pods' selectors."""

    region: str
    cluster_name: pulumi.Input[str]
    node_service_account: pulumi.Input[str]


@dataclass(frozen=True)
class ServedModelArgs:
    model: ModelConfig
    stack: str
    project: str
    project_number: pulumi.Input[str]
    bucket_name: str
    bucket_location: str
    protect_data: bool
    # None on Autopilot.
    standard: StandardCluster | None
    hf_token: pulumi.Input[str]
    # The stack's API key (a secret); only an externally exposed model mounts it.
    api_key: pulumi.Input[str] | None
    # The project's APIs (ProjectApis), the cluster's Workload Identity pool, and the metrics adapter
    # an autoscaled model's HPA reads its metric through (None when no model of the stack scales).
    apis: pulumi.Resource
    workload_identity_pool: pulumi.Resource
    metrics_adapter: pulumi.Resource | None
    # The LeaderWorkerSet controller (LwsController.ready) a multi-host model's server waits for.
    lws_controller: pulumi.Resource | None = None


class ServedModel(pulumi.ComponentResource):
    summary: dict[str, pulumi.Input[str]]

    def __init__(self, name: str, args: ServedModelArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(tokens.SERVED_MODEL, name, None, opts)
        model, labels = args.model, model_labels(args.model, args.stack)
        moved = pulumi.ResourceOptions(parent=self, aliases=[WAS_TOP_LEVEL])
        created = k8s.core.v1.Namespace(name, metadata=namespace_metadata(model, args.stack), opts=moved)
        namespace = ModelNamespace(model.namespace, created)
        cache = ModelCacheBucket(
            name,
            ModelCacheBucketArgs(
                project=args.project,
                project_number=args.project_number,
                bucket_name=args.bucket_name,
                location=args.bucket_location,
                namespace=namespace,
                service_account_name=SERVICE_ACCOUNT,
                protect=args.protect_data,
                labels=bucket_labels(model, args.stack),
                workload_identity_pool=args.workload_identity_pool,
                apis=args.apis,
            ),
            moved,
        )
        pool = None
        if args.standard is not None:
            standard = args.standard
            pool_args = TpuNodePoolArgs(args.project, standard.region, standard.cluster_name, standard.node_service_account, model)
            pool = TpuNodePool(name, pool_args, moved)
        server: VllmServer | VllmMultiHostServer
        if model.multi_host:
            if pool is None or args.lws_controller is None:
                raise ValueError(f"model {model.name} is multi-host: it needs GKE Standard and the LeaderWorkerSet controller")
            server = VllmMultiHostServer(
                name,
                VllmMultiHostServerArgs(
                    model=model,
                    namespace=namespace,
                    service_account_name=cache.service_account_name,
                    bucket_name=cache.bucket_name,
                    placement=pool.placement,
                    hf_token=args.hf_token,
                    api_key=args.api_key,
                    labels=labels,
                    start_after=[cache.grant, pool, args.lws_controller],
                ),
                moved,
            )
            scaled: pulumi.Resource = server.leader_worker_set
            scaled_name: pulumi.Input[str] = server.lws_name
            kind = (facts.LWS_API_VERSION, facts.LWS_KIND)
        else:
            server = VllmServer(
                name,
                VllmServerArgs(
                    model=model,
                    namespace=namespace,
                    service_account_name=cache.service_account_name,
                    bucket_name=cache.bucket_name,
                    placement=pool.placement if pool else slice_placement(model, autopilot=True),
                    autopilot=args.standard is None,
                    hf_token=args.hf_token,
                    api_key=args.api_key,
                    labels=labels,
                    start_after=[cache.grant, *([pool] if pool else [])],
                ),
                moved,
            )
            scaled, kind = server.deployment, ("apps/v1", "Deployment")
            scaled_name = server.deployment.metadata.apply(lambda m: m["name"])
        if model.autoscaled:
            if args.metrics_adapter is None:
                raise ValueError(f"model {model.name} is autoscaled: the stack needs the metrics adapter")
            Autoscaling(name, AutoscalingArgs(model, model.namespace, scaled, scaled_name, args.metrics_adapter, labels, *kind), moved)
        self.summary = {
            "namespace": model.namespace,
            "bucket": cache.bucket_name,
            "slice": f"{model.generation.name} {model.slice.topology} on {model.slice.machine_type}",
            "serviceAddress": server.service_address,
            "curl": server.curl,
        }
        self.register_outputs(self.summary)
