"""`AppDatabase`: one app's password, role, database, grants, extensions and credentials Secret.

Ordering (each arrow is a dependency edge, so a parallel `pulumi up` never runs two catalog updates
on one database at once — the cause of "tuple concurrently updated" in pulumi-postgresql):

    password → role → database → REVOKE CONNECT, TEMPORARY FROM PUBLIC → extension 1 → … → Secret
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_postgresql as postgresql
import pulumi_random as random

from postgres_apps.credentials import secret_data
from postgres_apps.namespace import MANAGED_BY, PART_OF
from postgres_apps.scram import role_verifier
from postgres_apps.settings import (
    AppSpec,
    DeletionPolicy,
    PostgresSettings,
    Profile,
    SecretExtras,
)

PASSWORD_LENGTH = 40
"""Alphanumeric only (URL-, pgpass- and shell-safe): 40 characters ≈ 238 bits."""


def secret_labels(app_name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Labels of the app's Secret: the operator's `extra` ones, then postgres-apps' own (config
    refuses an extra label that would replace one of those)."""
    return {**(extra or {}), "app.kubernetes.io/name": app_name, **MANAGED_BY, **PART_OF}


def retention_options(deletion: DeletionPolicy, allow_replace: bool) -> pulumi.ResourceOptions:
    """What the app's `deletion` policy means for its role and database.

    - `protect` (default): the engine refuses to delete or replace them (`protect=True`); removing
      the app from config is refused earlier, with the retire procedure (postgres_apps.retention).
    - `retain`: removing the app (or `pulumi destroy`) forgets them; database and role stay (and
      the app's Secret: see `AppDatabase`).
    - `drop`: removing the app drops database and role.

    A change that would replace them is refused unless `allowReplace`: `protect` makes the engine
    refuse it; otherwise the replacement is created first and fails on the existing name. With
    `allowReplace` the old one is deleted first (`deleteBeforeReplace`): data is lost.
    """
    return pulumi.ResourceOptions(
        protect=deletion == "protect",
        retain_on_delete=deletion == "retain",
        delete_before_replace=allow_replace,
    )


@dataclass
class AppDatabaseArgs:
    """Inputs of one app's database component (`AppDatabaseArgs.of` derives them from settings).

    The `postgresql` provider arrives through `opts.providers`; the Secret's `kubernetes` one too
    (else the default provider)."""

    name: str
    """The app's name: labels of its Secret, names of the child resources."""
    namespace: pulumi.Input[str]
    """Namespace of the app's Secret (an Output of its `AppsNamespace`, so it exists first)."""
    role_name: str
    """The login role (a valid unquoted identifier)."""
    database_name: str
    """The app's database, owned by the role."""
    secret_name: str
    """The Kubernetes Secret the app reads."""
    host: str
    """PostgreSQL host as the app reaches it (written into the Secret)."""
    port: int
    """PostgreSQL port as the app reaches it."""
    sslmode: str
    """libpq sslmode written into the Secret's URIs."""
    profile: Profile | None = None
    """Extra Secret keys in the form that app reads (`credentials.PROFILES`)."""
    secret: SecretExtras = field(default_factory=SecretExtras)
    """Templated keys, labels and annotations of the Secret beyond the built-in ones."""
    connection_limit: int = 20
    """The role's CONNECTION LIMIT."""
    extensions: Sequence[str] = ()
    """Extensions created in the database, in this order."""
    deletion: DeletionPolicy = "protect"
    """What removing the app does to role and database (`retention_options`)."""
    password_version: int = 0
    """Bump to rotate the generated password."""
    allow_replace: bool = False
    """Let a replacing change drop and recreate role and database."""

    @classmethod
    def of(
        cls, app: AppSpec, postgres: PostgresSettings, namespace: pulumi.Input[str] | None = None
    ) -> AppDatabaseArgs:
        """From one validated app and the server settings (`namespace` defaults to the app's)."""
        return cls(
            name=app.name,
            namespace=namespace if namespace is not None else app.namespace,
            role_name=app.role_name,
            database_name=app.database_name,
            secret_name=app.secret_name,
            host=postgres.host,
            port=postgres.port,
            sslmode=postgres.sslmode,
            profile=app.profile,
            secret=app.secret,
            connection_limit=app.connection_limit,
            extensions=tuple(app.extensions),
            deletion=app.deletion,
            password_version=app.password_version,
            allow_replace=app.allow_replace,
        )


