"""`AppsNamespace`: the namespace the apps (and their Secrets and probe pods) live in.

Pod Security: `audit` and `warn` are always `restricted`; `enforce` is `restricted` unless the
stack config says otherwise for that namespace (`postgres-apps:podSecurityEnforce`), because the
stock images of some apps do not run under `restricted`. Adopting a namespace that exists and is
not ours yet must not tighten what it enforces behind the operator's back: pods already running
there would be rejected at their next restart. `adoption_problems` says where that would happen
(the live labels are read by `live_namespace_labels`, once per `pulumi up` and preview; the unit
harness replaces it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from postgres_apps.settings import PodSecurityLevel

STRICTNESS: Final[dict[str, int]] = {"privileged": 0, "baseline": 1, "restricted": 2}
"""Pod Security levels, loosest first; a namespace without an enforce label is `privileged`."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi"}
PART_OF = {"app.kubernetes.io/part-of": "postgres-apps"}
ENFORCE_LABEL: Final = "pod-security.kubernetes.io/enforce"
POD_SECURITY_LABELS = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "audit", "warn")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}


def namespace_labels(
    extra: dict[str, str] | None = None, enforce: PodSecurityLevel = "restricted"
) -> dict[str, str]:
    """Ownership labels plus Pod Security: `enforce` at the given level, audit and warn
    `restricted`."""
    return {**MANAGED_BY, **PART_OF, **POD_SECURITY_LABELS, ENFORCE_LABEL: enforce, **(extra or {})}


def is_ours(labels: Mapping[str, str]) -> bool:
    """A namespace this program (any stack of it) already labels as its own."""
    return all(labels.get(k) == v for k, v in {**MANAGED_BY, **PART_OF}.items())


def adoption_problem(
    namespace: str, live: Mapping[str, str] | None, level: PodSecurityLevel, explicit: bool
) -> str | None:
    """Why adopting `namespace` (its live labels, None when it does not exist) at `level` is
    refused: it exists, is not ours yet, enforces less than `level`, and the config did not name
    its level on purpose."""
    if live is None or is_ours(live) or explicit:
        return None
    current = live.get(ENFORCE_LABEL, "privileged")
    if STRICTNESS.get(current, 0) >= STRICTNESS[level]:
        return None
    shown = f'"{current}"' if ENFORCE_LABEL in live else '"privileged" (no enforce label)'
    return (
        f'namespace "{namespace}" exists and enforces Pod Security {shown}; postgres-apps would '
        f'make it enforce "{level}", and pods there that are not "{level}" would be refused at '
        f'their next restart. Set postgres-apps:podSecurityEnforce.{namespace} to "{level}" to '
        f'tighten it, or to "{current}" to keep it (audit and warn stay "restricted")'
    )


class NamespaceAdoptionRefused(pulumi.RunError):
    """Adopting an existing namespace would tighten its Pod Security; nothing was changed."""


def live_namespace_labels(
    names: Sequence[str], kube_context: str | None, kubeconfig: str | None
) -> dict[str, dict[str, str]] | None:
    """Labels of those of `names` that exist in the cluster; None when the cluster cannot be
    asked (then the Kubernetes provider reports the cluster itself)."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 - heavy

    from postgres_apps.verification.pod import core_api  # noqa: PLC0415

    try:
        api = core_api(kube_context, kubeconfig)
        found: dict[str, dict[str, str]] = {}
        for name in names:
            try:
                ns = api.read_namespace(name, _request_timeout=10)
            except ApiException as exc:
                if exc.status == 404:  # the namespace does not exist (yet)
                    continue
                raise
            found[name] = dict(ns.metadata.labels or {})
    except Exception as exc:  # any failure to ask: the provider reports the cluster itself
        pulumi.log.warn(f"could not read the apps' namespaces before adopting them: {exc}")
        return None
    return found


def adoption_guard(
    levels: Mapping[str, tuple[PodSecurityLevel, bool]],
    kube_context: str | None,
    kubeconfig: pulumi.Input[str] | None,
) -> pulumi.Output[list[Any]]:
    """An Output every resource of the stack waits for: `[]`, or the program fails with
    `NamespaceAdoptionRefused` naming each namespace whose adoption would tighten it.
    `levels`: namespace → (enforce level, named explicitly in config)."""

    def check(config: Any) -> list[Any]:
        live = live_namespace_labels(list(levels), kube_context, str(config) if config else None)
        if live is None:
            return []
        problems = [
            problem
            for ns, (level, explicit) in levels.items()
            if (problem := adoption_problem(ns, live.get(ns), level, explicit)) is not None
        ]
        if problems:
            raise NamespaceAdoptionRefused("\n  - ".join(["refused, nothing changed:", *problems]))
        return []

    return pulumi.Output.from_input(kubeconfig).apply(check)


@dataclass
class AppsNamespaceArgs:
    """What the namespace looks like."""

    name: str
    """The namespace name (a DNS-1123 label, validated by postgres_apps.config)."""
    extra_labels: dict[str, str] = field(default_factory=dict)
    enforce: PodSecurityLevel = "restricted"
    """Pod Security level enforced (`postgres-apps:podSecurityEnforce`; audit/warn: restricted)."""
    retain_on_delete: bool = True
    """Deleting a namespace deletes every workload in it: by default the stack only forgets it."""


class AppsNamespace(pulumi.ComponentResource):
    """A namespace labelled as managed by this program, with Pod Security `restricted` (enforce
    at `args.enforce`).

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
                name=args.name, labels=namespace_labels(args.extra_labels, args.enforce)
            ),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_on_delete),
        )
        self.name = self.namespace.metadata.apply(lambda m: m.name or args.name)
        self.register_outputs({"name": self.name})
