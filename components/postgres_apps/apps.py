"""`PostgresApps`: every app's database, role, grants, Secret and verification, as one component.

What a Pulumi program writes to use postgres-apps (the stack program in this repository is one):

    apps = PostgresApps("postgres-apps", {"apps": ["app-test", {"name": "n8n", "profile": "n8n"}]})
    pulumi.export("managedApps", apps.managed_apps)   # the removal check reads it back

Args are validated by the same validator as the stack config (`postgres_apps.config`): every
problem at once, each named by its stack-config key path, before anything is registered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

import pulumi
import pulumi_postgresql as postgresql

from postgres_apps.admin import admin_access, admin_password
from postgres_apps.app_database import AppDatabase, AppDatabaseArgs
from postgres_apps.config import parse_settings
from postgres_apps.inventory import scope_of
from postgres_apps.namespace import AppsNamespace, AppsNamespaceArgs, adoption_guard
from postgres_apps.preflight import budget_output, connection_budget
from postgres_apps.retention import OUTPUT_NAME as MANAGED_OUTPUT
from postgres_apps.retention import guarded_managed_apps, previous_deployment, retiring_apps
from postgres_apps.retirement import OUTPUT_NAME as COPIES_OUTPUT
from postgres_apps.retirement import CopyPod, CopyTarget, RetirementCopy, record_of
from postgres_apps.server_hardening import ServerHardening, ServerHardeningArgs
from postgres_apps.settings import AppSpec, StackSettings
from postgres_apps.verification import ConnectivityCheck, ConnectivityCheckArgs, ConnectivityPeer
from postgres_apps.verification.apps_ready import AppsReady
from postgres_apps.verification.inputs import stack_kubeconfig
from postgres_apps.verification.namespace_probe import (
    NamespaceProbe,
    NamespaceProbeArgs,
    ProbeMember,
)
from postgres_apps.verification.provider import credentials_hash

WAS_AT_STACK_ROOT = [pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)]
"""0.1.x registered namespaces, the server hardening and every app at the stack's root; these
aliases keep their URNs (and so every child's) when they move under `PostgresApps`."""


class SecretArgs(TypedDict, total=False):
    """What an app's Secret carries beyond the built-in keys (`postgres-apps:apps[].secret`, and
    `postgres-apps:secret` for every app). Keys of these mappings are taken as written."""

    keys: Mapping[str, str]
    """Extra keys: templates over `${host}`, `${port}`, `${host_port}`, `${dbname}`, `${user}`,
    `${password}`, `${sslmode}`, `${uri}`, `${jdbc_uri}` (`$$` is a literal `$`)."""
    labels: Mapping[str, str]
    """Extra labels of the Secret."""
    annotations: Mapping[str, str]
    """Annotations of the Secret (not `pulumi.com/*`)."""
    connection_keys: Sequence[str]
    """Keys of `keys` that hold a libpq connection string: the gate logs in with each."""


class AppArgs(TypedDict, total=False):
    """One application (stack config `postgres-apps:apps[]`); only `name` is required."""

    name: str
    """Lowercase DNS label; role, database (`-` → `_`) and Secret (`<name>-db-credentials`)."""
    namespace: str
    """Where its Secret and check pod go (default: `apps_namespace`)."""
    profile: str
    """Extra Secret keys in the form that app reads: `n8n`, `paperless`, `gitea`
    (`credentials.PROFILES`, docs/runbooks/postgres-connectivity.md)."""
    connection_limit: int
    """The role's CONNECTION LIMIT (default 20)."""
    extensions: Sequence[str]
    """Extensions created in its database (trusted ones, or those in `allowed_extensions`)."""
    deletion: Literal["protect", "retain", "drop"]
    """What removing the app does: refuse (default), forget, or drop database and role."""
    password_version: int
    """Bump to rotate the generated password."""
    allow_replace: bool
    """Let a replacing change drop and recreate role/database (unprotected apps only)."""
    secret: SecretArgs
    """Templated keys, labels and annotations of its Secret."""


class PostgresServerArgs(TypedDict, total=False):
    """Where PostgreSQL is (`postgres-apps:postgres`); every key has the Bitnami chart's default."""

    host: str
    """Host the apps use (default `postgres-postgresql.data.svc.cluster.local`)."""
    port: int
    """Port the apps use (default 5432)."""
    sslmode: str
    """libpq sslmode written into the apps' URIs (default `prefer`)."""
    admin_host: str
    """Admin endpoint reachable from where Pulumi runs (default 127.0.0.1)."""
    admin_port: int
    """Admin port (default 5432)."""
    admin_user: str
    """Admin role (default `postgres`)."""
    admin_sslmode: str
    """sslmode of the admin connection (default `disable`, loopback only)."""
    allow_insecure_admin: bool
    """Accept `admin_sslmode: disable` to a non-loopback admin host."""
    admin_secret_namespace: str
    """Namespace of the Secret holding the admin password (default `data`)."""
    admin_secret_name: str
    """Name of that Secret (default `postgres-postgresql`)."""
    admin_secret_key: str
    """Key in that Secret (default `postgres-password`)."""
    harden_databases: Sequence[str]
    """Databases PUBLIC loses CONNECT and TEMPORARY on (default postgres, template1)."""
    connection_budget_warn_percent: int
    """Warn when the apps' connection limits use more of the server (default 80)."""


class VerificationArgs(TypedDict, total=False):
    """The post-deploy gate (`postgres-apps:verification`)."""

    enabled: bool
    """Run the gate (default true)."""
    mode: Literal["pod", "direct"]
    """A restricted pod in the app's namespace (default) or from where Pulumi runs."""
    image: str
    """Probe image with psql (default `docker.io/library/postgres:17-alpine`)."""
    image_pull_policy: str
    """Pull policy of the probe pod (default IfNotPresent)."""
    timeout_seconds: int
    """How long one check may take (default 120)."""
    latency_budget_ms: float
    """Round-trip p95 the gate accepts (default 100)."""
    rerun: Literal["always", "on-change"]
    """Check on every `up` (default) or only when the app's inputs change."""
    allowed_databases: Sequence[str]
    """Databases an app may reach without failing the isolation check."""


class UnmanagedArgs(TypedDict, total=False):
    """What the unmanaged report leaves out (`postgres-apps:unmanaged`)."""

    ignore_roles: Sequence[str]
    """Roles made outside the stack on purpose."""
    ignore_databases: Sequence[str]
    """Databases made outside the stack on purpose."""


class RetirementArgs(TypedDict, total=False):
    """Where `deletion: drop` keeps its copies (`postgres-apps:retirement`)."""

    directory: str
    """Directory on the Pulumi host for the verified dumps (default `retired-copies`, relative
    to the project directory)."""
    persistent_volume_claim: str
    """A claim in the admin Secret's namespace: a pod there takes the copies onto it instead."""


class PostgresAppsArgs(TypedDict, total=False):
    """Everything `PostgresApps` builds; the shape of the stack config, in snake_case.

    Plain values, not Outputs: they decide which resources exist. The admin password comes from
    the `postgres-apps:adminPassword` config secret or the admin Secret in the cluster."""

    apps: Sequence[AppArgs | str]
    """The applications; a bare name takes every default."""
    apps_namespace: str
    """Namespace of apps without their own (default `apps`)."""
    namespace_per_app: bool
    """Each app without `namespace` gets its own, named like the app."""
    allowed_extensions: Sequence[str]
    """Extensions beyond PostgreSQL's trusted ones that apps may ask for."""
    postgres: PostgresServerArgs
    """The server and the admin connection."""
    verification: VerificationArgs
    """The gate."""
    retired: Sequence[str]
    """Apps retired by hand: their removal is not refused."""
    unmanaged: UnmanagedArgs
    """Ignore-lists of the unmanaged report."""
    retirement: RetirementArgs
    """Where the copies taken before a drop go."""
    secret: SecretArgs
    """Secret keys, labels and annotations for every app (an app's own `secret` wins)."""
    pod_security_enforce: Mapping[str, str]
    """Namespace → Pod Security level it enforces: `restricted` (default), `baseline` or
    `privileged`; audit and warn stay `restricted`. Adopting an existing namespace that enforces
    less is refused unless its level is named here."""
    kube_context: str
    """kubeconfig context of the cluster the gate's pods run in (default: `kubernetes:context`)."""
    kubeconfig: pulumi.Input[str]
    """Secret: the kubeconfig (contents or path) the gate's pods are run with — give the one of
    your `kubernetes` provider, so the check reaches the cluster its Secret is in (default:
    `kubernetes:kubeconfig`, else the default kubeconfig)."""


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), key)


