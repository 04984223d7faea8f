"""postgres-apps: one PostgreSQL database, role and Secret per app, verified after every deploy.

Read config → build components → export outputs (never a secret in plain).
"""

from __future__ import annotations

from typing import Any

import pulumi

from postgres_apps.admin import admin_access, admin_password
from postgres_apps.app_database import AppDatabase, AppDatabaseArgs
from postgres_apps.config import StackSettings, load_settings
from postgres_apps.inventory import OUTPUT_NAME as UNMANAGED_OUTPUT
from postgres_apps.inventory import scope_of
from postgres_apps.namespace import AppsNamespace, AppsNamespaceArgs
from postgres_apps.preflight import BUDGET_OUTPUT_NAME as BUDGET_OUTPUT
from postgres_apps.preflight import budget_output, connection_budget
from postgres_apps.retention import OUTPUT_NAME, guarded_managed_apps
from postgres_apps.server_hardening import ServerHardening, ServerHardeningArgs
from postgres_apps.verification import ConnectivityCheck, ConnectivityCheckArgs, ConnectivityPeer


def build(settings: StackSettings) -> None:
    """Register every resource of the stack and its outputs."""
    pg = settings.postgres
    # The removal check comes first: every resource below waits for it, so a refused removal
    # (a protected app gone from config) stops the run before anything is created or changed,
    # also when the same change adds another app.
    managed = guarded_managed_apps(settings.apps, settings.retired)
    after_guard = pulumi.ResourceOptions(depends_on=managed.apply(lambda _: []))
    namespaces = {
        ns: AppsNamespace(f"namespace-{ns}", AppsNamespaceArgs(name=ns), opts=after_guard)
        for ns in settings.namespaces
    }
    budget = connection_budget(settings)
    admin = admin_access(
        pg, admin_password(pg), scope_of(settings), opts=after_guard, budget=budget
    )
    provider = admin.provider
    hardening = ServerHardening(
        "server-hardening",
        ServerHardeningArgs(databases=pg.harden_databases),
        opts=pulumi.ResourceOptions(providers={"postgresql": provider}, depends_on=[provider]),
    )

    databases: dict[str, AppDatabase] = {}
    for app in settings.apps:
        databases[app.name] = AppDatabase(
            app.name,
            AppDatabaseArgs(
                app=app, postgres=pg, provider=provider, namespace=namespaces[app.namespace].name
            ),
            opts=after_guard,
        )

    checks: dict[str, ConnectivityCheck] = {}
    if settings.verification.enabled:
        for app in settings.apps:
            db = databases[app.name]
            checks[app.name] = ConnectivityCheck(
                f"{app.name}-check",
                ConnectivityCheckArgs(
                    app_name=app.name,
                    namespace=db.namespace,
                    secret_name=db.secret_name,
                    host=db.host,
                    port=db.port,
                    database=db.database_name,
                    username=db.role_name,
                    password=db.password_value,
                    sslmode=pg.sslmode,
                    direct_host=pg.admin_host,
                    direct_port=pg.admin_port,
                    peers=[
                        ConnectivityPeer(database=other.database_name, role=other.role_name)
                        for name, other in databases.items()
                        if name != app.name
                    ],
                    settings=settings.verification,
                    kube_context=settings.kube_context,
                    uri=db.uri,
                ),
                opts=pulumi.ResourceOptions(
                    parent=db, depends_on=[*db.ready_resources, *hardening.ready_resources]
                ),
            )

    apps_out: dict[str, Any] = {}
    for app in settings.apps:
        db = databases[app.name]
        entry: dict[str, Any] = {
            "namespace": db.namespace,
            "secretName": db.secret_name,
            "database": db.database_name,
            "role": db.role_name,
            "deletion": app.deletion,
        }
        check = checks.get(app.name)
        if check is not None:
            entry["verification"] = {
                "checksPassed": check.checks_passed,
                "connectMs": check.connect_ms,
                "roundtripP50Ms": check.roundtrip_p50_ms,
                "roundtripP95Ms": check.roundtrip_p95_ms,
                "serverVersion": check.server_version,
                "checkedAt": check.checked_at,
                "mode": check.mode,
            }
        apps_out[app.name] = entry

    pulumi.export("apps", apps_out)
    pulumi.export(
        "postgres",
        {
            "host": pg.host,
            "port": pg.port,
            "sslmode": pg.sslmode,
            "admin": f"{pg.admin_host}:{pg.admin_port}",
        },
    )
    pulumi.export(
        "verificationMode", settings.verification.mode if settings.verification.enabled else "off"
    )
    pulumi.export("serverHardening", hardening.databases)
    pulumi.export(BUDGET_OUTPUT, budget_output(budget))
    pulumi.export(OUTPUT_NAME, managed)
    pulumi.export(UNMANAGED_OUTPUT, admin.unmanaged)


build(load_settings())