class AppDatabase(pulumi.ComponentResource):
    """Everything one app needs in PostgreSQL and Kubernetes, least privilege by default."""

    password: random.RandomPassword
    role: postgresql.Role
    database: postgresql.Database
    revoke_public: postgresql.Grant
    extensions: list[postgresql.Extension]
    secret: k8s.core.v1.Secret

    role_name: pulumi.Output[str]
    database_name: pulumi.Output[str]
    secret_name: pulumi.Output[str]
    namespace: pulumi.Output[str]
    host: pulumi.Output[str]
    port: pulumi.Output[int]
    password_value: pulumi.Output[str]
    """Secret Output: the generated password."""
    password_verifier: pulumi.Output[str]
    """Secret Output: the SCRAM-SHA-256 verifier the role is created with (postgres_apps.scram)."""
    uri: pulumi.Output[str]
    """Secret Output: the Secret's `uri`, exactly as written into it."""
    connection_strings: pulumi.Output[dict[str, str]]
    """Secret Output: the keys marked as connection strings (`secret.connection_keys`) and their
    values as written into the Secret."""

    def __init__(
        self, name: str, args: AppDatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("postgres-apps:app_database:AppDatabase", name, None, opts)
        app = args
        child = pulumi.ResourceOptions(parent=self)
        in_pg = child  # the `postgresql` provider comes from opts.providers, through the parent
        retention = retention_options(app.deletion, app.allow_replace)

        self.password = random.RandomPassword(
            f"{name}-password",
            length=PASSWORD_LENGTH,
            special=False,
            min_lower=1,
            min_upper=1,
            min_numeric=1,
            keepers={"passwordVersion": str(app.password_version)},
            opts=child,
        )
        self.password_value = pulumi.Output.secret(self.password.result)
        # The server gets only the SCRAM verifier (never the plaintext: not in its log, not in
        # the provider's statements); the plaintext goes into the app's Secret alone.
        self.password_verifier = pulumi.Output.secret(
            self.password.result.apply(lambda plain: role_verifier(app.role_name, plain))
        )

        self.role = postgresql.Role(
            f"{name}-role",
            name=app.role_name,
            login=True,
            password=self.password_verifier,
            superuser=False,
            create_database=False,
            create_role=False,
            replication=False,
            bypass_row_level_security=False,
            inherit=True,
            connection_limit=app.connection_limit,
            opts=pulumi.ResourceOptions.merge(in_pg, retention),
        )
        self.database = postgresql.Database(
            f"{name}-database",
            name=app.database_name,
            owner=self.role.name,
            allow_connections=True,
            is_template=False,
            opts=pulumi.ResourceOptions.merge(
                in_pg,
                pulumi.ResourceOptions.merge(
                    retention, pulumi.ResourceOptions(depends_on=[self.role])
                ),
            ),
        )
        # No other role may connect: CONNECT and TEMPORARY revoked from PUBLIC. The owner keeps
        # its implicit privileges (an explicit owner grant would REVOKE ALL from it first).
        self.revoke_public = postgresql.Grant(
            f"{name}-revoke-public",
            database=self.database.name,
            role="public",
            object_type="database",
            privileges=[],
            opts=pulumi.ResourceOptions.merge(
                in_pg, pulumi.ResourceOptions(depends_on=[self.database])
            ),
        )
        self.extensions = []
        previous: pulumi.Resource = self.revoke_public
        for ext in app.extensions:
            # `deleted_with`: when the app's database is dropped the extension goes with it, so
            # the provider's `DROP EXTENSION` (RESTRICT upstream) is not run first — it would fail
            # on a table that uses the extension (a citext column) and stop the drop halfway.
            # Removing only the extension from the list still runs it: refused while in use.
            extension = postgresql.Extension(
                f"{name}-ext-{ext}",
                name=ext,
                database=self.database.name,
                opts=pulumi.ResourceOptions.merge(
                    in_pg,
                    pulumi.ResourceOptions(depends_on=[previous], deleted_with=self.database),
                ),
            )
            self.extensions.append(extension)
            previous = extension

        self.role_name = self.role.name
        self.database_name = self.database.name
        self.host = pulumi.Output.from_input(app.host)
        self.port = pulumi.Output.from_input(app.port)
        data = pulumi.Output.all(self.role.name, self.database.name, self.password_value).apply(
            lambda v: secret_data(
                host=app.host,
                port=app.port,
                dbname=v[1],
                user=v[0],
                password=v[2],
                sslmode=app.sslmode,
                profile=app.profile,
                templates=dict(app.secret.keys),
            )
        )
        self.uri = pulumi.Output.secret(data.apply(lambda d: d["uri"]))
        marked = app.secret.connection_keys
        self.connection_strings = pulumi.Output.secret(
            data.apply(lambda d: {key: d[key] for key in marked})
        )
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=app.secret_name,
                namespace=app.namespace,
                labels=secret_labels(app.name, dict(app.secret.labels)),
                # none at all when none are asked for: a Secret made before keeps its state
                annotations=dict(app.secret.annotations) or None,
            ),
            type="Opaque",
            string_data=pulumi.Output.secret(data),  # type: ignore[arg-type]
            # `retain` keeps the Secret with the role and database: the app keeps running on the
            # credentials it has, and whoever takes the database over finds them where they were.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.role, self.database, previous],
                retain_on_delete=app.deletion == "retain",
            ),
        )
        # Taken from the Secret itself, so whoever uses them waits for the Secret to exist.
        self.secret_name = self.secret.metadata.apply(lambda m: m.name or app.secret_name)
        self.namespace = self.secret.metadata.apply(lambda m: m.namespace or "")
        self.register_outputs(
            {
                "roleName": self.role_name,
                "databaseName": self.database_name,
                "secretName": self.secret_name,
                "namespace": self.namespace,
                "password": self.password_value,
            }
        )

    @property
    def ready_resources(self) -> list[pulumi.Resource]:
        """What must exist before the app (or its verification) can use the database."""
        return [self.role, self.database, self.revoke_public, *self.extensions, self.secret]