VERBATIM_MAPPINGS = frozenset(
    {"keys", "labels", "annotations", "pod_security_enforce", "podSecurityEnforce"}
)
"""Mappings whose keys are the operator's (Secret keys, label keys, namespaces), never renamed."""


def _rekey(value: object, rename: Any) -> object:
    if isinstance(value, Mapping):
        return {
            rename(str(k)): v if k in VERBATIM_MAPPINGS else _rekey(v, rename)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_rekey(v, rename) for v in value]
    return value


def config_from_args(args: PostgresAppsArgs) -> dict[str, object]:
    """The stack-config form of `args` (camelCase keys), as `parse_settings` reads it."""
    raw = dict(args)
    raw.pop("kube_context", None)
    raw.pop("kubeconfig", None)  # an Input, not config: handed to the gate as it is
    rekeyed = _rekey(raw, _camel)
    assert isinstance(rekeyed, dict)  # noqa: S101 - a Mapping maps to a dict
    return rekeyed


def args_from_config(raw: Mapping[str, object]) -> PostgresAppsArgs:
    """`PostgresAppsArgs` from the `postgres-apps:` stack config (`config.raw_config()`).

    Keys are only renamed, never checked here: `PostgresApps` validates, and its messages name
    the stack-config keys, so an unknown key stays unknown (and gets its "did you mean")."""
    rekeyed = _rekey(dict(raw), _snake)
    return rekeyed  # type: ignore[return-value]  # validated by settings_from_args


