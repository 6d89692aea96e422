"""Reading resources by their fields, the same way whether they came from this program, from a
`kubernetes:yaml/v2:ConfigFile`, or from a YAML file given to `make check`.

Properties arrive as the SDK's proxies (camelCase; numbers as floats once they have crossed the
wire) or, in tests, as plain dicts. `plain` turns either into dicts and lists and replaces every
value that is unknown during preview with UNKNOWN, so that a check can skip what it cannot decide
instead of the SDK turning the whole policy into an advisory "can't run" diagnostic.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pulumi_policy import PolicyResource, proxy
from pulumi_policy.proxy import UnknownValueError

from components import facts, tokens
from components.coerce import whole_number


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown during preview>"


UNKNOWN: Final = _Unknown()
# The SDK's placeholders for values unknown during preview, one per kind (UNKNOWN_STRING_VALUE, ...).
_SENTINELS = frozenset(value for name, value in vars(proxy).items() if name.startswith("UNKNOWN_") and name.endswith("_VALUE"))
# Workloads whose pods are built to span the VMs of a multi-host slice together, and the field that
# says how many pods (VMs) one slice takes.
MULTI_HOST_KINDS = (
    "LeaderWorkerSet (leaderWorkerTemplate.size)",
    "JobSet (replicatedJobs[].template.spec.parallelism)",
    "Indexed Job (completionMode: Indexed, parallelism)",
    "Ray worker group (numOfHosts)",
)
# Every kind whose pod templates the pod-level policies read (README "Policy pack" lists them).
POD_KINDS = (
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "JobSet",
    "LeaderWorkerSet",
    "RayCluster",
    "RayService",
    "RayJob",
)
# Where a Ray cluster's spec sits in each KubeRay kind.
_RAY_CLUSTER_SPEC = {"RayCluster": ("spec",), "RayService": ("spec", "rayClusterConfig"), "RayJob": ("spec", "rayClusterSpec")}
# Placeholders of templated manifests (envsubst, Helm, "<your-image>"): values only known once rendered.
# Kubernetes' own $(VAR) (expanded from the container's env) is not one of them.
TEMPLATE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|<[A-Za-z][^<>]*>|\{\{[^}]*\}\}")
_ENV_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
# vLLM's single-dash aliases for the flags the pack reads.
_FLAG_ALIASES = {"tp": "tensor-parallel-size", "pp": "pipeline-parallel-size"}


def plain(value: Any) -> Any:
    if isinstance(value, str):
        return UNKNOWN if value in _SENTINELS else value
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key in value:
            try:
                result[key] = plain(value[key])
            except UnknownValueError:
                result[key] = UNKNOWN
        return result
    if isinstance(value, Sequence):
        items: list[Any] = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def is_template(value: Any) -> bool:
    return isinstance(value, str) and TEMPLATE.search(value) is not None


def untemplated(value: Any) -> Any:
    """Placeholders of a templated manifest (`${IMAGE_URI}`, `<your-image>`) are values nobody knows
    yet: UNKNOWN, so that every policy skips them as it skips values unknown during preview."""
    if isinstance(value, dict):
        # command and args are often shell scripts, whose $VAR and ${VAR} the shell expands at run time.
        return {k: v if k in ("command", "args") else untemplated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untemplated(v) for v in value]
    return UNKNOWN if is_template(value) else value


def at(value: Any, *path: str | int) -> Any:
    """value[path...]: None where a step is missing, UNKNOWN where a step is unknown."""
    for key in path:
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and 0 <= key < len(value) else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def whole(value: Any) -> Any:
    """A count as int (Kubernetes quantities and the wire's floats included), UNKNOWN, or None."""
    if value is UNKNOWN:
        return UNKNOWN
    return whole_number(value, integral_floats=True)


def urn_name(urn: str) -> str:
    return urn.split("::", 3)[-1]


def same_namespace(a: Any, b: Any) -> bool | None:
    """Objects without a namespace are taken to be applied to the same one (`kubectl -n`)."""
    if a is UNKNOWN or b is UNKNOWN:
        return None
    return (a or "") == (b or "")


@dataclass(frozen=True)
class KubeObject:
    urn: str
    kind: str
    body: dict[str, Any]
    dependencies: frozenset[str] = frozenset()

    @property
    def name(self) -> Any:
        return at(self.body, "metadata", "name")

    @property
    def namespace(self) -> Any:
        return at(self.body, "metadata", "namespace")

    def annotation(self, key: str) -> Any:
        return at(self.body, "metadata", "annotations", key)

    @property
    def label(self) -> str:
        name = self.name if isinstance(self.name, str) else urn_name(self.urn)
        namespace = self.namespace
        return f"{self.kind} {namespace}/{name}" if isinstance(namespace, str) and namespace else f"{self.kind} {name}"


def kube_object(resource_type: str, props: Any, urn: str, dependencies: Iterable[str] = ()) -> KubeObject | None:
    """A Kubernetes object from its type token and properties; the kind comes from the object itself."""
    if not resource_type.startswith(tokens.KUBERNETES_PREFIX):
        return None
    body = untemplated(plain(props))
    kind = body.get("kind")
    return KubeObject(urn, kind if isinstance(kind, str) else resource_type.rsplit(":", 1)[-1], body, frozenset(dependencies))


def stack_objects(resources: Sequence[PolicyResource]) -> list[KubeObject]:
    objects = []
    for resource in resources:
        linked = {d.urn for d in resource.dependencies}
        linked.update(d.urn for deps in resource.property_dependencies.values() for d in deps)
        obj = kube_object(resource.resource_type, resource.props, resource.urn, linked)
        if obj is not None:
            objects.append(obj)
    return objects


@dataclass(frozen=True)
class Flags:
    """Command-line flags of a container, from command and args, in `--f=v` and `--f v` forms.
    `$(VAR)` is expanded from the container's literal env as the kubelet does; a reference to a
    variable set some other way (a ConfigMap, envFrom) makes that value UNKNOWN."""

    values: Mapping[str, Any]
    positional: tuple[str, ...]
    complete: bool  # False when some token is unknown, so an absent flag may still be there

    def get(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        return None if self.complete else UNKNOWN

    @classmethod
    def parse(cls, command: Any, args: Any, env: Mapping[str, Any] | None = None) -> Flags:
        tokens: list[Any] = []
        complete = True
        for part in (command, args):
            if part is UNKNOWN:
                complete = False
            tokens.extend(_expanded(t, env or {}) for t in listed(part))
        values: dict[str, Any] = {}
        positional: list[str] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            index += 1
            if isinstance(token, tuple):
                values[token[0]] = UNKNOWN
                continue
            if not isinstance(token, str):
                complete = False
                continue
            value: Any
            if token.startswith("--"):
                name, has_value, value = token[2:].partition("=")
            elif token.startswith("-") and token[1:] in _FLAG_ALIASES:
                name, has_value, value = _FLAG_ALIASES[token[1:]], "", ""
            else:
                positional.append(token)
                continue
            following = tokens[index] if index < len(tokens) else None
            if not has_value and (following is UNKNOWN or (isinstance(following, str) and not following.startswith("-"))):
                value = following
                index += 1
            values[name.replace("_", "-")] = value
        return cls(values, tuple(positional), complete)


def _expanded(token: Any, env: Mapping[str, Any]) -> Any:
    """A token with its $(VAR) references replaced; `--flag=UNKNOWN` stays a flag with an unknown value."""
    if not isinstance(token, str) or "$(" not in token:
        return token
    unresolved = False

    def value(match: re.Match[str]) -> str:
        nonlocal unresolved
        found = env.get(match.group(1))
        if isinstance(found, str):
            return found
        unresolved = True
        return match.group(0)

    text = _ENV_REFERENCE.sub(value, token)
    if not unresolved:
        return text
    if text.startswith("--") and "=" in text:
        return (text[2:].partition("=")[0].replace("_", "-"), UNKNOWN)
    return UNKNOWN


@dataclass(frozen=True)
class PodTemplate:
    owner: KubeObject
    path: str
    labels: Any
    spec: dict[str, Any]
    several: bool = False  # the owner has more than one pod template (leader and workers, head and worker groups)
    # How many pods of this template together take one TPU slice: 1 for a pod that must hold its
    # slice alone, more for a multi-host group, UNKNOWN when the count cannot be read.
    hosts: Any = 1

    @property
    def label(self) -> str:
        return f"{self.owner.label} ({self.path})" if self.several else self.owner.label

    @property
    def multi_host(self) -> bool:
        return self.hosts != 1

    def selector(self, label: str) -> Any:
        """A node label the pod requires: from nodeSelector, or from a required node affinity that
        pins the label to one value (Standard clusters accept either; Autopilot wants nodeSelector)."""
        value = at(self.spec, "nodeSelector", label)
        if value is not None:
            return value
        terms = at(self.spec, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
        if terms is UNKNOWN:
            return UNKNOWN
        pinned = [
            e["values"][0]
            for term in listed(terms)
            for e in listed(at(term, "matchExpressions"))
            if isinstance(e, dict) and e.get("key") == label and e.get("operator") == "In" and len(listed(e.get("values"))) == 1
        ]
        return pinned[0] if len(pinned) == 1 and len(listed(terms)) == 1 else None

    @property
    def compute_class(self) -> Any:
        return self.selector(facts.COMPUTE_CLASS_LABEL)

    @property
    def tolerates_tpu(self) -> Any:
        """Whether the pod tolerates the google.com/tpu taint of TPU nodes itself (without requesting chips)."""
        tolerations = self.spec.get("tolerations")
        if tolerations is UNKNOWN:
            return UNKNOWN
        for toleration in listed(tolerations):
            if not isinstance(toleration, dict):
                continue
            key, operator, effect = toleration.get("key"), toleration.get("operator") or "Equal", toleration.get("effect")
            if UNKNOWN in (key, operator, effect):
                return UNKNOWN
            if effect not in (None, "", "NoSchedule"):
                continue
            if (key in (None, "") and operator == "Exists") or key == facts.TPU_RESOURCE:
                return True
        return False

    @property
    def containers(self) -> list[Container]:
        return [Container(self, c) for c in listed(self.spec.get("containers")) if isinstance(c, dict)]

    @property
    def all_containers(self) -> list[Container]:
        extra = [c for key in ("initContainers", "ephemeralContainers") for c in listed(self.spec.get(key)) if isinstance(c, dict)]
        return self.containers + [Container(self, c) for c in extra]

    def volume(self, name: Any) -> Any:
        return next((v for v in listed(self.spec.get("volumes")) if isinstance(v, dict) and v.get("name") == name), None)

    @property
    def tpu_chips(self) -> Any:
        """google.com/tpu of the pod: the sum over its containers; Kubernetes takes an extended
        resource's request from its limit when only the limit is given."""
        return _chips(self.spec)

    @property
    def vllm(self) -> list[Container]:
        return [c for c in self.containers if c.is_vllm]


def _chips(spec: Any) -> Any:
    total = 0
    for container in listed(at(spec, "containers")):
        chips = whole(at(container, "resources", "requests", facts.TPU_RESOURCE))
        if chips is None:
            chips = whole(at(container, "resources", "limits", facts.TPU_RESOURCE))
        if chips is UNKNOWN:
            return UNKNOWN
        total += chips or 0
    return total


def _count(value: Any, default: int = 1) -> Any:
    """A replica-like count: its default when absent, UNKNOWN when unreadable."""
    if value is None:
        return default
    number = whole(value)
    return UNKNOWN if number is None else number


def _job_hosts(job_spec: Any, indexed_only: bool) -> Any:
    """Pods of a Job that run at once: a multi-host group only when they are told apart (Indexed)."""
    mode = at(job_spec, "completionMode")
    if mode is UNKNOWN:
        return UNKNOWN
    if indexed_only and mode != "Indexed":
        return 1
    return _count(at(job_spec, "parallelism"))


def _templates(obj: KubeObject) -> Iterator[tuple[str, Any, Any]]:
    """(path, pod template, hosts) of every pod template of an object."""
    body, kind = obj.body, obj.kind
    if kind == "Pod":
        yield "spec", body, 1
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        yield "spec.template", at(body, "spec", "template"), 1
    elif kind == "Job":
        yield "spec.template", at(body, "spec", "template"), _job_hosts(at(body, "spec"), indexed_only=True)
    elif kind == "CronJob":
        job = at(body, "spec", "jobTemplate", "spec")
        yield "spec.jobTemplate.spec.template", at(job, "template"), _job_hosts(job, indexed_only=True)
    elif kind == "JobSet":
        for index, replicated in enumerate(listed(at(body, "spec", "replicatedJobs"))):
            job = at(replicated, "template", "spec")
            name = at(replicated, "name")
            yield f"replicatedJobs[{name if isinstance(name, str) else index}]", at(job, "template"), _job_hosts(job, indexed_only=False)
    elif kind == "LeaderWorkerSet":
        group = at(body, "spec", "leaderWorkerTemplate")
        size, leader, worker = _count(at(group, "size")), at(group, "leaderTemplate"), at(group, "workerTemplate")
        # The leader is one of the slice's hosts when it takes chips; a Pathways-style leader takes none.
        leader_chips = _chips(at(leader, "spec")) if isinstance(leader, dict) else _chips(at(worker, "spec"))
        hosts = UNKNOWN if UNKNOWN in (size, leader_chips) else size if leader_chips else size - 1
        if isinstance(leader, dict):
            yield "leaderTemplate", leader, hosts
        yield "workerTemplate", worker, hosts
    elif kind in _RAY_CLUSTER_SPEC:
        cluster = at(body, *_RAY_CLUSTER_SPEC[kind])
        yield "headGroupSpec", at(cluster, "headGroupSpec", "template"), 1
        for index, group in enumerate(listed(at(cluster, "workerGroupSpecs"))):
            name = at(group, "groupName")
            yield f"workerGroupSpecs[{name if isinstance(name, str) else index}]", at(group, "template"), _count(at(group, "numOfHosts"))


def pod_templates(obj: KubeObject) -> list[PodTemplate]:
    found = [(path, t, hosts) for path, t, hosts in _templates(obj) if isinstance(t, dict) and isinstance(t.get("spec"), dict)]
    labels = {"Pod": ("metadata", "labels")}
    return [
        PodTemplate(obj, path, at(t, *labels.get(obj.kind, ("metadata", "labels"))), t["spec"], len(found) > 1, hosts)
        for path, t, hosts in found
    ]


@dataclass(frozen=True)
class Container:
    pod: PodTemplate
    body: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.pod.label} container {self.body.get('name')}"

    @property
    def image(self) -> Any:
        return self.body.get("image")

    @property
    def image_tag(self) -> str | None:
        return facts.image_tag(self.image) if isinstance(self.image, str) else None

    def tpu(self, kind: str) -> Any:
        return whole(at(self.body, "resources", kind, facts.TPU_RESOURCE))

    @property
    def flags(self) -> Flags:
        literal = {str(e["name"]): e.get("value") for e in self.env if isinstance(e.get("name"), str) and "valueFrom" not in e}
        return Flags.parse(self.body.get("command"), self.body.get("args"), literal)

    @property
    def is_vllm(self) -> bool:
        image = self.image.split("@", 1)[0].rsplit("/", 1)[-1] if isinstance(self.image, str) else ""
        command = [t for t in listed(self.body.get("command")) + listed(self.body.get("args")) if isinstance(t, str)]
        return image.startswith("vllm") or any("vllm" in token for token in command)

    @property
    def served_model(self) -> Any:
        flags = self.flags
        model = flags.get("model")
        if model is None and "serve" in flags.positional[:-1]:
            return flags.positional[flags.positional.index("serve") + 1]
        return model

    @property
    def env(self) -> list[dict[str, Any]]:
        return [e for e in listed(self.body.get("env")) if isinstance(e, dict)]

    def env_value(self, name: str) -> Any:
        """The literal value of an env var; UNKNOWN when it is set some other way or cannot be read."""
        if self.body.get("env") is UNKNOWN:
            return UNKNOWN
        for entry in self.env:
            if entry.get("name") == name:
                return entry.get("value", UNKNOWN)
        return None

    @property
    def authenticated(self) -> bool | None:
        """Whether the server demands an API key; None when the manifest cannot tell."""
        flags = self.flags
        key = flags.values.get("api-key")
        if key is UNKNOWN or (isinstance(key, str) and key):
            return True
        names = [e.get("name") for e in self.env]
        if any(name in facts.VLLM_API_KEY_ENVS for name in names):
            return True
        undecided = not flags.complete or self.body.get("env") is UNKNOWN or UNKNOWN in names or bool(listed(self.body.get("envFrom")))
        return None if undecided else False

    def mount_for(self, path: str) -> tuple[dict[str, Any], str] | None:
        """The volume mount that holds `path`, and `path` relative to the mount."""
        best: tuple[dict[str, Any], str] | None = None
        for mount in listed(self.body.get("volumeMounts")):
            root = at(mount, "mountPath")
            if not isinstance(root, str):
                continue
            relative = posixpath.relpath(posixpath.normpath(path), posixpath.normpath(root))
            if not relative.startswith("..") and (best is None or len(root) > len(best[0]["mountPath"])):
                best = (mount, "" if relative == "." else relative)
        return best
