"""Stack config → plain, validated objects.

The contract every component agrees on. Parsing (`parse_settings`) reports every problem at once,
before any resource is registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DeletionPolicy = Literal["protect", "drop"]
VerificationMode = Literal["pod", "direct"]
RerunPolicy = Literal["always", "on-change"]
Profile = Literal["n8n", "paperless"]


@dataclass(frozen=True)
class PostgresSettings:
    """Where PostgreSQL is as the apps see it, and how this program reaches it as admin."""

    host: str = "postgres-postgresql.data.svc.cluster.local"
    port: int = 5432
    sslmode: str = "prefer"
    admin_host: str = "127.0.0.1"
    """Admin endpoint reachable from where Pulumi runs (port-forward, VPN, or the in-cluster name)."""
    admin_port: int = 5432
    admin_user: str = "postgres"
    admin_secret_namespace: str = "data"
    admin_secret_name: str = "postgres-postgresql"
    admin_secret_key: str = "postgres-password"


@dataclass(frozen=True)
class AppSpec:
    """One application: everything else about it is derived from its name."""

    name: str
    namespace: str
    profile: Profile | None = None
    connection_limit: int = 20
    extensions: tuple[str, ...] = ()
    deletion: DeletionPolicy = "protect"

    @property
    def role_name(self) -> str:
        return self.name.replace("-", "_")

    @property
    def database_name(self) -> str:
        return self.name.replace("-", "_")

    @property
    def secret_name(self) -> str:
        return f"{self.name}-db-credentials"


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


@dataclass(frozen=True)
class StackSettings:
    """Everything the program needs from stack config (secrets are read separately, as Outputs)."""

    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    apps_namespace: str = "apps"
    apps: tuple[AppSpec, ...] = ()
    verification: VerificationSettings = field(default_factory=VerificationSettings)
    kube_context: str | None = None
