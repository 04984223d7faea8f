"""`AppDatabase` on its own under mocks: every child's properties, options and dependency edges."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_postgresql as postgresql
import pytest

from postgres_apps.app_database import (
    PASSWORD_LENGTH,
    AppDatabase,
    AppDatabaseArgs,
    retention_options,
    secret_labels,
)
from postgres_apps.credentials import BASE_KEYS, PROFILE_KEYS
from postgres_apps.scram import role_verifier
from postgres_apps.settings import AppSpec, DeletionPolicy, PostgresSettings, SecretExtras
from tests.unit.conftest import (
    AWKWARD_PASSWORD,
    ProgramMocks,
    Registration,
    Run,
    is_secret,
    run_under_mocks,
    unwrap,
)

PG = PostgresSettings(sslmode="require")
T_PASSWORD = "random:index/randomPassword:RandomPassword"
T_ROLE = "postgresql:index/role:Role"
T_DATABASE = "postgresql:index/database:Database"
T_GRANT = "postgresql:index/grant:Grant"
T_EXTENSION = "postgresql:index/extension:Extension"
T_SECRET = "kubernetes:core/v1:Secret"
T_COMPONENT = "postgres-apps:app_database:AppDatabase"


def build(app: AppSpec, password: str = "Alnum0Password1") -> tuple[Run, list[AppDatabase]]:  # noqa: S107
    built: list[AppDatabase] = []

    def body() -> None:
        provider = postgresql.Provider("admin", host="127.0.0.1", username="postgres")
        built.append(
            AppDatabase(
                app.name,
                AppDatabaseArgs.of(app, PG),
                opts=pulumi.ResourceOptions(providers={"postgresql": provider}),
            )
        )

    run = run_under_mocks(body, ProgramMocks(passwords={app.name: password}))
    return run, built


def child(run: Run, type_: str, name: str) -> Registration:
    return run.monitor.one(type_, name)


def test_children_and_parents() -> None:
    run, _ = build(AppSpec(name="app-test", namespace="apps"))
    component = child(run, T_COMPONENT, "app-test")
    names = {(r.type, r.name) for r in run.monitor.registrations if r.parent == component.urn}
    assert names == {
        (T_PASSWORD, "app-test-password"),
        (T_ROLE, "app-test-role"),
        (T_DATABASE, "app-test-database"),
        (T_GRANT, "app-test-revoke-public"),
        (T_SECRET, "app-test-secret"),
    }
    admin = next(r for r in run.monitor.registrations if r.type == "pulumi:providers:postgresql")
    for type_ in (T_ROLE, T_DATABASE, T_GRANT):
        r = next(r for r in run.monitor.registrations if r.type == type_)
        assert r.provider.startswith(admin.urn + "::"), f"{type_} not through the admin provider"


def test_password_generation() -> None:
    run, _ = build(AppSpec(name="app-test", namespace="apps", password_version=7))
    pw = child(run, T_PASSWORD, "app-test-password").plain
    assert pw["length"] == PASSWORD_LENGTH >= 32
    assert pw["special"] is False  # alphanumeric: URL-, pgpass- and shell-safe
    assert pw["minLower"] == pw["minUpper"] == pw["minNumeric"] == 1
    assert pw["keepers"] == {"passwordVersion": "7"}


def test_role_least_privilege() -> None:
    run, _ = build(AppSpec(name="my-app", namespace="apps", connection_limit=7))
    role = child(run, T_ROLE, "my-app-role")
    props = role.plain
    assert props["name"] == "my_app"
    assert props["login"] is True
    for flag in (
        "superuser",
        "createDatabase",
        "createRole",
        "replication",
        "bypassRowLevelSecurity",
    ):
        assert props[flag] is False, flag
    assert props["connectionLimit"] == 7
    # the server receives the SCRAM verifier, never the plaintext (postgres_apps.scram)
    assert props["password"] == role_verifier("my_app", "Alnum0Password1")
    assert props["password"].startswith("SCRAM-SHA-256$4096:")
    assert "Alnum0Password1" not in props["password"]
    assert is_secret(role.inputs["password"]), "the role's password must be a secret input"
    password = child(run, T_PASSWORD, "my-app-password")
    assert password.urn in role.dependencies


def test_database_owned_by_role_after_role() -> None:
    run, _ = build(AppSpec(name="my-app", namespace="apps"))
    role = child(run, T_ROLE, "my-app-role")
    db = child(run, T_DATABASE, "my-app-database")
    assert db.plain["name"] == "my_app"
    assert db.plain["owner"] == "my_app"
    assert db.plain["allowConnections"] is True
    assert db.plain["isTemplate"] is False
    assert role.urn in db.dependencies


def test_connect_revoked_from_public_after_database() -> None:
    run, _ = build(AppSpec(name="my-app", namespace="apps"))
    db = child(run, T_DATABASE, "my-app-database")
    grant = child(run, T_GRANT, "my-app-revoke-public")
    assert grant.plain == {
        "database": "my_app",
        "role": "public",
        "objectType": "database",
        "privileges": [],
    }
    assert db.urn in grant.dependencies
    # no other grant: the owner keeps its implicit privileges, nobody else gets any
    assert len(run.monitor.of_type(T_GRANT)) == 1


def test_grants_and_extensions_are_chained() -> None:
    """One catalog change at a time per database: grant → ext1 → ext2 → Secret."""
    app = AppSpec(name="geo", namespace="apps", extensions=("postgis", "pg_trgm", "uuid-ossp"))
    run, built = build(app)
    grant = child(run, T_GRANT, "geo-revoke-public")
    exts = [child(run, T_EXTENSION, f"geo-ext-{e}") for e in app.extensions]
    assert [e.plain["name"] for e in exts] == list(app.extensions)
    assert all(e.plain["database"] == "geo" for e in exts)
    assert grant.urn in exts[0].dependencies
    assert exts[0].urn in exts[1].dependencies
    assert exts[1].urn in exts[2].dependencies
    # dropped with the database: no DROP EXTENSION (RESTRICT) first, which a column using it blocks
    database = child(run, T_DATABASE, "geo-database")
    assert all(e.deleted_with == database.urn for e in exts)
    secret = child(run, T_SECRET, "geo-secret")
    assert exts[2].urn in secret.dependencies
    # what the verification waits for: all of it
    assert [r._name for r in built[0].ready_resources] == [
        "geo-role",
        "geo-database",
        "geo-revoke-public",
        *[f"geo-ext-{e}" for e in app.extensions],
        "geo-secret",
    ]


@pytest.mark.parametrize("profile", [None, "n8n", "paperless"])
def test_secret(profile: Any) -> None:
    app = AppSpec(name="my-app", namespace="team-a", profile=profile)
    run, _ = build(app, password=AWKWARD_PASSWORD)
    secret = child(run, T_SECRET, "my-app-secret")
    meta = secret.plain["metadata"]
    assert meta["name"] == "my-app-db-credentials"
    assert meta["namespace"] == "team-a"
    assert meta["labels"] == {
        "app.kubernetes.io/name": "my-app",
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/part-of": "postgres-apps",
    }
    assert meta["labels"] == secret_labels("my-app")
    assert secret.plain["type"] == "Opaque"
    assert is_secret(secret.inputs["stringData"]), "Secret data must be a Pulumi secret"
    data = unwrap(secret.inputs["stringData"])
    expected_keys = set(BASE_KEYS) | set(PROFILE_KEYS.get(profile, ()))
    assert set(data) == expected_keys
    assert data["password"] == AWKWARD_PASSWORD
    assert data["host"] == PG.host
    assert "sslmode=require" in data["uri"]
    for dep in ("my-app-role", "my-app-database"):
        type_ = T_ROLE if dep.endswith("role") else T_DATABASE
        assert child(run, type_, dep).urn in secret.dependencies


def test_secret_extras_reach_the_secret_and_nothing_else_changes_without_them() -> None:
    extras = SecretExtras(
        keys=(("APP_DB_URL", "${uri}"), ("APP_DB_HOSTPORT", "${host_port}"), ("PRICE", "$$5")),
        labels=(("team", "automation"),),
        annotations=(("reloader.stakater.com/match", "true"),),
        connection_keys=("APP_DB_URL",),
    )
    app = AppSpec(name="my-app", namespace="team-a", profile="n8n", secret=extras)
    run, _ = build(app, password=AWKWARD_PASSWORD)
    secret = child(run, T_SECRET, "my-app-secret")
    data = unwrap(secret.inputs["stringData"])
    assert set(data) == set(BASE_KEYS) | set(PROFILE_KEYS["n8n"]) | {
        "APP_DB_URL",
        "APP_DB_HOSTPORT",
        "PRICE",
    }
    assert data["APP_DB_URL"] == data["uri"]
    assert data["APP_DB_HOSTPORT"] == f"{PG.host}:{PG.port}"
    assert data["PRICE"] == "$5"
    meta = secret.plain["metadata"]
    assert meta["labels"] == {**secret_labels("my-app"), "team": "automation"}
    assert meta["annotations"] == {"reloader.stakater.com/match": "true"}
    # without extras the Secret has no annotations at all (a Secret made before stays as it is)
    plain, _ = build(AppSpec(name="my-app", namespace="team-a"))
    assert "annotations" not in child(plain, T_SECRET, "my-app-secret").plain["metadata"]


def test_component_outputs_keep_password_secret() -> None:
    run, _ = build(AppSpec(name="app-test", namespace="apps"), password=AWKWARD_PASSWORD)
    component = child(run, T_COMPONENT, "app-test")
    outputs = run.monitor.component_outputs[component.urn]
    assert is_secret(outputs["password"])
    assert unwrap(outputs["password"]) == AWKWARD_PASSWORD
    assert outputs["roleName"] == "app_test"
    assert outputs["databaseName"] == "app_test"
    assert outputs["secretName"] == "app-test-db-credentials"
    assert outputs["namespace"] == "apps"
    assert not any(is_secret(outputs[k]) for k in ("roleName", "databaseName", "secretName"))


def test_password_output_is_secret() -> None:
    seen: list[bool] = []

    def body() -> None:
        provider = postgresql.Provider("admin", host="127.0.0.1", username="postgres")
        db = AppDatabase(
            "app-test",
            AppDatabaseArgs.of(AppSpec(name="app-test", namespace="apps"), PG),
            opts=pulumi.ResourceOptions(providers={"postgresql": provider}),
        )

        async def record() -> None:
            seen.append(await db.password_value.is_secret())
            seen.append(await db.role_name.is_secret())

        pulumi.Output.from_input(record())  # type: ignore[arg-type]

    run_under_mocks(body, ProgramMocks())
    assert seen == [True, False]


@pytest.mark.parametrize(
    ("deletion", "allow_replace", "protect", "retain", "delete_first"),
    [
        ("protect", False, True, False, False),
        ("retain", False, False, True, False),
        ("drop", False, False, False, False),
        ("drop", True, False, False, True),
    ],
)
def test_deletion_policy_options(
    deletion: DeletionPolicy, allow_replace: bool, protect: bool, retain: bool, delete_first: bool
) -> None:
    app = AppSpec(name="x1", namespace="apps", deletion=deletion, allow_replace=allow_replace)
    opts = retention_options(app.deletion, app.allow_replace)
    assert (opts.protect, opts.retain_on_delete, opts.delete_before_replace) == (
        protect,
        retain,
        delete_first,
    )
    run, _ = build(app)
    for type_, name in ((T_ROLE, "x1-role"), (T_DATABASE, "x1-database")):
        r = child(run, type_, name)
        assert r.protect is protect, name
        assert bool(r.retain_on_delete) is retain, name
        assert r.delete_before_replace is delete_first, name
    # role and database carry the whole policy; the grants follow the app
    grant = child(run, T_GRANT, "x1-revoke-public")
    assert not grant.protect
    assert not grant.retain_on_delete
    # the Secret is never protected (rotation rewrites it) but is kept with a retained database:
    # the app keeps running on the credentials it has
    secret = child(run, T_SECRET, "x1-secret")
    assert not secret.protect
    assert bool(secret.retain_on_delete) is retain
