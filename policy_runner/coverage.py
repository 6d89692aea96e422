"""What `make check` could not judge: objects of kinds no policy reads, and template placeholders
(`${IMAGE_URI}`, `<your-image>`) that the pack takes as unknown values. Reported beside the
verdict, so a file the pack cannot read never shows as a plain ✅."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policy_runner.session import StackResource


@dataclass(frozen=True)
class Coverage:
    checked: int
    unchecked: Mapping[str, int]  # kind -> objects of it that no policy reads
    templates: tuple[str, ...]  # "Deployment x container y: image ${IMAGE_URI}"
    other_templates: int  # template values outside images

    @property
    def notes(self) -> list[str]:
        lines = []
        if self.unchecked:
            count = sum(self.unchecked.values())
            kinds = ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in sorted(self.unchecked.items()))
            lines.append(f"{count} object{'s' if count != 1 else ''} not checked (kinds {kinds}): no policy reads them")
        lines.extend(f"template, not checked: {where}" for where in self.templates)
        if self.other_templates:
            lines.append(f"template, not checked: {self.other_templates} other placeholder value(s) outside images, taken as unknown")
        return lines


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in ("command", "args"):  # shell scripts: their $VAR is the shell's, not a template's
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def coverage(resources: Sequence[StackResource]) -> Coverage:
    # Imported here: the pack's modules load only for `make check`, not for every user of the runner.
    from policies.k8s import KubeObject, is_template, pod_templates
    from policies.pack import KUBERNETES_KINDS_READ

    unchecked: Counter[str] = Counter()
    templates: list[str] = []
    other = 0
    for resource in resources:
        body = dict(resource.properties)
        kind = str(body.get("kind"))
        if kind not in KUBERNETES_KINDS_READ:
            unchecked[kind] += 1
            continue
        images = 0
        for pod in pod_templates(KubeObject(resource.urn, kind, body)):
            for container in pod.all_containers:
                if is_template(container.image):
                    templates.append(f"{container.label}: image {container.image}")
                    images += 1
        other += sum(1 for value in _strings(body) if is_template(value)) - images
    return Coverage(len(resources) - sum(unchecked.values()), dict(unchecked), tuple(templates), other)
