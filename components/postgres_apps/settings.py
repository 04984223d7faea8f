"""The settings contract: plain, frozen, typed objects every component consumes.

Built only by `postgres_apps.config` (which validates the stack config into them) or by a
program's own code; nothing here reads config.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

DeletionPolicy = Literal["protect", "retain", "drop"]
VerificationMode = Literal["pod", "direct"]
RerunPolicy = Literal["always", "on-change"]
PodSecurityLevel = Literal["restricted", "baseline", "privileged"]
Profile = str
"""A key of `postgres_apps.credentials.PROFILES` (checked by `postgres_apps.config`)."""

CONFIG_NAMESPACE = "postgres-apps"
SECRET_SUFFIX = "-db-credentials"  # noqa: S105 - a name suffix, not a password
DEFAULT_CONNECTION_BUDGET_WARN_PERCENT = 80
DEFAULT_HARDEN_DATABASES = ("postgres", "template1")
"""The databases PostgreSQL creates with CONNECT and TEMPORARY for PUBLIC (`template0` refuses
connections: `datallowconn = false`)."""


@dataclass(frozen=True)
class PostgresSettings:
    """Where PostgreSQL is as the apps see it, and how this program reaches it as admin."""

    host: str = "postgres-postgresql.data.svc.cluster.local"
    port: int = 5432
    sslmode: str = "prefer"
    """libpq sslmode the apps use (written into `uri`, `jdbc-uri`, `DATABASE_URL`)."""
    admin_host: str = "127.0.0.1"
    """Admin endpoint reachable from where Pulumi runs (port-forward, VPN, in-cluster name)."""
    admin_port: int = 5432
    admin_user: str = "postgres"
    admin_secret_namespace: str = "data"  # noqa: S105 - where the Secret is, not a password
    admin_secret_name: str = "postgres-postgresql"  # noqa: S105
    admin_secret_key: str = "postgres-password"  # noqa: S105
    admin_sslmode: str = "disable"
    """sslmode of the admin connection (the provider accepts disable/require/verify-ca/verify-full;
    `disable` suits a loopback port-forward, which kubectl already tunnels over TLS)."""
    allow_insecure_admin: bool = False
    """Accept `admin_sslmode: disable` with a non-loopback `admin_host` (the admin password then
    crosses the network in clear; for a path protected otherwise, e.g. a VPN)."""
    harden_databases: tuple[str, ...] = DEFAULT_HARDEN_DATABASES
    """Databases whose CONNECT and TEMPORARY the stack revokes from PUBLIC (so an app role can
    reach no database but its own); `()` leaves the server's defaults alone."""
    connection_budget_warn_percent: int = DEFAULT_CONNECTION_BUDGET_WARN_PERCENT
    """`pulumi up` warns when the apps' connection limits use more than this share of the
    server's non-superuser connections (refused above 100 %: `postgres_apps/preflight.py`)."""


@dataclass(frozen=True)
class SecretExtras:
    """What an app's Secret carries beyond its built-in and profile keys (`secret:` in config;
    the stack-wide `postgres-apps:secret` is already merged in, the app's entries winning)."""

    keys: tuple[tuple[str, str], ...] = ()
    """(key, template) pairs: templates over `postgres_apps.credentials.TEMPLATE_FIELDS`."""
    labels: tuple[tuple[str, str], ...] = ()
    """Extra labels (beside the ones postgres-apps sets), e.g. for a reloader or Argo CD."""
    annotations: tuple[tuple[str, str], ...] = ()
    """Annotations, e.g. `reloader.stakater.com/match: "true"`."""
    connection_keys: tuple[str, ...] = ()
    """Templated keys that hold a libpq connection string (URI or `key=value`): the gate logs in
    with each, as the app would read it, and fails naming the key that does not connect."""