def settings_from_args(args: PostgresAppsArgs) -> StackSettings:
    """Validate `args` (raises `ConfigError` with every problem) into the settings contract."""
    kube_context = args.get("kube_context") or pulumi.Config("kubernetes").get("context")
    return parse_settings(config_from_args(args), kube_context=kube_context)


def _result_of(probe: NamespaceProbe, app: str) -> pulumi.Output[str]:
    """The app's entry of its namespace probe's results (JSON text; a secret, like all of them).
    An app the probe has no entry for gets "{}": its check fails saying so."""

    def pick(results: dict[str, Any] | None) -> str:
        entry = (results or {}).get(app)
        return entry if isinstance(entry, str) and entry else "{}"

    return probe.results.apply(pick)


def _credentials_sha256(app: str, db: AppDatabase) -> pulumi.Output[str]:
    """The check's credentials hash (`provider.credentials_hash`), for the namespace probe's
    members: one-way, so not a secret (the check stores the same hash in plain)."""

    def of(values: list[Any]) -> str:
        return credentials_hash(app, str(values[0]), values[1], values[2])

    both = pulumi.Output.all(db.password_value, db.uri, db.connection_strings)
    return pulumi.Output.unsecret(both.apply(of))


def _given_postgresql_provider(opts: pulumi.ResourceOptions | None) -> postgresql.Provider | None:
    providers = opts.providers if opts is not None else None
    if isinstance(providers, Mapping):
        found = providers.get("postgresql")
        return found if isinstance(found, postgresql.Provider) else None
    for provider in providers or []:
        if isinstance(provider, postgresql.Provider):
            return provider
    return None


