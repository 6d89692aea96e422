"""Serve open LLMs with vLLM on GKE TPUs: one stack, from config alone."""

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components import facts
from components.autoscaling import Autoscaling, AutoscalingArgs
from components.cluster import Cluster, ClusterArgs
from components.config import load_stack_config, read_pulumi_config, read_secrets
from components.metrics_adapter import MetricsAdapter, MetricsAdapterArgs
from components.model_cache_bucket import ModelCacheBucket, ModelCacheBucketArgs
from components.project_apis import ProjectApis, ProjectApisArgs
from components.tpu_node_pool import TpuNodePool, TpuNodePoolArgs, slice_placement
from components.vllm_server import VllmServer, VllmServerArgs

config = load_stack_config(read_pulumi_config(), pulumi.get_stack())
secrets = read_secrets(config)

apis = ProjectApis("apis", ProjectApisArgs(config.project))
project_number = gcp.organizations.get_project_output(project_id=config.project, opts=pulumi.InvokeOutputOptions(depends_on=[apis])).number
cluster = Cluster(config.cluster.name, ClusterArgs(config.project, config.region, config.cluster, apis))
on_cluster = pulumi.ResourceOptions(providers=[cluster.provider])
needs_adapter = any(m.autoscaled for m in config.models)
adapter = (
    MetricsAdapter("metrics-adapter", MetricsAdapterArgs(config.project, project_number, cluster.workload_identity_pool), on_cluster)
    if needs_adapter
    else None
)

for model in config.models:
    labels = {"app.kubernetes.io/part-of": "tpu-serving", "serving.tpu.dev/model": model.name, "serving.tpu.dev/stack": config.stack}
    namespace = k8s.core.v1.Namespace(
        model.name,
        metadata={"name": model.namespace, "labels": {**labels, **facts.POD_SECURITY_LABELS}},
        opts=pulumi.ResourceOptions(provider=cluster.provider),
    )
    cache = ModelCacheBucket(
        model.name,
        ModelCacheBucketArgs(
            project=config.project,
            project_number=project_number,
            bucket_name=config.bucket_name(model),
            location=config.bucket.location,
            namespace=model.namespace,
            namespace_resource=namespace,
            service_account_name="vllm",
            protect=config.protect_data,
            labels={"model": model.name, "stack": config.stack, "managed-by": "pulumi"},
            workload_identity_pool=cluster.workload_identity_pool,
            apis=apis,
        ),
        on_cluster,
    )
    pool = None
    if not config.cluster.autopilot:
        pool = TpuNodePool(
            model.name,
            TpuNodePoolArgs(config.project, config.region, cluster.name, cluster.node_service_account, model),
        )
    server = VllmServer(
        model.name,
        VllmServerArgs(
            model=model,
            namespace=model.namespace,
            namespace_resource=namespace,
            service_account_name=cache.service_account_name,
            bucket_name=cache.bucket_name,
            placement=pool.placement if pool else slice_placement(model, autopilot=True),
            autopilot=config.cluster.autopilot,
            hf_token=secrets.hf_token,
            api_key=secrets.api_key if model.exposure == "external" else None,
            labels=labels,
            start_after=[cache.grant, *([pool] if pool else [])],
        ),
        on_cluster,
    )
    if adapter is not None and model.autoscaled:
        Autoscaling(
            model.name,
            AutoscalingArgs(model, model.namespace, server.deployment, adapter.ready, labels),
            on_cluster,
        )
    pulumi.export(
        model.name,
        {
            "namespace": model.namespace,
            "bucket": cache.bucket_name,
            "slice": f"{model.generation.name} {model.slice.topology} on {model.slice.machine_type}",
            "serviceAddress": server.service_address,
            "curl": server.curl,
        },
    )

pulumi.export("clusterName", cluster.name)
pulumi.export("clusterEndpoint", cluster.endpoint)
pulumi.export("kubeconfig", cluster.kubeconfig)
