"""Admin access to PostgreSQL: the admin password (a Pulumi secret), its pre-flight, the provider.

The provider's password input is the admin password *after* the admin pre-flight
(`postgres_apps/preflight.py`) passed: every role, database and grant uses the provider, and every
app Secret depends on its role and database, so none of them is registered before the pre-flight.
The pre-flight runs during `pulumi up` only: `pulumi preview` (the pull-request workflow) may run
where the admin endpoint is not reachable, so a preview does not log in for the pre-flight: it
logs the config side of the connection budget (the apps' connection limits) instead.

The unmanaged report (`postgres_apps/inventory.py`) comes out of the same gate: on `up` from the
pre-flight's session, on `preview` from one read-only connection of its own that may fail ("not
checked").
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_postgresql as postgresql

from postgres_apps.inventory import (
    NONE_MESSAGE,
    Scope,
    Unmanaged,
    from_preflight,
    not_checked_message,
    output,
    survey,
    warning_message,
)
from postgres_apps.preflight import (
    AdminEndpoint,
    ConnectionBudget,
    ServerFacts,
    preview_budget_line,
    run_preflight,
)
from postgres_apps.settings import CONFIG_NAMESPACE, PostgresSettings

CONNECT_TIMEOUT_SECONDS = 15
EXPECTED_VERSION = "15"
"""Lowest supported server (15 to 18): the provider enables the features of this version up."""


Preflight = Callable[[AdminEndpoint, str, ConnectionBudget], ServerFacts]
"""Connect as admin, judge the server and the connection budget; raise `AdminPreflightError`
(injectable for tests)."""


Survey = Callable[[AdminEndpoint, str, Scope], Unmanaged]
"""Read the server's roles and databases in `pulumi preview`; never raises (injectable)."""


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


def _password_in_config() -> bool:
    return pulumi.Config(CONFIG_NAMESPACE).get_secret("adminPassword") is not None


def password_source(settings: PostgresSettings) -> str:
    """Where the admin password comes from, as the operator would fix it (never the value)."""
    if _password_in_config():
        return f"the config secret {CONFIG_NAMESPACE}:adminPassword"
    return (
        f"Secret {settings.admin_secret_namespace}/{settings.admin_secret_name} "
        f"key {settings.admin_secret_key}"
    )


def admin_endpoint(settings: PostgresSettings) -> AdminEndpoint:
    """The admin connection exactly as the provider is configured (pure but for the config)."""
    return AdminEndpoint(
        host=settings.admin_host,
        port=settings.admin_port,
        user=settings.admin_user,
        sslmode=settings.admin_sslmode,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        password_source=password_source(settings),
        password_in_config=_password_in_config(),
    )


@dataclass(frozen=True)
class AdminAccess:
    """The provider every role, database and grant goes through, and the unmanaged report."""

    provider: postgresql.Provider
    unmanaged: pulumi.Output[dict[str, object]]
    """`postgres_apps.inventory.output(...)`: plain (names only), resolved after the pre-flight."""


def _report(report: Unmanaged, dry_run: bool) -> dict[str, object]:
    """Log the report (a warning when something is unmanaged) and return the output value."""
    message = warning_message(report)
    if message is not None:
        pulumi.log.warn(message)
    elif report.checked:
        pulumi.log.info(NONE_MESSAGE)
    elif report.reason is not None:
        # a preview that cannot reach the server is normal (pull-request runners): not a warning
        (pulumi.log.info if dry_run else pulumi.log.warn)(not_checked_message(report.reason))
    return output(report)


def _gated(
    settings: PostgresSettings,
    password: pulumi.Input[str],
    budget: ConnectionBudget,
    *,
    preflight: Preflight | None,
    scope: Scope,
    look: Survey | None,
) -> tuple[pulumi.Output[str], pulumi.Output[dict[str, object]]]:
    """The one admin gate: the password once the pre-flight (server and `budget`) passed, and the
    unmanaged report. `up`: one session for both; `preview`: the budget's config side is logged
    and `look` reads the inventory, no pre-flight."""
    endpoint = admin_endpoint(settings)
    # looked up when called, so the unit tests' harness can replace them for the whole program
    check = preflight or run_preflight
    read = look or survey
    if pulumi.runtime.is_dry_run():
        pulumi.log.info(preview_budget_line(budget))

    async def gate(value: str) -> tuple[str, dict[str, object]]:
        loop = asyncio.get_running_loop()
        dry_run = pulumi.runtime.is_dry_run()
        if not dry_run:
            # blocking I/O (driver import, connect, query) off the event loop: the program keeps
            # registering what does not depend on the admin password meanwhile
            facts = await loop.run_in_executor(None, check, endpoint, value, budget)
            return value, _report(from_preflight(facts, scope, endpoint, value), dry_run)
        return value, _report(await loop.run_in_executor(None, read, endpoint, value, scope), True)

    both: pulumi.Output[tuple[str, dict[str, object]]] = pulumi.Output.from_input(password).apply(
        gate
    )
    return (
        pulumi.Output.secret(both.apply(lambda pair: pair[0])),
        pulumi.Output.unsecret(both.apply(lambda pair: pair[1])),
    )


def _provider(
    settings: PostgresSettings, password: pulumi.Output[str], opts: pulumi.ResourceOptions | None
) -> postgresql.Provider:
    return postgresql.Provider(
        "postgres-admin",
        host=settings.admin_host,
        port=settings.admin_port,
        username=settings.admin_user,
        password=password,
        database="postgres",
        sslmode=settings.admin_sslmode,
        superuser=True,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        expected_version=EXPECTED_VERSION,
        opts=opts,
    )


def admin_access(
    settings: PostgresSettings,
    password: pulumi.Input[str],
    scope: Scope,
    opts: pulumi.ResourceOptions | None = None,
    *,
    budget: ConnectionBudget,
    preflight: Preflight | None = None,
    look: Survey | None = None,
) -> AdminAccess:
    """The `postgresql` provider every app's role, database and grant goes through, and the
    unmanaged report. The provider's password resolves only after the admin pre-flight passed
    (`pulumi up`; it also refuses a stack whose `budget` the server cannot honour), so nothing it
    manages is registered before. The report: on `up` read in the pre-flight's session, on
    `preview` by `look` (default `postgres_apps.inventory.survey`), "not checked" if unreachable."""
    password_out, unmanaged = _gated(
        settings, password, budget, preflight=preflight, scope=scope, look=look
    )
    return AdminAccess(provider=_provider(settings, password_out, opts), unmanaged=unmanaged)
