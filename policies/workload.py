"""Workload policies: what the server runs (image, vLLM version), how it scales (the compile cache
on a shared bucket, the HPA's metric) and how it gets its Hugging Face token."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from components import facts
from policies.k8s import UNKNOWN, Container, KubeObject, PodTemplate, at, kube_object, listed, pod_templates, stack_objects, whole

HPA = "HorizontalPodAutoscaler"
VLLM_METRIC = re.compile(r"vllm:[A-Za-z0-9_]+")
HF_TOKEN = re.compile(facts.HF_TOKEN_PATTERN)
MINIMUM_VERSION = "minimumVersion"
REQUIRE_DIGEST = "requireDigest"
DEFAULT_MINIMUM_VERSION = ".".join(map(str, facts.VLLM_MIN_SAFE_VERSION))


def _containers(args: ResourceValidationArgs) -> Iterator[Container]:
    obj = kube_object(args.resource_type, args.props, args.urn)
    for pod in pod_templates(obj) if obj is not None else ():
        yield from pod.all_containers


# A tag that names one build: a version number, a date stamp (20250801_0916_RC01) or a commit id.
_VERSIONED = re.compile(r"\d+\.\d+")
_DATED = re.compile(r"(?<!\d)20\d{6}(?!\d)")
_COMMIT = re.compile(r"(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}")
_FOUR_PART = re.compile(r"v?(\d+)\.(\d+)\.(\d+)\.\d+")


def repository(image: str) -> str:
    """docker.io/vllm/vllm-tpu:v0.22.0@sha256:... -> vllm/vllm-tpu"""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    name = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    for prefix in ("docker.io/", "index.docker.io/", "library/"):
        name = name.removeprefix(prefix)
    return name


def has_digest(image: str) -> bool:
    return "@sha256:" in image


def unpinned(image: str, tag: str | None) -> str | None:
    """Why an image can run a different build after a restart; None when it is a digest or a release tag."""
    if has_digest(image):
        return None
    if tag is None:
        return "has no tag (= latest)"
    if tag == "latest":
        return "uses latest"
    words = set(re.split(r"[-_.+]", tag.lower()))
    moving = [w for w in facts.MOVING_IMAGE_TAGS if w in words]
    if moving:
        return f"uses the moving tag {tag} ({moving[0]} names a channel, not a build)"
    if _VERSIONED.search(tag) or _DATED.search(tag) or _COMMIT.fullmatch(tag):
        return None
    return f"uses tag {tag}, which names no release (no version number)"


def release_version(tag: str | None) -> tuple[int, ...] | None:
    """The vLLM release in a tag: v0.22.0, 0.22.0, v0.10.1.1 (a patch of a patch counts as its base)."""
    if tag is None:
        return None
    found = facts.parse_vllm_version(tag)
    if found is None and (match := _FOUR_PART.fullmatch(tag)):
        found = tuple(int(part) for part in match.groups())
    return found


def _version(container: Container) -> tuple[int, ...] | None:
    """The vLLM version an image runs; a moving tag (or none) is at least the newest release the stack knows."""
    if not isinstance(container.image, str):
        return None
    tag = container.image_tag
    if tag is None and has_digest(container.image):
        return None
    if tag is None or unpinned(container.image, tag) is not None:
        return facts.parse_vllm_version(facts.VLLM_DEFAULT_TAG)
    return release_version(tag)


def _upgrade(image: str, version: str) -> str:
    """What to run instead, in the image's own family: the TPU or the CUDA upstream image, or the user's own build."""
    repo = repository(image)
    if repo in (facts.VLLM_IMAGE_REPOSITORY, facts.VLLM_GPU_IMAGE_REPOSITORY):
        return f"{repo}:v{version} or later"
    return f"a build of {repo} on vLLM {version} or later, tagged with that version (e.g. {repo}:v{version})"


# --- image-tag-pinned ----------------------------------------------------------------------------
def validate_image_tag(args: ResourceValidationArgs, report: ReportViolation) -> None:
    # A tag can be pushed again; only a digest names one build. Off by default: the shipped stacks
    # carry release tags because no digest of them can be read from this project's machines.
    require_digest = bool(args.get_config().get(REQUIRE_DIGEST, False))
    for container in _containers(args):
        image = container.image
        if not isinstance(image, str):
            continue  # unknown during preview, or a template placeholder
        problem = unpinned(image, container.image_tag)
        if problem is None and require_digest and not has_digest(image):
            problem = "has no digest, and this environment takes images by digest only (requireDigest)"
        if problem is None:
            continue
        repo = repository(image)
        vllm_family = repo in (facts.VLLM_IMAGE_REPOSITORY, facts.VLLM_GPU_IMAGE_REPOSITORY)
        example = f"{repo}:{facts.VLLM_DEFAULT_TAG}" if vllm_family else f"a release tag of {repo}"
        report(
            f"{container.label}: image {image} {problem}, so a pod restart can run a different server than the one tested. "
            f"Pin {example} or a digest (@sha256:...).",
            None,
        )


# --- vllm-minimum-version ------------------------------------------------------------------------
def validate_vllm_version(args: ResourceValidationArgs, report: ReportViolation) -> None:
    wanted = str(args.get_config().get(MINIMUM_VERSION, DEFAULT_MINIMUM_VERSION)).lstrip("v")
    minimum = facts.parse_vllm_version(wanted)
    assert minimum is not None, "the config schema's pattern admits versions only"
    for container in _containers(args):
        image = container.image
        if not container.is_vllm or not isinstance(image, str):
            continue
        tag = container.image_tag
        if unpinned(image, tag) is not None:
            continue  # latest, no tag or a moving tag runs the newest build; image-tag-pinned reports it
        version = release_version(tag)
        use = _upgrade(image, wanted)
        if version is None:
            why = "is pinned by digest only" if tag is None else f"has tag {tag}"
            report(
                f"{container.label}: image {image} {why}, which names no vLLM release, so the pack cannot tell whether it is "
                f"older than the minimum {wanted} ({facts.VLLM_MIN_SAFE_ADVISORY} before {DEFAULT_MINIMUM_VERSION}). Use {use} "
                f"(a digest may follow the tag: image:tag@sha256:...).",
                None,
            )
        elif version < minimum:
            advisory = (
                f" ({facts.VLLM_MIN_SAFE_ADVISORY}: the API key check can be bypassed with a crafted Host header)"
                if version < facts.VLLM_MIN_SAFE_VERSION
                else ""
            )
            report(
                f"{container.label}: image {image} runs vLLM {'.'.join(map(str, version))}, older than the minimum "
                f"{wanted}{advisory}. Use {use}.",
                None,
            )


# --- hf-token-plain-env / hf-token-as-file -------------------------------------------------------
def validate_hf_token_plain(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for container in _containers(args):
        for entry in container.env:
            name, value = entry.get("name"), entry.get("value")
            if isinstance(value, str) and value and (name in facts.HF_TOKEN_ENVS or HF_TOKEN.search(value)):
                report(
                    f"{container.label}: env {name} holds a Hugging Face token as a literal value, readable by anyone who can "
                    f"read the {container.pod.owner.kind} (and kept in Pulumi state). Put it in a Secret, mount it as a file "
                    f"and point HF_TOKEN_PATH at that file.",
                    None,
                )
        tokens = listed(container.body.get("command")) + listed(container.body.get("args"))
        if any(isinstance(t, str) and HF_TOKEN.search(t) for t in tokens):
            report(
                f"{container.label}: a Hugging Face token is written into command/args (for example --hf-token), visible in "
                f"the manifest and in `ps`. Mount it from a Secret as a file and set HF_TOKEN_PATH.",
                None,
            )


def validate_hf_token_file(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for container in _containers(args):
        for entry in container.env:
            name, source = entry.get("name"), at(entry, "valueFrom", "secretKeyRef")
            if name in facts.HF_TOKEN_ENVS and isinstance(source, dict):
                report(
                    f"{container.label}: env {name} comes from Secret {source.get('name')} key {source.get('key')}; environment "
                    f"variables are inherited by every child process and readable in /proc/<pid>/environ and crash reports (CIS GKE "
                    f"4.4.1, CKV_K8S_35). Mount the Secret as a file and set HF_TOKEN_PATH to it.",
                    None,
                )


# --- scaling: which HPA owns which workload ------------------------------------------------------
def hpa_targets(hpa: KubeObject, obj: KubeObject) -> bool | None:
    """Whether the HPA scales `obj`: by its scaleTargetRef when names are known, else by the
    dependency that this program gives an HPA on its target."""
    kind, name = at(hpa.body, "spec", "scaleTargetRef", "kind"), at(hpa.body, "spec", "scaleTargetRef", "name")
    if isinstance(kind, str) and kind != obj.kind:
        return False
    if isinstance(name, str) and isinstance(obj.name, str):
        if name != obj.name:
            return False
        if hpa.namespace is not UNKNOWN and obj.namespace is not UNKNOWN:
            return (hpa.namespace or "") == (obj.namespace or "")
    return True if obj.urn in hpa.dependencies else None


# --- hpa-metric-exists (stack) -------------------------------------------------------------------
def validate_hpa_metric(args: StackValidationArgs, report: ReportViolation) -> None:
    objects = stack_objects(args.resources)
    for hpa in (o for o in objects if o.kind == HPA):
        names = [at(m, key, "metric", "name") for m in listed(at(hpa.body, "spec", "metrics")) for key in ("pods", "object", "external")]
        metrics = [found for n in names if isinstance(n, str) for found in VLLM_METRIC.findall(n)]
        for obj in (o for o in objects if metrics and hpa_targets(hpa, o)):
            for pod in pod_templates(obj):
                for container in pod.vllm:
                    version = _version(container)
                    for metric in (m for m in metrics if version is not None and not facts.metric_exists(m, version)):
                        kv = (facts.METRIC_KV_CACHE, facts.METRIC_KV_CACHE_LEGACY)
                        instead = facts.kv_cache_metric(version) if metric in kv else "a metric that this vLLM version exports"
                        report(
                            f"{hpa.label}: scales on {metric}, which vLLM {'.'.join(map(str, version or ()))} ({container.label}, "
                            f"image {container.image}) does not export, so the HPA never scales. Use {instead}.",
                            hpa.urn,
                        )


# --- compile-cache-scale-out (stack) -------------------------------------------------------------
def _shared_cache(pod: PodTemplate) -> Iterator[tuple[Container, str, str, str]]:
    """Containers whose XLA compile cache is on a bucket that every replica shares:
    (container, path, how it is shared, the path below the bucket mount)."""
    for container in pod.containers:
        path = container.env_value(facts.XLA_CACHE_ENV)
        if not isinstance(path, str):
            continue
        if path.startswith("gs://"):
            yield container, path, "a gs:// location", path[len("gs://") :].partition("/")[2].strip("/")
            continue
        found = container.mount_for(path)
        if found is None:
            continue
        mount, below = found
        if at(pod.volume(mount.get("name")), "csi", "driver") == facts.GCSFUSE_DRIVER:
            sub_path = mount.get("subPath") if isinstance(mount.get("subPath"), str) else ""
            yield container, path, f"Cloud Storage FUSE volume {mount.get('name')}", "/".join(p for p in (sub_path, below) if p)


def _single_writer_gaps(obj: KubeObject, owners: list[KubeObject], replicas: int | None, below: list[str]) -> list[str] | None:
    """What the Deployment lacks of the stack's single-writer design; None when that is unknown."""
    strategy = at(obj.body, "spec", "strategy")
    kind = at(strategy, "type")
    surge, unavailable = at(strategy, "rollingUpdate", "maxSurge"), at(strategy, "rollingUpdate", "maxUnavailable")
    annotation = obj.annotation(facts.COMPILE_CACHE_ANNOTATION)
    if UNKNOWN in (kind, surge, unavailable, annotation):
        return None
    gaps = []
    if annotation != facts.COMPILE_CACHE_SINGLE_WRITER:
        gaps.append(f"annotation {facts.COMPILE_CACHE_ANNOTATION}: {facts.COMPILE_CACHE_SINGLE_WRITER}")
    if kind not in (None, "RollingUpdate") or whole(surge) != 1 or (whole(unavailable) != 0 and unavailable != "0%"):
        gaps.append("strategy.rollingUpdate maxSurge 1 and maxUnavailable 0 (new pods start one at a time)")
    if owners and replicas is not None:
        gaps.append(f"no spec.replicas (it is {replicas}; the HPA owns the count)")
    if not owners:
        gaps.append(f"spec.replicas 1 (it is {replicas}: that many writers start at once on the first rollout)")
    if "" in below:
        gaps.append(f"{facts.XLA_CACHE_ENV} in a per-configuration directory below the bucket mount, not at its root")
    late = "created only after the Deployment is ready (a dependency on it)"
    gaps.extend(f"{h.label} {late}" for h in owners if obj.urn not in h.dependencies)
    return gaps


