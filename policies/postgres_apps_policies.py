"""Validators of the postgres-apps CrossGuard policy pack.

Importing this module starts nothing: the `PolicyPack` (which serves the policies to the engine
over gRPC and never returns) is only built by `policies/__main__.py`. Every validator is a plain
function of the args object CrossGuard hands it, so tests call them directly.

What CrossGuard can see (pulumi-policy 1.21, engine 3.27x):
- resource policies get the resource's *new* inputs and options (`protect`, `deleteBeforeReplace`,
  `ignoreChanges`, ...), never its old state nor the planned operation (create/update/replace);
  resources that are only read (`Secret.get`) are not analyzed;
- stack policies get every resource of the resulting stack (outputs, read resources included), with
  parents, dependencies and property dependencies, and each resource's provider inputs.
A planned *replace* is therefore invisible to the pack: it refuses the options that make a
replacement destructive and leaves the plan itself to the pull-request gate
(`tools/preview_comment.py --fail-on-database-replace`) and to `protect` (the engine refuses to
replace or delete a protected resource).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PACK_NAME: Final = "postgres-apps"

ROLE_TYPE: Final = "postgresql:index/role:Role"
DATABASE_TYPE: Final = "postgresql:index/database:Database"
GRANT_TYPE: Final = "postgresql:index/grant:Grant"
GRANT_ROLE_TYPE: Final = "postgresql:index/grantRole:GrantRole"
DEFAULT_PRIVILEGES_TYPE: Final = "postgresql:index/defaultPrivileges:DefaultPrivileges"
DEPRECATED_DEFAULT_PRIVILEGES_TYPE: Final = "postgresql:index/defaultPrivileg:DefaultPrivileg"
PRIVILEGE_TYPES: Final = (GRANT_TYPE, DEFAULT_PRIVILEGES_TYPE, DEPRECATED_DEFAULT_PRIVILEGES_TYPE)
POSTGRESQL_PROVIDER_TYPE: Final = "pulumi:providers:postgresql"
SECRET_TYPE: Final = "kubernetes:core/v1:Secret"  # noqa: S105
CONFIG_MAP_TYPE: Final = "kubernetes:core/v1:ConfigMap"
NAMESPACE_TYPE: Final = "kubernetes:core/v1:Namespace"
STACK_TYPE: Final = "pulumi:pulumi:Stack"
APP_DATABASE_COMPONENT: Final = "postgres-apps:app_database:AppDatabase"
APPS_NAMESPACE_COMPONENT: Final = "postgres-apps:namespace:AppsNamespace"

CREDENTIALS_SECRET_SUFFIX: Final = "-db-credentials"  # noqa: S105
CREDENTIALS_KEYS: Final = frozenset({"DATABASE_URL", "jdbc-uri", "pgpass"})
LABEL_NAME: Final = "app.kubernetes.io/name"
REQUIRED_SECRET_LABELS: Final = {
    "app.kubernetes.io/managed-by": "pulumi",
    "app.kubernetes.io/part-of": "postgres-apps",
}
POD_SECURITY_MODES: Final = ("enforce", "audit", "warn")
COPYING_ANNOTATION_PREFIXES: Final = (
    "replicator.v1.mittwald.de/",
    "reflector.v1.k8s.emberstack.com/",
    "kubed.appscode.com/",
)
"""Annotations that make a controller copy a Secret into other namespaces (kubernetes-replicator,
kubernetes-reflector, kubed); the same list as the program's config check (a unit test compares)."""

DEFAULT_MAX_CONNECTION_LIMIT: Final = 100
DEFAULT_APP_NAMESPACES: Final = ("apps",)
DEFAULT_ADMIN_SECRET_NAMESPACE: Final = "data"  # noqa: S105
DEFAULT_ADMIN_SECRET_NAME: Final = "postgres-postgresql"  # noqa: S105
DEFAULT_ADMIN_SECRET_KEY: Final = "postgres-password"  # noqa: S105
MIN_SUBSTRING_PASSWORD_LENGTH: Final = 8
"""Shorter admin passwords are only matched as whole values (a 3-character password would match
half the strings in the stack)."""

SYSTEM_DATABASES: Final = ("postgres", "template0", "template1")
"""The server's own databases: no role is granted anything there (revokes, `privileges: []`, are
fine: the stack revokes CONNECT/TEMPORARY from PUBLIC on them)."""

# The privileges PostgreSQL accepts per object type, as the postgresql provider validates them
# before it runs GRANT: the `allowedPrivileges` map of cyrilgdn/terraform-provider-postgresql,
# postgresql/helpers.go (used by `validatePrivileges`). Anything else (a typo, lower case, SQL) is
# refused here, at preview, instead of reaching the provider's statement.
ALLOWED_PRIVILEGES: Final[Mapping[str, tuple[str, ...]]] = {
    "database": ("ALL", "CREATE", "CONNECT", "TEMPORARY"),
    "table": ("ALL", "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"),
    "sequence": ("ALL", "USAGE", "SELECT", "UPDATE"),
    "schema": ("ALL", "CREATE", "USAGE"),
    "function": ("ALL", "EXECUTE"),
    "procedure": ("ALL", "EXECUTE"),
    "routine": ("ALL", "EXECUTE"),
    "type": ("ALL", "USAGE"),
    "foreign_data_wrapper": ("ALL", "USAGE"),
    "foreign_server": ("ALL", "USAGE"),
    "column": ("ALL", "SELECT", "INSERT", "UPDATE", "REFERENCES"),
}

