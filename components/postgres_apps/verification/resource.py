"""`ConnectivityCheck`: the per-app verification gate as a Pulumi dynamic resource.

The resource only turns its typed args into a flat property bag; the work happens in
`postgres_apps.verification.provider.ConnectivityCheckProvider` (run by the dynamic provider host).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from postgres_apps.settings import VerificationSettings
from postgres_apps.verification.inputs import SECRET_OUTPUTS, props_of
from postgres_apps.verification.provider import ConnectivityCheckProvider


@dataclass(frozen=True)
class ConnectivityPeer:
    """Another managed app the checked app must be isolated from (both directions)."""

    database: pulumi.Input[str]
    role: pulumi.Input[str]


@dataclass
class ConnectivityCheckArgs:
    """Everything the probe needs; all of it reaches the provider as inputs (no config reads)."""

    app_name: str
    namespace: pulumi.Input[str]
    """The app's namespace: the pod runner creates its probe pod there."""
    secret_name: pulumi.Input[str]
    """The app's Secret (`<name>-db-credentials`); the probe pod reads it as env, like the app."""
    host: pulumi.Input[str]
    """In-cluster host as written in the Secret."""
    port: pulumi.Input[int]
    database: pulumi.Input[str]
    username: pulumi.Input[str]
    password: pulumi.Input[str]
    """Secret. Direct mode logs in with it; a change re-runs the check (only a hash is kept)."""
    sslmode: str
    direct_host: str
    """Admin endpoint as seen from the Pulumi host (direct mode connects there)."""
    direct_port: int
    peers: Sequence[ConnectivityPeer]
    """The other managed apps: the app must not connect to their databases, nor they (or PUBLIC)
    to its. A change to this list alone does not re-run the check (see `provider.PEERS_KEY`)."""
    settings: VerificationSettings
    kube_context: str | None = None
    uri: pulumi.Input[str] | None = None
    """Secret. The Secret's `uri` as written; direct mode connects with it (host/port swapped for
    the direct endpoint). None → rebuilt from the parts with `credentials.postgres_uri`
    (pod mode always reads the real Secret)."""
    roundtrips: int = 20
    """Round trips timed for the latency percentiles."""
    kubeconfig: pulumi.Input[str] | None = None
    """Secret. The kubeconfig (contents or path, as `kubernetes:kubeconfig` takes it) the pod
    runner uses with `kube_context`, so the probe pod runs in the cluster that holds the Secret.
    None → the stack's `kubernetes:kubeconfig` when set, else the default kubeconfig."""
    probe_run: pulumi.Input[str] | None = None
    """Pod mode: `NamespaceProbe.run_id` of the namespace's probe run that checked this app."""
    probe_report: pulumi.Input[str] | None = None
    """Pod mode: this app's entry of `NamespaceProbe.results` (JSON text); judged instead of
    running a pod of its own. None → the check runs its own probe pod."""
    connection_keys: Sequence[str] = ()
    """Secret keys that hold a connection string (`secret.connectionKeys`): the gate logs in with
    each as given and fails naming the one that does not connect."""
    connection_strings: pulumi.Input[Mapping[str, str]] | None = None
    """Secret. Those keys' values, for direct mode (the pod reads them from the Secret)."""


class ConnectivityCheck(pulumi.dynamic.Resource, module="verification", name="ConnectivityCheck"):
    """Runs the probe on create/update; fails `pulumi up` with a check name and a hint."""

    checks_passed: pulumi.Output[list[str]]
    checks: pulumi.Output[list[dict[str, str]]]
    connect_ms: pulumi.Output[float]
    roundtrip_p50_ms: pulumi.Output[float]
    roundtrip_p95_ms: pulumi.Output[float]
    server_version: pulumi.Output[str]
    checked_at: pulumi.Output[str]
    mode: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: ConnectivityCheckArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = build_props(args)
        # The stored secrets stay secret in the outputs too (no effect on the URN or the diff).
        secret_outputs = pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_OUTPUTS))
        opts = pulumi.ResourceOptions.merge(secret_outputs, opts)
        super().__init__(ConnectivityCheckProvider(), name, props, opts)


def build_props(args: ConnectivityCheckArgs) -> dict[str, Any]:
    """Flat property bag for the provider (`inputs.INPUTS`); outputs are declared with `None`."""
    return props_of(args)