@dataclass(frozen=True)
class AppSpec:
    """One application: everything else about it is derived from its name."""

    name: str
    namespace: str
    profile: Profile | None = None
    connection_limit: int = 20
    extensions: tuple[str, ...] = ()
    deletion: DeletionPolicy = "protect"
    password_version: int = 0
    """Bump to rotate the generated password (role, Secret and verification follow in one `up`)."""
    allow_replace: bool = False
    """Let a change that replaces role/database go ahead (drop first, then create). Without it a
    replacement is refused: by `protect`, or (unprotected) by the existing name on create."""
    secret: SecretExtras = field(default_factory=SecretExtras)
    """Templated keys, labels and annotations of the app's Secret."""

    @property
    def role_name(self) -> str:
        return self.name.replace("-", "_")

    @property
    def database_name(self) -> str:
        return self.name.replace("-", "_")

    @property
    def secret_name(self) -> str:
        return f"{self.name}{SECRET_SUFFIX}"


@dataclass(frozen=True)
class VerificationSettings:
    """The post-deploy gate."""

    enabled: bool = True
    mode: VerificationMode = "pod"
    image: str = "docker.io/library/postgres:17-alpine"
    image_pull_policy: str = "IfNotPresent"
    timeout_seconds: int = 120
    latency_budget_ms: float = 100.0
    rerun: RerunPolicy = "always"
    allowed_databases: tuple[str, ...] = ()
    """Databases the app roles may connect to on purpose: the isolation check does not report
    them (`postgres-apps:verification.allowedDatabases`)."""


@dataclass(frozen=True)
class UnmanagedSettings:
    """What the unmanaged report (`postgres_apps/inventory.py`) leaves out on purpose."""

    ignore_roles: tuple[str, ...] = ()
    """Roles made outside this stack on purpose (`postgres-apps:unmanaged.ignoreRoles`)."""
    ignore_databases: tuple[str, ...] = ()
    """Databases made outside this stack on purpose (`postgres-apps:unmanaged.ignoreDatabases`)."""


@dataclass(frozen=True)
class RetirementSettings:
    """Where `deletion: drop` keeps the copy it takes before dropping (`retirement.py`)."""

    directory: str = "retired-copies"
    """Directory on the Pulumi host for the dumps (`postgres-apps:retirement.directory`); relative
    paths are taken from the Pulumi project directory."""
    persistent_volume_claim: str | None = None
    """Set: the copy is taken by a pod in the admin Secret's namespace onto this claim there
    (`postgres-apps:retirement.persistentVolumeClaim`) instead of on the Pulumi host."""


@dataclass(frozen=True)
class StackSettings:
    """Everything the program needs from stack config (secrets are read separately, as Outputs)."""

    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    apps_namespace: str = "apps"
    apps: tuple[AppSpec, ...] = ()
    verification: VerificationSettings = field(default_factory=VerificationSettings)
    kube_context: str | None = None
    retired: tuple[str, ...] = ()
    """Apps the operator says were retired outside this program (`postgres-apps:retired`): their
    removal from `apps` is not refused by the removal check. The engine's `protect` still holds."""
    allowed_extensions: tuple[str, ...] = ()
    """Extensions beyond `TRUSTED_EXTENSIONS` the operator allows apps to ask for."""
    namespace_per_app: bool = False
    """Apps without an explicit `namespace` get their own, named like the app (already applied to
    each `AppSpec.namespace`)."""
    unmanaged: UnmanagedSettings = field(default_factory=UnmanagedSettings)
    retirement: RetirementSettings = field(default_factory=RetirementSettings)
    pod_security_enforce: tuple[tuple[str, PodSecurityLevel], ...] = ()
    """Namespace → the Pod Security level it enforces, where the config names one
    (`postgres-apps:podSecurityEnforce`); every other namespace enforces `restricted`."""

    def enforce_level(self, namespace: str) -> tuple[PodSecurityLevel, bool]:
        """The namespace's enforce level, and whether the config named it explicitly."""
        named = dict(self.pod_security_enforce)
        return (named[namespace], True) if namespace in named else ("restricted", False)

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace the program manages: the apps namespace first, then the apps' own."""
        return ordered_namespaces(self.apps_namespace, (app.namespace for app in self.apps))


def ordered_namespaces(apps_namespace: str, app_namespaces: Iterable[str]) -> tuple[str, ...]:
    """The apps namespace, then each app's namespace once, in the apps' order."""
    return tuple(dict.fromkeys([apps_namespace, *app_namespaces]))