class PostgresApps(pulumi.ComponentResource):
    """Per app: a least-privilege role, its database (isolated), a Secret in the app's namespace,
    and the verification gate; plus the namespaces and the server hardening they rely on.

    Providers through `opts.providers`: `kubernetes` for namespaces, Secrets and check pods (else
    the default provider); `postgresql` for roles, databases and grants. Without a `postgresql`
    provider the component makes the admin provider itself, behind the admin pre-flight, and
    reports unmanaged roles and databases (`unmanaged`). A given provider is used as it is."""

    apps: pulumi.Output[dict[str, Any]]
    """Per app: namespace, secretName, database, role, deletion and the gate's results."""
    postgres: pulumi.Output[dict[str, Any]]
    """host, port, sslmode the apps use and the admin endpoint."""
    verification_mode: pulumi.Output[str]
    """`pod`, `direct` or `off`."""
    server_hardening: pulumi.Output[list[str]]
    """Databases PUBLIC lost CONNECT and TEMPORARY on."""
    connection_budget: pulumi.Output[dict[str, object]]
    """The apps' connection limits against the server's."""
    managed_apps: pulumi.Output[dict[str, dict[str, str]]]
    """Apps and their deletion policy; export as `managedApps`: the next run's removal check."""
    retirement_copies: pulumi.Output[dict[str, Any]]
    """Per retired `drop` app, its verified copy (file, bytes, sha256, …); export as
    `retirementCopies`: the next run carries the records on."""
    unmanaged: pulumi.Output[dict[str, object]] | None
    """Roles/databases on the server no app declares (None with a given `postgresql` provider)."""
    databases: dict[str, AppDatabase]
    """Per app name, its `AppDatabase` (role, database, grants, Secret)."""
    checks: dict[str, ConnectivityCheck]
    """Per app name, its gate (empty with `verification.enabled: false`)."""

    def __init__(
        self, name: str, args: PostgresAppsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        settings = settings_from_args(args)  # before registering: bad input changes nothing
        super().__init__("postgres-apps:apps:PostgresApps", name, None, opts)
        pg = settings.postgres
        # The removal check comes first: every resource below waits for it, so a refused removal
        # (a protected app gone from config) stops the run before anything is created or changed,
        # also when the same change adds another app. (A read at the stack's root: reads carry
        # no alias, and it reads this stack's own outputs.)
        previous = previous_deployment()
        self.managed_apps = guarded_managed_apps(settings.apps, settings.retired, previous=previous)
        # … and so does adopting a namespace whose Pod Security it would tighten unasked.
        levels = {ns: settings.enforce_level(ns) for ns in settings.namespaces}
        adoption = adoption_guard(
            levels, settings.kube_context, args.get("kubeconfig") or stack_kubeconfig()
        )
        after_guard = pulumi.ResourceOptions(
            parent=self,
            depends_on=pulumi.Output.all(self.managed_apps, adoption).apply(lambda _: []),
        )
        moved = pulumi.ResourceOptions.merge(
            after_guard, pulumi.ResourceOptions(aliases=WAS_AT_STACK_ROOT)
        )
        namespaces = {
            ns: AppsNamespace(
                f"namespace-{ns}",
                AppsNamespaceArgs(name=ns, enforce=level),
                opts=moved,
            )
            for ns, (level, _named) in levels.items()
        }
        budget = connection_budget(settings)
        self.connection_budget = pulumi.Output.from_input(budget_output(budget))
        provider = _given_postgresql_provider(opts)
        password: list[pulumi.Output[str]] = []

        def admin_secret() -> pulumi.Output[str]:
            """Read once, only when something needs it (an own admin provider, a copy)."""
            if not password:
                password.append(admin_password(pg, pulumi.ResourceOptions(parent=self)))
            return password[0]

        self.retirement_copies = self._retirement_copies(
            previous, settings, admin_secret, args.get("kubeconfig"), after_guard
        )
        self.unmanaged = None
        if provider is None:
            admin = admin_access(
                pg,
                admin_secret(),
                scope_of(settings),
                opts=after_guard,
                budget=budget,
            )
            provider = admin.provider
            self.unmanaged = admin.unmanaged
        in_pg = pulumi.ResourceOptions(providers={"postgresql": provider})
        hardening = ServerHardening(
            "server-hardening",
            ServerHardeningArgs(databases=pg.harden_databases),
            opts=pulumi.ResourceOptions.merge(
                moved, pulumi.ResourceOptions(providers={"postgresql": provider})
            ),
        )
        self.databases = {
            app.name: AppDatabase(
                app.name,
                AppDatabaseArgs.of(app, pg, namespace=namespaces[app.namespace].name),
                opts=pulumi.ResourceOptions.merge(moved, in_pg),
            )
            for app in settings.apps
        }
        self.checks = (
            self._checks(settings, hardening, args.get("kubeconfig"))
            if settings.verification.enabled
            else {}
        )
        self.apps = pulumi.Output.from_input(self._apps_output(settings))
        self.postgres = pulumi.Output.from_input(
            {
                "host": pg.host,
                "port": pg.port,
                "sslmode": pg.sslmode,
                "admin": f"{pg.admin_host}:{pg.admin_port}",
            }
        )
        verification = settings.verification
        self.verification_mode = pulumi.Output.from_input(
            verification.mode if verification.enabled else "off"
        )
        self.server_hardening = hardening.databases
        self.register_outputs(
            {
                "apps": self.apps,
                "postgres": self.postgres,
                "verificationMode": self.verification_mode,
                "serverHardening": self.server_hardening,
                "connectionBudget": self.connection_budget,
                "managedApps": self.managed_apps,
                COPIES_OUTPUT: self.retirement_copies,
                "unmanaged": self.unmanaged,
            }
        )

    def _retirement_copies(
        self,
        previous: pulumi.StackReference,
        settings: StackSettings,
        admin_secret: Callable[[], pulumi.Output[str]],
        kubeconfig: pulumi.Input[str] | None,
        opts: pulumi.ResourceOptions,
    ) -> pulumi.Output[dict[str, Any]]:
        """A `RetirementCopy` per `drop` app gone from config; the records of earlier runs kept."""
        pg = settings.postgres
        directory = str(Path(settings.retirement.directory).expanduser().absolute())
        claim = settings.retirement.persistent_volume_claim
        pod = (
            CopyPod(
                namespace=pg.admin_secret_namespace,
                claim=claim,
                secret_name=pg.admin_secret_name,
                secret_key=pg.admin_secret_key,
                image=settings.verification.image,
                image_pull_policy=settings.verification.image_pull_policy,
                kube_context=settings.kube_context,
                start_timeout_seconds=settings.verification.timeout_seconds,
            )
            if claim
            else None
        )

        def build(values: list[Any]) -> pulumi.Output[dict[str, Any]] | dict[str, Any]:
            previous_apps, earlier = values
            ledger = dict(earlier) if isinstance(earlier, Mapping) else {}
            records: dict[str, pulumi.Output[dict[str, Any]]] = {}
            for name, record in retiring_apps(previous_apps, settings.apps, settings.retired):
                target = CopyTarget(
                    app=name,
                    database=record.get("database", name.replace("-", "_")),
                    host=pg.host if pod else pg.admin_host,
                    port=pg.port if pod else pg.admin_port,
                    user=pg.admin_user,
                    sslmode=pg.sslmode if pod else pg.admin_sslmode,
                    directory=directory,
                )
                copy = RetirementCopy(
                    f"{name}-retirement-copy",
                    target,
                    None if pod else admin_secret(),
                    opts,
                    pod=pod,
                    kubeconfig=kubeconfig,
                )
                records[name] = record_of(copy, target)
            if not records:
                return ledger
            return pulumi.Output.all(**records).apply(lambda new: {**ledger, **new})

        return pulumi.Output.all(
            previous.get_output(MANAGED_OUTPUT), previous.get_output(COPIES_OUTPUT)
        ).apply(build)

    def _checks(
        self,
        settings: StackSettings,
        hardening: ServerHardening,
        kubeconfig: pulumi.Input[str] | None,
    ) -> dict[str, ConnectivityCheck]:
        """One gate per app, parented to the app (it reads the app's Secret). In pod mode one
        `NamespaceProbe` per namespace runs the probe pod for all its apps first."""
        pg = settings.postgres
        pod_mode = settings.verification.mode == "pod"
        # Every check and namespace probe waits for `AppsReady`, which waits for every app: the
        # peers are plain names, so that the state grows linearly with the apps (`apps_ready`).
        ready = AppsReady(
            "apps-ready",
            [app.name for app in settings.apps],
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    *(r for db in self.databases.values() for r in db.ready_resources),
                    *hardening.ready_resources,
                ],
            ),
        )
        peers_of = {
            app.name: [
                ConnectivityPeer(database=other.database_name, role=other.role_name)
                for other in settings.apps
                if other.name != app.name
            ]
            for app in settings.apps
        }
        probes = self._namespace_probes(settings, ready, kubeconfig, peers_of) if pod_mode else {}
        checks: dict[str, ConnectivityCheck] = {}
        for app in settings.apps:
            db = self.databases[app.name]
            probe = probes.get(app.namespace)
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
                    peers=peers_of[app.name],
                    settings=settings.verification,
                    kube_context=settings.kube_context,
                    kubeconfig=kubeconfig,
                    uri=db.uri,
                    connection_keys=app.secret.connection_keys,
                    connection_strings=db.connection_strings,
                    probe_run=probe.run_id if probe else None,
                    probe_report=_result_of(probe, app.name) if probe else None,
                ),
                opts=pulumi.ResourceOptions(parent=db, depends_on=[ready]),
            )
        return checks

    def _namespace_probes(
        self,
        settings: StackSettings,
        ready: AppsReady,
        kubeconfig: pulumi.Input[str] | None,
        peers_of: Mapping[str, list[ConnectivityPeer]],
    ) -> dict[str, NamespaceProbe]:
        """Pod mode: one probe run per namespace, after every app (`ready`)."""
        by_namespace: dict[str, list[AppSpec]] = {}
        for app in settings.apps:
            by_namespace.setdefault(app.namespace, []).append(app)
        probes: dict[str, NamespaceProbe] = {}
        for namespace, apps in by_namespace.items():
            members = []
            for app in apps:
                db = self.databases[app.name]
                members.append(
                    ProbeMember(
                        app_name=app.name,
                        secret_name=db.secret_name,
                        host=db.host,
                        port=db.port,
                        database=db.database_name,
                        username=db.role_name,
                        credentials_sha256=_credentials_sha256(app.name, db),
                        peers=peers_of[app.name],
                        sslmode=settings.postgres.sslmode,
                        connection_keys=app.secret.connection_keys,
                    )
                )
            probes[namespace] = NamespaceProbe(
                f"{namespace}-probe",
                NamespaceProbeArgs(
                    namespace=namespace,
                    members=members,
                    settings=settings.verification,
                    kube_context=settings.kube_context,
                    kubeconfig=kubeconfig,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ready]),
            )
        return probes

    def _apps_output(self, settings: StackSettings) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for app in settings.apps:
            db = self.databases[app.name]
            entry: dict[str, Any] = {
                "namespace": db.namespace,
                "secretName": db.secret_name,
                "database": db.database_name,
                "role": db.role_name,
                "deletion": app.deletion,
            }
            check = self.checks.get(app.name)
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
            out[app.name] = entry
        return out
