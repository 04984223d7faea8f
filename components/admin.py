"""Admin access to PostgreSQL: the admin password (as a Pulumi secret) and the provider."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s
import pulumi_postgresql as postgresql

from components.config import CONFIG_NAMESPACE, PostgresSettings

CONNECT_TIMEOUT_SECONDS = 15
EXPECTED_VERSION = "15"
"""Lowest supported server (15 to 18): the provider enables the features of this version up."""


class AdminPasswordError(pulumi.RunError):
    """The admin password could not be found where the config says it is."""


def decode_secret_value(data: Mapping[str, str] | None, key: str, where: str) -> str:
    """Base64-decode one key of a Secret's `data` (pure; raises with the Secret and key named)."""
    if not data or key not in data:
        present = ", ".join(sorted(data or {})) or "none"
        raise AdminPasswordError(
            f"Secret {where} has no key {key!r} (keys present: {present}); set "
            f"{CONFIG_NAMESPACE}:postgres.adminSecretKey, or give the password with "
            f"`pulumi config set --secret {CONFIG_NAMESPACE}:adminPassword`"
        )
    return base64.b64decode(data[key]).decode()


def admin_password(
    settings: PostgresSettings, opts: pulumi.ResourceOptions | None = None
) -> pulumi.Output[str]:
    """The admin password as a secret Output.

    `postgres-apps:adminPassword` (config secret) wins; otherwise the key of the Bitnami Secret
    (`data/postgres-postgresql`, `postgres-password`) is read from the cluster.
    """
    override = pulumi.Config(CONFIG_NAMESPACE).get_secret("adminPassword")
    if override is not None:
        return pulumi.Output.secret(override)
    where = f"{settings.admin_secret_namespace}/{settings.admin_secret_name}"
    # The whole read is secret, metadata included: a Secret made with client-side `kubectl apply`
    # carries its own data again (base64) in the last-applied-configuration annotation.
    read_opts = pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(additional_secret_outputs=["data", "metadata"])
    )
    secret = k8s.core.v1.Secret.get("postgres-admin-secret", where, opts=read_opts)
    key = settings.admin_secret_key
    return pulumi.Output.secret(
        secret.data.apply(lambda data: decode_secret_value(data, key, where))
    )


def admin_provider(
    settings: PostgresSettings,
    password: pulumi.Input[str],
    opts: pulumi.ResourceOptions | None = None,
) -> postgresql.Provider:
    """The `postgresql` provider every app's role, database and grants go through."""
    return postgresql.Provider(
        "postgres-admin",
        host=settings.admin_host,
        port=settings.admin_port,
        username=settings.admin_user,
        password=pulumi.Output.secret(password),
        database="postgres",
        sslmode=settings.admin_sslmode,
        superuser=True,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        expected_version=EXPECTED_VERSION,
        opts=opts,
    )