def validate_compile_cache(args: StackValidationArgs, report: ReportViolation) -> None:
    objects = stack_objects(args.resources)
    hpas = [o for o in objects if o.kind == HPA]
    for obj in (o for o in objects if o.kind == "Deployment"):
        for pod in pod_templates(obj):
            shared = list(_shared_cache(pod))
            replicas = whole(at(obj.body, "spec", "replicas"))
            targeting = [(h, hpa_targets(h, obj), whole(at(h.body, "spec", "maxReplicas"))) for h in hpas]
            if not shared or replicas is UNKNOWN or any(t is None or m is UNKNOWN for _, t, m in targeting):
                continue
            owners = [h for h, targets, most in targeting if targets and (most is None or most > 1)]
            if not owners and (replicas is None or replicas <= 1):
                continue
            gaps = _single_writer_gaps(obj, owners, replicas, [below for *_, below in shared])
            if not gaps:
                continue
            container, path, how, _ = shared[0]
            scaler = ", ".join(f"{h.label} scales it" for h in owners) or f"spec.replicas is {replicas}"
            report(
                f"{obj.label}: container {container.body.get('name')} keeps {facts.XLA_CACHE_ENV}={path} on {how} and {scaler}; "
                f"replicas compiling at once fail with 'RuntimeError: filesystem error: cannot create directories'. Missing "
                f"from the single-writer design: {'; '.join(gaps)}. Deploy through the stack's VllmServer, keep one replica, "
                f"or keep the cache off the shared bucket.",
                obj.urn,
            )