INSECURE_SSLMODES: Final = ("disable", "allow", "prefer")
"""libpq modes that may talk plain text (allow/prefer fall back to it without a word)."""
LOOPBACK_NAMES: Final = ("localhost",)

# Role attributes an app role must not have: input property → PostgreSQL keyword.
FORBIDDEN_ROLE_ATTRIBUTES: Final = (
    ("superuser", "SUPERUSER"),
    ("createRole", "CREATEROLE"),
    ("createDatabase", "CREATEDB"),
    ("replication", "REPLICATION"),
    ("bypassRowLevelSecurity", "BYPASSRLS"),
)


class _Unknown:
    """A value the engine does not know yet (preview of a value computed by another resource)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Final = _Unknown()


# --- reading props safely ------------------------------------------------------------------------
# CrossGuard wraps props in a proxy that raises UnknownValueError when an unknown value is *read*
# (including `key in props`, which reads the value). Every read goes through these helpers so that
# one unknown value skips one check instead of aborting the whole policy.


def get(props: Any, key: str) -> Any:
    """`props[key]`; None when absent or not a mapping, UNKNOWN when not known yet."""
    if not isinstance(props, Mapping):
        return None
    try:
        return props[key]
    except KeyError:
        return None
    except UnknownValueError:
        return UNKNOWN


def get_path(props: Any, *keys: str) -> Any:
    """Nested `get`; stops at the first missing or unknown level."""
    value = props
    for key in keys:
        value = get(value, key)
        if value is None or value is UNKNOWN:
            return value
    return value


def items(value: Any) -> Iterator[tuple[str, Any]]:
    """Known (key, value) pairs of a mapping (unknown values are left out)."""
    if not isinstance(value, Mapping):
        return
    for key in list(value):
        item = get(value, key)
        if item is not UNKNOWN:
            yield str(key), item


def elements(value: Any) -> Iterator[Any]:
    """Known elements of a sequence (unknown elements are left out)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return
    for index in range(len(value)):
        try:
            yield value[index]
        except UnknownValueError:
            continue


def strings_in(value: Any) -> Iterator[str]:
    """Every known string anywhere inside a value (mappings, sequences, scalars)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for _, item in items(value):
            yield from strings_in(item)
    elif isinstance(value, Sequence) and not isinstance(value, bytes):
        for item in elements(value):
            yield from strings_in(item)


def config_strings(config: Mapping[str, Any], key: str, default: Sequence[str]) -> list[str]:
    value = config.get(key)
    if value is None:
        return list(default)
    return [str(v) for v in value]


def config_int(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key)
    # Policy config arrives as JSON through protobuf Struct: every number is a float.
    return default if value is None else int(value)


def config_str(config: Mapping[str, Any], key: str, default: str) -> str:
    value = config.get(key)
    return default if value is None else str(value)


def number(value: Any) -> str:
    """20.0 (protobuf numbers) → "20"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parent_type(urn: str) -> str:
    """The qualified type of a URN (`Parent$Child`) minus its last segment: the parents' types."""
    # urn:pulumi:<stack>::<project>::<parent-type>$<type>::<name>
    parts = urn.split("::")
    if len(parts) < 4:
        return ""
    qualified = parts[2]
    return qualified.rsplit("$", 1)[0] if "$" in qualified else ""


