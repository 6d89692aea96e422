"""The one copy of the Pulumi type tokens the program, the policy pack, the planners and the tests
name by string: the providers' resource types (pulumi-gcp, pulumi-kubernetes), the engine's own,
and this project's components. The program builds resources through the SDK classes; everything
that reads a registration, a plan step or a policy resource back compares its type to these.
"""

from __future__ import annotations

# --- The engine -----------------------------------------------------------------------------------
STACK = "pulumi:pulumi:Stack"
PROVIDER_PREFIX = "pulumi:providers:"
GCP_PROVIDER = "pulumi:providers:gcp"
KUBERNETES_PROVIDER = "pulumi:providers:kubernetes"

# --- pulumi-gcp -----------------------------------------------------------------------------------
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
PROJECT_SERVICE = "gcp:projects/service:Service"
PROJECT_IAM_MEMBER = "gcp:projects/iAMMember:IAMMember"
NETWORK = "gcp:compute/network:Network"
SUBNETWORK = "gcp:compute/subnetwork:Subnetwork"
ROUTER = "gcp:compute/router:Router"
FIREWALL = "gcp:compute/firewall:Firewall"
ROUTER_NAT = "gcp:compute/routerNat:RouterNat"
SERVICE_ACCOUNT = "gcp:serviceaccount/account:Account"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_IAM_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
GET_PROJECT = "gcp:organizations/getProject:getProject"  # an invoke, not a resource

# --- pulumi-kubernetes ----------------------------------------------------------------------------
KUBERNETES_PREFIX = "kubernetes:"
KUBERNETES_YAML_PREFIX = "kubernetes:yaml"  # the provider's YAML/kustomize wrappers, not objects
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
K8S_SERVICE = "kubernetes:core/v1:Service"
K8S_SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
SECRET = "kubernetes:core/v1:Secret"
NAMESPACE = "kubernetes:core/v1:Namespace"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
API_SERVICE = "kubernetes:apiregistration.k8s.io/v1:APIService"
POD_MONITORING = "kubernetes:monitoring.googleapis.com/v1:PodMonitoring"
LEADER_WORKER_SET = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
# pulumi-kubernetes yaml/v2 ConfigFile: a component the provider expands (one registration under mocks).
CONFIG_FILE = "kubernetes:yaml/v2:ConfigFile"

# --- This project's components (tpu-serving:index:*) ----------------------------------------------
CLUSTER_COMPONENT = "tpu-serving:index:Cluster"
PROJECT_APIS = "tpu-serving:index:ProjectApis"
TPU_NODE_POOL = "tpu-serving:index:TpuNodePool"
MODEL_CACHE_BUCKET = "tpu-serving:index:ModelCacheBucket"
METRICS_ADAPTER = "tpu-serving:index:MetricsAdapter"
VLLM_SERVER = "tpu-serving:index:VllmServer"
AUTOSCALING = "tpu-serving:index:Autoscaling"
SERVED_MODEL = "tpu-serving:index:ServedModel"
LWS_CONTROLLER = "tpu-serving:index:LwsController"
VLLM_MULTIHOST_SERVER = "tpu-serving:index:VllmMultiHostServer"