POLICIES = [
    ResourceValidationPolicy(
        name="image-tag-pinned",
        description="Container images are pinned to a release tag or digest, never latest or untagged.",
        validate=validate_image_tag,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.MEDIUM,
        config_schema=PolicyConfigSchema(
            properties={REQUIRE_DIGEST: {"type": "boolean", "description": "Accept only images pinned by @sha256: digest."}}
        ),
    ),
    ResourceValidationPolicy(
        name="vllm-minimum-version",
        description=f"vLLM images are at least the configured minimum version (default {DEFAULT_MINIMUM_VERSION}, "
        f"{facts.VLLM_MIN_SAFE_ADVISORY}).",
        validate=validate_vllm_version,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
        config_schema=PolicyConfigSchema(
            properties={
                MINIMUM_VERSION: {
                    "type": "string",
                    "default": DEFAULT_MINIMUM_VERSION,
                    "pattern": r"^v?\d+\.\d+\.\d+$",
                    "description": "Oldest vLLM release allowed, e.g. 0.22.0.",
                }
            }
        ),
    ),
    StackValidationPolicy(
        name="hpa-metric-exists",
        description="An HPA on a vLLM server scales on a metric that the server's vLLM version exports.",
        validate=validate_hpa_metric,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.MEDIUM,
    ),
    StackValidationPolicy(
        name="compile-cache-scale-out",
        description="A Deployment that keeps its XLA compile cache on a shared bucket scales past one replica only "
        "with the stack's single-writer design.",
        validate=validate_compile_cache,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.HIGH,
    ),
    ResourceValidationPolicy(
        name="hf-token-plain-env",
        description="No Hugging Face token as a literal value in a manifest (env value, command or args).",
        validate=validate_hf_token_plain,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=Severity.CRITICAL,
    ),
    ResourceValidationPolicy(
        name="hf-token-as-file",
        description="The Hugging Face token reaches the server as a mounted file (HF_TOKEN_PATH), not an env var from a Secret.",
        validate=validate_hf_token_file,
        enforcement_level=EnforcementLevel.ADVISORY,
        severity=Severity.LOW,
    ),
]
