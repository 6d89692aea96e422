"""Serve open LLMs with vLLM on GKE TPUs: one stack, from config alone."""

import pulumi
import pulumi_gcp as gcp

from components.cluster import Cluster, ClusterArgs
from components.config import load_stack_config, read_pulumi_config, read_secrets
from components.lws_controller import LwsController, LwsControllerArgs
from components.metrics_adapter import MetricsAdapter, MetricsAdapterArgs
from components.project_apis import ProjectApis, ProjectApisArgs
from components.served_model import ServedModel, ServedModelArgs, StandardCluster

config = load_stack_config(read_pulumi_config(), pulumi.get_stack())
secrets = read_secrets(config)

apis = ProjectApis("apis", ProjectApisArgs(config.project))
project_number = gcp.organizations.get_project_output(project_id=config.project, opts=pulumi.InvokeOutputOptions(depends_on=[apis])).number
cluster = Cluster(config.cluster.name, ClusterArgs(config.project, config.region, config.cluster, apis))
on_cluster = pulumi.ResourceOptions(providers=[cluster.provider])
adapter = (
    MetricsAdapter("metrics-adapter", MetricsAdapterArgs(config.project, project_number, cluster.workload_identity_pool), on_cluster)
    if any(m.autoscaled for m in config.models)
    else None
)
standard = None if config.cluster.autopilot else StandardCluster(config.region, cluster.name, cluster.node_service_account)
# Once per cluster, only when a model spans several TPU VMs (a LeaderWorkerSet per such model).
lws = (
    LwsController(
        "lws-controller",
        LwsControllerArgs(config.project, cluster.network_id, cluster.node_service_account, cluster.control_plane_cidr),
        on_cluster,
    )
    if any(m.multi_host for m in config.models)
    else None
)

for model in config.models:
    served = ServedModel(
        model.name,
        ServedModelArgs(
            model=model,
            stack=config.stack,
            project=config.project,
            project_number=project_number,
            bucket_name=config.bucket_name(model),
            bucket_location=config.bucket.location,
            protect_data=config.protect_data,
            standard=standard,
            hf_token=secrets.hf_token,
            api_key=secrets.api_key,
            apis=apis,
            workload_identity_pool=cluster.workload_identity_pool,
            metrics_adapter=adapter.ready if adapter else None,
            lws_controller=lws.ready if lws else None,
        ),
        on_cluster,
    )
    pulumi.export(model.name, served.summary)

pulumi.export("clusterName", cluster.name)
pulumi.export("clusterEndpoint", cluster.endpoint)
pulumi.export("kubeconfig", cluster.kubeconfig)
