"""`AppsNamespace`: the namespace the apps (and their Secrets and probe pods) live in."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi"}
PART_OF = {"app.kubernetes.io/part-of": "postgres-apps"}
POD_SECURITY_LABELS = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "audit", "warn")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}


def namespace_labels(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Ownership labels plus Pod Security `restricted` (enforce, audit and warn)."""
    return {**MANAGED_BY, **PART_OF, **POD_SECURITY_LABELS, **(extra or {})}


@dataclass
class AppsNamespaceArgs:
    """What the namespace looks like."""

    name: str
    """The namespace name (a DNS-1123 label, validated by postgres_apps.config)."""
    extra_labels: dict[str, str] = field(default_factory=dict)
    retain_on_delete: bool = True
    """Deleting a namespace deletes every workload in it: by default the stack only forgets it."""


class AppsNamespace(pulumi.ComponentResource):
    """A namespace labelled as managed by this program, with Pod Security `restricted`.

    If the namespace already exists (an operator's `apps`), server-side apply adopts it and only
    adds the labels; with `retain_on_delete` the namespace survives `pulumi destroy`.
    """

    namespace: k8s.core.v1.Namespace
    name: pulumi.Output[str]

    def __init__(
        self, name: str, args: AppsNamespaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("postgres-apps:namespace:AppsNamespace", name, None, opts)
        self.namespace = k8s.core.v1.Namespace(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.name, labels=namespace_labels(args.extra_labels)
            ),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_on_delete),
        )
        self.name = self.namespace.metadata.apply(lambda m: m.name or args.name)
        self.register_outputs({"name": self.name})