def metadata(props: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(name, namespace, labels) of a Kubernetes object's `metadata`."""
    meta = get(props, "metadata")
    return get(meta, "name"), get(meta, "namespace"), get(meta, "labels")


def object_name(props: Mapping[str, Any], fallback: str) -> str:
    name, namespace, _ = metadata(props)
    name_text = name if isinstance(name, str) else f"<{fallback}>"
    if namespace is None:
        return name_text
    namespace_text = namespace if isinstance(namespace, str) else "<unknown>"
    return f"{namespace_text}/{name_text}"


def secret_keys(props: Mapping[str, Any]) -> set[str]:
    """Known keys of a Secret's `data` and `stringData`."""
    keys: set[str] = set()
    for field in ("data", "stringData"):
        value = get(props, field)
        if isinstance(value, Mapping):
            keys.update(str(k) for k in value)
    return keys


def role_label(props: Mapping[str, Any], fallback: str) -> str:
    name = get(props, "name")
    return name if isinstance(name, str) else fallback


def _for_resource(report_violation: ReportViolation) -> Callable[[str], None]:
    """Resource policies report against the analyzed resource: no URN to pass."""

    def report(message: str) -> None:
        report_violation(message, None)

    return report


# --- app roles -----------------------------------------------------------------------------------


def validate_app_role(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """App roles: no SUPERUSER/CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS, no role memberships, and
    a connection limit between 1 and `maxConnectionLimit`."""
    report = _for_resource(report_violation)
    if args.resource_type != ROLE_TYPE:
        return
    config = args.get_config()
    label = role_label(args.props, args.name)
    if label in config_strings(config, "exemptRoles", ()):
        return
    for prop, keyword in FORBIDDEN_ROLE_ATTRIBUTES:
        value = get(args.props, prop)
        if value is UNKNOWN:
            report(
                f"role '{label}': {prop} is not known during preview; "
                f"app roles must set it to false explicitly (NO{keyword})"
            )
        elif value:
            report(f"role '{label}' has {keyword}; app roles must be NO{keyword}")

    max_limit = config_int(config, "maxConnectionLimit", DEFAULT_MAX_CONNECTION_LIMIT)
    limit = get(args.props, "connectionLimit")
    if limit is UNKNOWN:
        report(
            f"role '{label}': connectionLimit is not known during preview; set it to 1..{max_limit}"
        )
    elif limit is None or limit == -1:
        report(
            f"role '{label}' has no connection limit (connectionLimit unset or -1); "
            f"set it to 1..{max_limit}"
        )
    elif not 1 <= limit <= max_limit:
        report(
            f"role '{label}' has connectionLimit {number(limit)}; "
            f"it must be between 1 and {max_limit}"
        )

    memberships = sorted(str(r) for r in elements(get(args.props, "roles")))
    if memberships:
        report(
            f"role '{label}' is a member of {', '.join(memberships)}; "
            "app roles must not be granted other roles"
        )


# --- databases -----------------------------------------------------------------------------------


def _app_key(name: str) -> str:
    """App name or database name → database name (`-` → `_`), the form app lists are compared in."""
    return name.replace("-", "_")


def _listed(name: Any, config: Mapping[str, Any], key: str) -> bool:
    """Is this database's app in the policy config list `key`?"""
    listed = {_app_key(n) for n in config_strings(config, key, ())}
    return isinstance(name, str) and _app_key(name) in listed


def validate_database_protected(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """A database is `protect`ed unless its app is listed in `unprotectedApps`: the second key of
    the per-app opt-out (`deletion: drop` or `retain` in the stack config says it, the policy
    config confirms it). CrossGuard does not see `retainOnDelete`, so `retain` apps are listed too.
    """
    report = _for_resource(report_violation)
    if args.resource_type != DATABASE_TYPE or args.opts.protect:
        return
    name = get(args.props, "name")
    if _listed(name, args.get_config(), "unprotectedApps"):
        return
    label = name if isinstance(name, str) else args.name
    report(
        f"database '{label}' is not protected: removing its app would DROP DATABASE '{label}'. "
        "Keep protect=True, or opt the app out (`deletion: drop` or `retain` in the stack config) "
        "and list it in this policy's unprotectedApps config"
    )


def validate_database_no_destructive_replace(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """Refuse the options that make a database replacement destructive or silent.

    CrossGuard cannot see a planned replace (no old state, no operation). What stops one: the
    engine refuses to replace a protected resource; without deleteBeforeReplace the replacement of
    an unprotected database fails on the existing name (create runs first); the pull-request gate
    fails on a planned database replace. deleteBeforeReplace on an unprotected database removes the
    middle net (the old database is dropped first), so it needs the app in `allowReplace`.
    """
    report = _for_resource(report_violation)
    if args.resource_type != DATABASE_TYPE:
        return
    name = get(args.props, "name")
    label = role_label(args.props, args.name)
    if (
        args.opts.delete_before_replace
        and not args.opts.protect
        and not _listed(name, args.get_config(), "allowReplace")
    ):
        report(
            f"database '{label}' is unprotected and sets deleteBeforeReplace: a replacement would "
            "DROP it before creating the new one. Remove deleteBeforeReplace (the replacement then "
            "fails on the existing name), keep protect=True, or list the app in this policy's "
            "allowReplace config"
        )
    ignored = sorted(str(p) for p in args.opts.ignore_changes if str(p).split(".")[0] == "owner")
    if ignored:
        report(
            f"database '{label}' ignores changes to {', '.join(ignored)}: ownership drift "
            "would go unnoticed"
        )


def _is_public_database_grant(grant: PolicyResource) -> bool:
    role = get(grant.props, "role")
    object_type = get(grant.props, "objectType")
    return (
        isinstance(role, str)
        and role.lower() == "public"
        and isinstance(object_type, str)
        and object_type == "database"
    )


def _referenced(
    resource: PolicyResource, prop: str, candidates: Sequence[PolicyResource]
) -> PolicyResource | Any:
    """The managed resource a name-valued property points at: by `name`, else (the name is not
    known at preview) by the property's dependency; else the value itself (the name of something
    this stack does not manage, None or UNKNOWN)."""
    target = get(resource.props, prop)
    if isinstance(target, str):
        for candidate in candidates:
            if get(candidate.props, "name") == target:
                return candidate
    dependency_urns = {r.urn for r in resource.property_dependencies.get(prop, [])}
    for candidate in candidates:
        if candidate.urn in dependency_urns:
            return candidate
    return target


def _grant_database(grant: PolicyResource, databases: Sequence[PolicyResource]) -> Any:
    """The managed Database a Grant is on: by name, else by its `database` property dependency."""
    return _referenced(grant, "database", databases)


def _label(ref: Any) -> str:
    """A referenced role or database as a message names it."""
    if isinstance(ref, PolicyResource):
        return role_label(ref.props, ref.name)
    return "<unknown>" if ref is UNKNOWN else str(ref)


def _is_public(role: Any) -> bool:
    return isinstance(role, str) and role.lower() == "public"


def _privileges(props: Mapping[str, Any]) -> list[str] | _Unknown:
    """A Grant's or DefaultPrivileges' privileges, sorted; UNKNOWN while not known (an unknown
    element counts as unknown too: it may be anything)."""
    value = get(props, "privileges")
    if isinstance(value, _Unknown):
        return value
    known = [str(p) for p in elements(value)]
    if isinstance(value, Sequence) and not isinstance(value, str) and len(known) != len(value):
        return UNKNOWN
    return sorted(known)


def _grants_something(props: Mapping[str, Any]) -> bool:
    """A Grant with `privileges: []` only revokes; anything else (or not known yet) grants."""
    return _privileges(props) != []


def validate_public_connect_revoked(
    args: StackValidationArgs, report_violation: ReportViolation
) -> None:
    """Every app database has CONNECT and TEMPORARY revoked from PUBLIC: a Grant on it with role
    `public`, objectType `database` and privileges `[]`; PUBLIC is never granted anything on it."""
    databases = [r for r in args.resources if r.resource_type == DATABASE_TYPE]
    grants = [r for r in args.resources if r.resource_type == GRANT_TYPE]
    revoked: set[str] = set()
    for grant in grants:
        if not _is_public_database_grant(grant):
            continue
        database = _grant_database(grant, databases)
        privileges = _privileges(grant.props)
        if isinstance(privileges, _Unknown):
            continue
        if privileges:
            if not isinstance(database, PolicyResource) and database in SYSTEM_DATABASES:
                continue  # system-databases-no-grants reports it
            report_violation(
                f"PUBLIC is granted {', '.join(privileges)} on database '{_label(database)}': "
                "every role in the cluster could use it; PUBLIC's privileges must be []",
                grant.urn,
            )
        elif isinstance(database, PolicyResource):
            revoked.add(database.urn)
    for database in databases:
        if database.urn not in revoked:
            label = role_label(database.props, database.name)
            report_violation(
                f"database '{label}' has no Grant revoking CONNECT and TEMPORARY from PUBLIC "
                '(role "public", objectType "database", privileges []): every role in the cluster '
                "can connect to it",
                database.urn,
            )


def _same_role(a: Any, b: Any) -> bool | None:
    """Are two role references the same role? None when that is not known during preview."""
    if isinstance(a, PolicyResource) and isinstance(b, PolicyResource):
        return a.urn == b.urn
    names = [get(r.props, "name") if isinstance(r, PolicyResource) else r for r in (a, b)]
    if not all(isinstance(n, str) for n in names):
        return None
    return bool(names[0] == names[1])


def validate_no_cross_app_grants(
    args: StackValidationArgs, report_violation: ReportViolation
) -> None:
    """Privileges in an app database go to its owner only (not to another app's role nor to an
    unmanaged role); a managed role gets no privileges in a database it does not own; no role
    membership (GrantRole) involves an app role, in either direction."""
    databases = [r for r in args.resources if r.resource_type == DATABASE_TYPE]
    roles = [r for r in args.resources if r.resource_type == ROLE_TYPE]
    for grant in (r for r in args.resources if r.resource_type in PRIVILEGE_TYPES):
        if not _grants_something(grant.props):
            continue
        role = _referenced(grant, "role", roles)
        if _is_public(role):
            continue  # PUBLIC: database-connect-revoked-from-public and no-public-privileges
        database = _grant_database(grant, databases)
        if isinstance(database, PolicyResource):
            owner = _referenced(database, "owner", roles)
            same = _same_role(role, owner)
            label = role_label(database.props, database.name)
            if same is None:
                report_violation(
                    f"{grant.name}: the role granted privileges on app database '{label}' is not "
                    "known during preview; only the database's own role may hold privileges there",
                    grant.urn,
                )
            elif not same and isinstance(role, PolicyResource):
                report_violation(
                    f"role '{_label(role)}' is granted privileges on database '{label}', "
                    f"which belongs to '{_label(owner)}': app roles get no grants on other apps' "
                    "databases",
                    grant.urn,
                )
            elif not same:
                report_violation(
                    f"role '{_label(role)}' is granted privileges on app database '{label}', "
                    f"which belongs to '{_label(owner)}': only the app's own role may hold "
                    "privileges in its database",
                    grant.urn,
                )
        elif (
            isinstance(database, str)
            and database not in SYSTEM_DATABASES  # system-databases-no-grants reports those
            and isinstance(role, PolicyResource)
        ):
            report_violation(
                f"role '{_label(role)}' is granted privileges on database '{database}', which no "
                "app of this stack owns: app roles get no grants on other databases",
                grant.urn,
            )

    for membership in (r for r in args.resources if r.resource_type == GRANT_ROLE_TYPE):
        member = _referenced(membership, "role", roles)
        granted = _referenced(membership, "grantRole", roles)
        if isinstance(member, PolicyResource):
            report_violation(
                f"role '{_label(member)}' is made a member of '{_label(granted)}': app roles are "
                "not granted other roles",
                membership.urn,
            )
        elif isinstance(granted, PolicyResource):
            report_violation(
                f"role '{_label(member)}' is made a member of app role '{_label(granted)}': "
                "nobody may act as an app's role (or own its objects) through membership",
                membership.urn,
            )
        elif member is UNKNOWN or granted is UNKNOWN:
            report_violation(
                f"{membership.name}: a role membership whose roles are not known during preview; "
                "app roles must not be part of any membership",
                membership.urn,
            )


def validate_no_public_privileges(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """PUBLIC gets nothing below the database either: no Grant of schema, table, sequence,
    function, ... privileges to `public`, and no DefaultPrivileges for `public` (database-level
    PUBLIC grants are database-connect-revoked-from-public's)."""
    report = _for_resource(report_violation)
    if args.resource_type not in PRIVILEGE_TYPES or not _is_public(get(args.props, "role")):
        return
    object_type = get(args.props, "objectType")
    if args.resource_type == GRANT_TYPE and object_type == "database":
        return
    privileges = _privileges(args.props)
    if privileges == []:
        return
    shown = (
        "privileges not known during preview"
        if isinstance(privileges, _Unknown)
        else ", ".join(privileges)
    )
    type_text = object_type if isinstance(object_type, str) else "<unknown>"
    schema = get(args.props, "schema")
    in_schema = f" in schema '{schema}'" if isinstance(schema, str) else ""
    if args.resource_type == GRANT_TYPE:
        lead = f"Grant {args.name} gives PUBLIC {shown} on"
        if type_text == "schema" and in_schema:
            target = f"schema '{schema}'"
        else:
            target = f"{type_text} objects{in_schema}"
    else:
        lead = f"default privileges {args.name} give PUBLIC {shown} on every future"
        target = f"{type_text}{in_schema}"
    database = get(args.props, "database")
    if isinstance(database, str):
        target += f" of database '{database}'"
    report(
        f"{lead} {target}: every role in the cluster would hold them; grant to the app's own "
        "role, PUBLIC's privileges must be []"
    )


def validate_system_databases_no_grants(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """Nobody is granted anything in postgres, template0 or template1 (revokes are fine)."""
    report = _for_resource(report_violation)
    if args.resource_type not in PRIVILEGE_TYPES:
        return
    database = get(args.props, "database")
    if database not in SYSTEM_DATABASES or not _grants_something(args.props):
        return
    privileges = _privileges(args.props)
    shown = (
        "privileges not known during preview"
        if isinstance(privileges, _Unknown)
        else ", ".join(privileges)
    )
    role = get(args.props, "role")
    report(
        f"{args.name} grants '{_label(role)}' {shown} in database '{database}': "
        f"{', '.join(SYSTEM_DATABASES)} are the server's own databases; nobody is granted "
        "anything there (only revokes, privileges [])"
    )


def validate_grant_privileges_allowed(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """Every privilege is one PostgreSQL knows for the object type (the provider's allow-list):
    a privilege string is never a place for SQL."""
    report = _for_resource(report_violation)
    if args.resource_type not in PRIVILEGE_TYPES:
        return
    object_type = get(args.props, "objectType")
    if object_type is UNKNOWN:
        report(f"{args.name}: objectType is not known during preview")
        return
    allowed = ALLOWED_PRIVILEGES.get(str(object_type))
    if allowed is None:
        report(
            f"{args.name}: objectType '{object_type}' is not one of {', '.join(ALLOWED_PRIVILEGES)}"
        )
        return
    privileges = _privileges(args.props)
    if isinstance(privileges, _Unknown):
        report(f"{args.name}: privileges are not known during preview")
        return
    for privilege in privileges:
        if privilege not in allowed:
            report(
                f"{args.name}: privilege {privilege!r} is not a {object_type} privilege "
                f"(allowed: {', '.join(allowed)})"
            )


# --- the admin connection ------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: traffic that never leaves the machine (a port-forward)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_admin_connection_tls(
    args: StackValidationArgs, report_violation: ReportViolation
) -> None:
    """A `postgresql` provider (the admin connection: superuser password, every app password in
    CREATE/ALTER ROLE) uses TLS unless it talks to a loopback address; a host listed in
    `allowInsecureAdminHosts` (the pack's reviewed config) is exempt."""
    allowed = set(config_strings(args.get_config(), "allowInsecureAdminHosts", ()))
    providers: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for resource in args.resources:
        if resource.resource_type == POSTGRESQL_PROVIDER_TYPE:
            providers[resource.urn] = (resource.name, resource.props)
        provider = resource.provider
        if provider is not None and provider.resource_type == POSTGRESQL_PROVIDER_TYPE:
            providers.setdefault(provider.urn, (provider.name, provider.props))
    for urn, (name, props) in sorted(providers.items()):
        sslmode = get(props, "sslmode")
        if sslmode is None:
            sslmode = get(props, "sslMode")
        host = get(props, "host")
        if sslmode is UNKNOWN or host is UNKNOWN:
            report_violation(
                f"postgresql provider '{name}': host or sslmode is not known during preview; "
                "the admin connection must be provably TLS or loopback",
                urn,
            )
            continue
        if not isinstance(sslmode, str) or sslmode not in INSECURE_SSLMODES:
            continue
        if isinstance(host, str) and (is_loopback(host) or host in allowed):
            continue
        report_violation(
            f"postgresql provider '{name}' connects as admin to {host} with sslmode={sslmode}: "
            "the admin password and every app password would cross the network in plain text. "
            "Use sslmode=require or verify-full, or a loopback port-forward; or set "
            "postgres-apps:postgres.allowInsecureAdmin: true in the stack config and list "
            f"'{host}' in this policy's allowInsecureAdminHosts config",
            urn,
        )


# --- Kubernetes Secrets --------------------------------------------------------------------------


def is_credentials_secret(args_props: Mapping[str, Any], urn: str) -> bool:
    """Does this Secret hold an app's database credentials?"""
    name, _, labels = metadata(args_props)
    return (
        (isinstance(name, str) and name.endswith(CREDENTIALS_SECRET_SUFFIX))
        or get(labels, "app.kubernetes.io/part-of") == "postgres-apps"
        or parent_type(urn).endswith(APP_DATABASE_COMPONENT)
        or bool(secret_keys(args_props) & CREDENTIALS_KEYS)
    )


def validate_credentials_secret(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """Database credentials live only in app namespaces and carry the ownership labels."""
    report = _for_resource(report_violation)
    if args.resource_type != SECRET_TYPE or not is_credentials_secret(args.props, args.urn):
        return
    label = object_name(args.props, args.name)
    name, namespace, labels = metadata(args.props)
    allowed = config_strings(args.get_config(), "appNamespaces", DEFAULT_APP_NAMESPACES)
    if namespace is None:
        report(
            f"Secret {label} holds database credentials but sets no namespace; "
            f"it must live in an app namespace ({', '.join(allowed)})"
        )
    elif namespace is not UNKNOWN and namespace not in allowed:
        report(
            f"Secret {label} holds database credentials but namespace '{namespace}' is not an "
            f"app namespace ({', '.join(allowed)})"
        )

    if labels is UNKNOWN:
        return
    problems: list[str] = []
    app_label = get(labels, LABEL_NAME)
    if isinstance(name, str) and name.endswith(CREDENTIALS_SECRET_SUFFIX):
        expected_app = name.removesuffix(CREDENTIALS_SECRET_SUFFIX)
        if app_label != expected_app:
            problems.append(f"{LABEL_NAME}={expected_app}")
    elif not isinstance(app_label, str) or not app_label:
        problems.append(f"{LABEL_NAME}=<app name>")
    for key, value in REQUIRED_SECRET_LABELS.items():
        if get(labels, key) != value:
            problems.append(f"{key}={value}")
    if problems:
        report(f"Secret {label} must carry the labels {', '.join(problems)}")
    annotations = get(get(args.props, "metadata"), "annotations")
    if isinstance(annotations, Mapping):
        copying = sorted(
            str(k) for k in annotations if str(k).startswith(COPYING_ANNOTATION_PREFIXES)
        )
        if copying:
            report(
                f"Secret {label} holds database credentials and has {', '.join(copying)}: a "
                "controller would copy it into other namespaces, where any pod could mount it"
            )


def validate_admin_secret_read_only(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """The admin Secret is only read (`Secret.get` is never analyzed), never created or copied."""
    report = _for_resource(report_violation)
    if args.resource_type != SECRET_TYPE:
        return
    config = args.get_config()
    admin_namespace = config_str(config, "adminSecretNamespace", DEFAULT_ADMIN_SECRET_NAMESPACE)
    admin_name = config_str(config, "adminSecretName", DEFAULT_ADMIN_SECRET_NAME)
    admin_key = config_str(config, "adminSecretKey", DEFAULT_ADMIN_SECRET_KEY)
    name, namespace, _ = metadata(args.props)
    label = object_name(args.props, args.name)
    if name == admin_name and namespace == admin_namespace:
        report(
            f"Secret {label} is the PostgreSQL admin Secret: this program may only read it "
            "(Secret.get), never create or manage it"
        )
    elif admin_key in secret_keys(args.props):
        report(
            f"Secret {label} has the admin key '{admin_key}': the admin Secret must not be "
            f"copied out of {admin_namespace}/{admin_name}"
        )


def _decode_base64(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def admin_passwords(resources: Sequence[PolicyResource], config: Mapping[str, Any]) -> set[str]:
    """The admin password as the stack knows it: the postgresql providers' `password` and the
    admin Secret's key (the Secret is read, so it is in the stack's resources)."""
    admin_namespace = config_str(config, "adminSecretNamespace", DEFAULT_ADMIN_SECRET_NAMESPACE)
    admin_name = config_str(config, "adminSecretName", DEFAULT_ADMIN_SECRET_NAME)
    admin_key = config_str(config, "adminSecretKey", DEFAULT_ADMIN_SECRET_KEY)
    found: set[str] = set()
    for resource in resources:
        providers: list[Mapping[str, Any]] = []
        if resource.resource_type == POSTGRESQL_PROVIDER_TYPE:
            providers.append(resource.props)
        if resource.provider is not None and resource.provider.resource_type == (
            POSTGRESQL_PROVIDER_TYPE
        ):
            providers.append(resource.provider.props)
        for props in providers:
            password = get(props, "password")
            if isinstance(password, str) and password:
                found.add(password)
        if resource.resource_type == SECRET_TYPE:
            name, namespace, _ = metadata(resource.props)
            if name == admin_name and namespace == admin_namespace:
                encoded = get_path(resource.props, "data", admin_key)
                decoded = _decode_base64(encoded) if isinstance(encoded, str) else None
                if decoded:
                    found.add(decoded)
                plain = get_path(resource.props, "stringData", admin_key)
                if isinstance(plain, str) and plain:
                    found.add(plain)
    return found


def _forms(password: str) -> set[str]:
    """The ways a password shows up in a value: as is, URL-encoded, base64."""
    return {
        password,
        quote(password, safe=""),
        base64.b64encode(password.encode()).decode(),
    }


def _contains_password(text: str, passwords: set[str]) -> bool:
    for password in passwords:
        if len(password) < MIN_SUBSTRING_PASSWORD_LENGTH:
            if text == password:
                return True
        elif any(form in text for form in _forms(password)):
            return True
    return False


def _leaks(value: Any, passwords: set[str]) -> bool:
    for text in strings_in(value):
        decoded = _decode_base64(text)
        if _contains_password(text, passwords) or (
            decoded is not None and _contains_password(decoded, passwords)
        ):
            return True
    return False


def validate_admin_password_stays_in_data(
    args: StackValidationArgs, report_violation: ReportViolation
) -> None:
    """No Secret (other than the admin Secret), ConfigMap or stack output contains the admin
    password, as is, URL-encoded or base64-encoded."""
    config = args.get_config()
    passwords = admin_passwords(args.resources, config)
    if not passwords:
        return
    admin_namespace = config_str(config, "adminSecretNamespace", DEFAULT_ADMIN_SECRET_NAMESPACE)
    admin_name = config_str(config, "adminSecretName", DEFAULT_ADMIN_SECRET_NAME)
    for resource in args.resources:
        if resource.resource_type in (SECRET_TYPE, CONFIG_MAP_TYPE):
            name, namespace, _ = metadata(resource.props)
            if resource.resource_type == SECRET_TYPE and (
                name == admin_name and namespace == admin_namespace
            ):
                continue
            kind = "Secret" if resource.resource_type == SECRET_TYPE else "ConfigMap"
            fields = ("data", "stringData") if kind == "Secret" else ("data", "binaryData")
            if any(_leaks(get(resource.props, f), passwords) for f in fields):
                report_violation(
                    f"{kind} {object_name(resource.props, resource.name)} contains the PostgreSQL "
                    f"admin password: it must not leave {admin_namespace}/{admin_name}",
                    resource.urn,
                )
        elif resource.resource_type == STACK_TYPE:
            for key, value in sorted(items(resource.props)):
                if _leaks(value, passwords):
                    report_violation(
                        f"stack output '{key}' contains the PostgreSQL admin password",
                        resource.urn,
                    )


# --- the apps namespace --------------------------------------------------------------------------


def validate_apps_namespace_pod_security(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """The app namespaces run Pod Security `restricted` (every mode in `requiredModes`; a mode
    that is set at all must not be weaker)."""
    report = _for_resource(report_violation)
    if args.resource_type != NAMESPACE_TYPE:
        return
    config = args.get_config()
    name, _, labels = metadata(args.props)
    app_namespaces = config_strings(config, "appNamespaces", DEFAULT_APP_NAMESPACES)
    in_component = parent_type(args.urn).endswith(APPS_NAMESPACE_COMPONENT)
    if not in_component and name not in app_namespaces:
        return
    label = name if isinstance(name, str) else f"<{args.name}>"
    if labels is UNKNOWN:
        report(f"namespace '{label}': labels are not known during preview")
        return
    required = config_strings(config, "requiredModes", POD_SECURITY_MODES)
    levels = config.get("enforceLevels")
    allowed_enforce = str(levels.get(label, "restricted")) if isinstance(levels, Mapping) else ""
    problems: list[str] = []
    for mode in POD_SECURITY_MODES:
        key = f"pod-security.kubernetes.io/{mode}"
        value = get(labels, key)
        if value == "restricted":
            continue
        if mode == "enforce" and value is not None and value == allowed_enforce:
            continue  # an exemption of the base branch's config: `enforceLevels`
        if mode in required or value is not None:
            shown = "<unset>" if value is None else str(value)
            problems.append(f"{key}={shown}")
    if problems:
        report(
            f"namespace '{label}' must enforce Pod Security 'restricted': "
            f"{', '.join(problems)} (want restricted)"
        )


# --- the policies --------------------------------------------------------------------------------

_STRING_LIST: Final = {"type": "array", "items": {"type": "string"}}
_ADMIN_SECRET_SCHEMA: Final = {
    "adminSecretNamespace": {"type": "string", "default": DEFAULT_ADMIN_SECRET_NAMESPACE},
    "adminSecretName": {"type": "string", "default": DEFAULT_ADMIN_SECRET_NAME},
    "adminSecretKey": {"type": "string", "default": DEFAULT_ADMIN_SECRET_KEY},
}


def build_policies() -> list[Policy]:
    """Every policy of the pack, mandatory by default (each overridable in the policy config)."""
    mandatory = EnforcementLevel.MANDATORY
    return [
        ResourceValidationPolicy(
            name="app-role-least-privilege",
            description="App roles have no SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or "
            "BYPASSRLS, no role memberships, and a connection limit.",
            validate=validate_app_role,
            enforcement_level=mandatory,
            config_schema=PolicyConfigSchema(
                properties={
                    "maxConnectionLimit": {
                        "type": "integer",
                        "minimum": 1,
                        "default": DEFAULT_MAX_CONNECTION_LIMIT,
                    },
                    "exemptRoles": {**_STRING_LIST, "default": []},
                }
            ),
        ),
        StackValidationPolicy(
            name="database-connect-revoked-from-public",
            description="Every app database has CONNECT and TEMPORARY revoked from PUBLIC.",
            validate=validate_public_connect_revoked,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="no-cross-app-grants",
            description="Privileges in an app database go only to its own role, app roles get "
            "no privileges elsewhere, and no role membership involves an app role.",
            validate=validate_no_cross_app_grants,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="no-public-privileges",
            description="PUBLIC is granted nothing on schemas, tables, sequences, functions or "
            "other objects, and gets no default privileges.",
            validate=validate_no_public_privileges,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="system-databases-no-grants",
            description="Nobody is granted privileges in the postgres, template0 or template1 "
            "databases (revokes only).",
            validate=validate_system_databases_no_grants,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="grant-privileges-allow-list",
            description="Every granted privilege is one PostgreSQL defines for the object type "
            "(the postgresql provider's allow-list).",
            validate=validate_grant_privileges_allowed,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="admin-connection-tls",
            description="The admin connection uses TLS unless it goes to a loopback address or "
            "its host is listed in the reviewed policy config.",
            validate=validate_admin_connection_tls,
            enforcement_level=mandatory,
            config_schema=PolicyConfigSchema(
                properties={"allowInsecureAdminHosts": {**_STRING_LIST, "default": []}}
            ),
        ),
        ResourceValidationPolicy(
            name="database-protected",
            description="App databases are protected unless the app opted out of protection.",
            validate=validate_database_protected,
            enforcement_level=mandatory,
            config_schema=PolicyConfigSchema(
                properties={"unprotectedApps": {**_STRING_LIST, "default": []}}
            ),
        ),
        ResourceValidationPolicy(
            name="database-no-destructive-replace",
            description="Unprotected app databases do not use deleteBeforeReplace and no database "
            "ignores owner changes (a planned replace is caught by protect and the pull-request "
            "gate).",
            validate=validate_database_no_destructive_replace,
            enforcement_level=mandatory,
            config_schema=PolicyConfigSchema(
                properties={"allowReplace": {**_STRING_LIST, "default": []}}
            ),
        ),
        ResourceValidationPolicy(
            name="credentials-secret-placement",
            description="Database credential Secrets live only in app namespaces and carry the "
            "app.kubernetes.io labels.",
            validate=validate_credentials_secret,
            enforcement_level=mandatory,
            config_schema=PolicyConfigSchema(
                properties={"appNamespaces": {**_STRING_LIST, "default": ["apps"]}}
            ),
        ),
        ResourceValidationPolicy(
            name="admin-secret-read-only",
            description="The PostgreSQL admin Secret is only read, never created or copied.",
            validate=validate_admin_secret_read_only,
            enforcement_level=mandatory,
            config_schema=PolicyConfigSchema(properties=dict(_ADMIN_SECRET_SCHEMA)),
        ),
        StackValidationPolicy(
            name="admin-password-stays-in-data",
            description="The PostgreSQL admin password appears in no other Secret, ConfigMap or "
            "stack output.",
            validate=validate_admin_password_stays_in_data,
            enforcement_level=mandatory,
            config_schema=PolicyConfigSchema(properties=dict(_ADMIN_SECRET_SCHEMA)),
        ),
        ResourceValidationPolicy(
            name="apps-namespace-pod-security",
            description="App namespaces enforce Pod Security 'restricted'.",
            validate=validate_apps_namespace_pod_security,
            enforcement_level=mandatory,
            config_schema=PolicyConfigSchema(
                properties={
                    "appNamespaces": {**_STRING_LIST, "default": ["apps"]},
                    "requiredModes": {
                        "type": "array",
                        "items": {"type": "string", "enum": list(POD_SECURITY_MODES)},
                        "default": list(POD_SECURITY_MODES),
                    },
                    # namespace → the enforce level it may have instead of `restricted` (the
                    # stack config's `postgres-apps:podSecurityEnforce` is the other key)
                    "enforceLevels": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "string",
                            "enum": ["restricted", "baseline", "privileged"],
                        },
                        "default": {},
                    },
                }
            ),
        ),
    ]
