"""Stack config → plain, validated objects.

The contract every component agrees on. Parsing (`parse_settings`) reports every problem at once,
before any resource is registered.

Stack config (namespace `postgres-apps:`, camelCase keys):

```yaml
config:
  kubernetes:context: my-context
  postgres-apps:postgres:          # all optional
    host: postgres-postgresql.data.svc.cluster.local
    port: 5432
    sslmode: prefer
    adminHost: 127.0.0.1
    adminPort: 5432
    adminUser: postgres
    adminSslmode: disable          # only with a loopback adminHost, unless allowInsecureAdmin
    allowInsecureAdmin: false      # true: accept `disable` to a remote adminHost (VPN, tunnel)
    adminSecretNamespace: data
    adminSecretName: postgres-postgresql
    adminSecretKey: postgres-password
    hardenDatabases: [postgres, template1]   # revoke CONNECT, TEMPORARY from PUBLIC; [] opts out
    connectionBudgetWarnPercent: 80          # warn when the apps' limits use more (1..100)
  postgres-apps:appsNamespace: apps
  postgres-apps:namespacePerApp: false       # true: each app without `namespace` gets its own
  postgres-apps:allowedExtensions: []        # beyond TRUSTED_EXTENSIONS, e.g. [postgis, dblink]
  postgres-apps:apps:
    - name: app-test               # or just `- app-test`
    - name: n8n
      profile: n8n
      namespace: automation
      connectionLimit: 10
      extensions: [pgcrypto]       # trusted ones, or those in allowedExtensions
      deletion: protect            # protect | retain | drop
      passwordVersion: 0           # bump to rotate the password
      allowReplace: false          # let a replacing change drop and recreate (unprotected apps)
  postgres-apps:verification:
    enabled: true
    mode: pod                      # pod | direct
    image: docker.io/library/postgres:17-alpine
    imagePullPolicy: IfNotPresent
    timeoutSeconds: 120
    latencyBudgetMs: 100
    rerun: always                  # always | on-change
    allowedDatabases: []           # databases (beyond its own) an app may reach without failing
  postgres-apps:retired: []        # apps retired by hand: their removal is not refused
  postgres-apps:unmanaged:         # roles/databases on the server no app declares: reported
    ignoreRoles: []                # ... except these (exact names, e.g. [repl_user])
    ignoreDatabases: []
  postgres-apps:adminPassword:     # optional; only as a secret (`pulumi config set --secret`)
    secure: ...
```

Refused besides malformed values (issue 11):
- any name or value with a trailing newline: every pattern is matched against the whole string;
- app namespaces (`apps[].namespace`, `appsNamespace`, and the names `namespacePerApp` derives)
  `kube-*`, `default` and the admin Secret's namespace (`postgres.adminSecretNamespace`): anyone
  who can create a pod in a namespace can mount every Secret in it;
- extensions not in `TRUSTED_EXTENSIONS` (what PostgreSQL 15-18 marks `trusted = true`), e.g.
  `plpython3u`, `dblink`, `postgres_fdw`, `adminpack`, `file_fdw`, unless listed in
  `allowedExtensions`: the stack creates extensions as superuser, on the app's behalf;
- `adminSslmode: disable` with an `adminHost` other than localhost, 127.0.0.0/8 or ::1 (the admin
  password would cross the network in clear) unless `allowInsecureAdmin: true`;
- `adminPassword` set without `--secret` (the message gives the command, never the value);
- in `unmanaged.ignoreRoles` / `ignoreDatabases`: an app's own role / database (it is managed,
  never reported);
- in `hardenDatabases` and `allowedDatabases`: an app's own database; in `hardenDatabases`:
  `template0` (it accepts no connections). Both take lowercase unquoted identifiers.

Connection budget (checked by the admin pre-flight on every `pulumi up`, preflight.py):
the apps' `connectionLimit`s (default 20 each) must add up to at most what the server allows roles
that are not superusers, `max_connections - superuser_reserved_connections - reserved_connections`
(the last on PostgreSQL 16+); more is refused before anything changes, more than
`connectionBudgetWarnPercent` of it is a warning. Roles this stack does not manage are not counted.

`hardenDatabases` is server-wide: a role this stack does not manage also loses CONNECT on those
databases unless it was granted CONNECT explicitly (or is a superuser / the database owner).
`namespacePerApp` gives each app its own trust boundary: in a shared namespace, whoever may create
pods there can read every app's Secret.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar, cast

import pulumi

DeletionPolicy = Literal["protect", "retain", "drop"]
VerificationMode = Literal["pod", "direct"]
RerunPolicy = Literal["always", "on-change"]
Profile = Literal["n8n", "paperless"]

CONFIG_NAMESPACE = "postgres-apps"
SECRET_SUFFIX = "-db-credentials"  # noqa: S105 - a name suffix, not a password
MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL NAMEDATALEN - 1: longer role/database names are silently truncated by the server."""
MAX_K8S_NAME = 63
MAX_APP_NAME = MAX_K8S_NAME - len(SECRET_SUFFIX)
"""48: the Secret `<name>-db-credentials` must be a valid DNS-1123 label (≤ 63)."""

PROFILES: tuple[Profile, ...] = ("n8n", "paperless")
DELETION_POLICIES: tuple[DeletionPolicy, ...] = ("protect", "retain", "drop")
VERIFICATION_MODES: tuple[VerificationMode, ...] = ("pod", "direct")
RERUN_POLICIES: tuple[RerunPolicy, ...] = ("always", "on-change")
LIBPQ_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
ADMIN_SSLMODES = ("disable", "require", "verify-ca", "verify-full")
"""The postgresql provider (lib/pq) knows no `allow`/`prefer`."""
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
RESERVED_NAMES = frozenset(
    {
        "postgres",
        "template0",
        "template1",
        # role names PostgreSQL itself reserves (CREATE ROLE fails on them)
        "public",
        "none",
        "current_user",
        "current_role",
        "session_user",
    }
)
MAX_CONNECTION_LIMIT = 10_000
DEFAULT_CONNECTION_BUDGET_WARN_PERCENT = 80

SYSTEM_NAMESPACE_PREFIX = "kube-"
"""Kubernetes' own namespaces (kube-system, kube-public, kube-node-lease, ...): never an app's."""
DEFAULT_NAMESPACE = "default"
TRUSTED_EXTENSIONS = frozenset(
    {
        # contrib modules whose control file says `trusted = true` in PostgreSQL 15-18 (the
        # "trusted" marking of https://www.postgresql.org/docs/current/contrib.html, "Additional
        # Supplied Modules and Extensions"; commit eb67623c "Mark some contrib modules as
        # trusted", PostgreSQL 13): a database owner may create them without superuser.
        "btree_gin",
        "btree_gist",
        "citext",
        "cube",
        "dict_int",
        "earthdistance",
        "fuzzystrmatch",
        "hstore",
        "intarray",
        "isn",
        "lo",
        "ltree",
        "pg_trgm",
        "pgcrypto",
        "seg",
        "tablefunc",
        "tcn",
        "tsm_system_rows",
        "tsm_system_time",
        "unaccent",
        "uuid-ossp",
        # trusted procedural languages (`trusted = true` in their control files since 13):
        # functions in them cannot reach the file system or the network
        "plpgsql",
        "plperl",
        "pltcl",
        "bool_plperl",
        "hstore_plperl",
        "jsonb_plperl",
    }
)
"""Extensions an app may ask for without `postgres-apps:allowedExtensions`. The stack creates
extensions as the admin (a superuser), so the server's own `trusted` marking is the line: what a
database owner could install by itself is safe to install for it; anything else is opted in."""
UNTRUSTED_EXTENSIONS: Mapping[str, str] = {
    "plpython3u": "an untrusted language: its functions run any code as the server's OS user",
    "plperlu": "an untrusted language: its functions run any code as the server's OS user",
    "pltclu": "an untrusted language: its functions run any code as the server's OS user",
    "dblink": "it opens connections from the server to other hosts and databases",
    "postgres_fdw": "it opens connections from the server to other hosts and databases",
    "file_fdw": "it reads files and program output on the database server",
    "adminpack": "its functions read and write files on the database server",
}
"""Why some well-known extensions are not trusted (for the message; the list above decides)."""
DEFAULT_HARDEN_DATABASES = ("postgres", "template1")
"""The databases PostgreSQL creates with CONNECT and TEMPORARY for PUBLIC (`template0` refuses
connections: `datallowconn = false`)."""
LOCALHOST_NAMES = frozenset({"localhost", "localhost."})
PLAINTEXT_SECRET = "<set without --secret>"  # noqa: S105 - a marker, never a password
"""What `raw_config` hands `parse_settings` for a secret key set in plain text (never the value)."""

# Every pattern is applied with `fullmatch` (`_Problems.string`): `re.match` with `$` accepts a
# trailing newline ("app\n"), which then ends up in role names, Secret names and pgpass lines.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_APP_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_HOST_NAME = re.compile(
    r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*"
)
"""RFC 1123 host name (IP literals are checked with `ipaddress`, see `_valid_host`)."""
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_EXTENSION = re.compile(r"[a-z][a-z0-9_-]*")
_IMAGE = re.compile(r"[^\s]+")
_DATABASE = re.compile(r"[a-z_][a-z0-9_]*")
"""An existing database named in config: PostgreSQL's unquoted-identifier rule, lowercase ASCII
(what an unquoted name folds to), so the name means the same in SQL, psql and config."""
_ROLE = re.compile(r"[^\x00-\x1f\x7f]+")
"""The admin user: any name without control characters (libpq cannot carry NUL; a newline would
split the pgpass-style and log lines it appears in)."""


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

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace the program manages: the apps namespace first, then the apps' own."""
        seen = [self.apps_namespace]
        for app in self.apps:
            if app.namespace not in seen:
                seen.append(app.namespace)
        return tuple(seen)


class ConfigError(pulumi.RunError):
    """Invalid stack config. `problems` holds one line per problem, each naming its config key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        header = f"invalid stack config ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n  - ".join([header, *self.problems]))


# --------------------------------------------------------------------------------------------
# parsing


T = TypeVar("T")

TOP_LEVEL_KEYS = (
    "postgres",
    "appsNamespace",
    "apps",
    "verification",
    "retired",
    "allowedExtensions",
    "namespacePerApp",
    "unmanaged",
)
SECRET_KEYS = ("adminPassword",)
POSTGRES_KEYS = {
    "host": "host",
    "port": "port",
    "sslmode": "sslmode",
    "adminHost": "admin_host",
    "adminPort": "admin_port",
    "adminUser": "admin_user",
    "adminSslmode": "admin_sslmode",
    "adminSecretNamespace": "admin_secret_namespace",
    "adminSecretName": "admin_secret_name",
    "adminSecretKey": "admin_secret_key",
    "allowInsecureAdmin": "allow_insecure_admin",
    "hardenDatabases": "harden_databases",
    "connectionBudgetWarnPercent": "connection_budget_warn_percent",
}
APP_KEYS = (
    "name",
    "namespace",
    "profile",
    "connectionLimit",
    "extensions",
    "deletion",
    "passwordVersion",
    "allowReplace",
)
UNMANAGED_KEYS = {"ignoreRoles": "ignore_roles", "ignoreDatabases": "ignore_databases"}
VERIFICATION_KEYS = {
    "enabled": "enabled",
    "mode": "mode",
    "image": "image",
    "imagePullPolicy": "image_pull_policy",
    "timeoutSeconds": "timeout_seconds",
    "latencyBudgetMs": "latency_budget_ms",
    "rerun": "rerun",
    "allowedDatabases": "allowed_databases",
}


def _key(path: str) -> str:
    return f"{CONFIG_NAMESPACE}:{path}"


def _show(value: object) -> str:
    """A value as the operator wrote it (JSON-ish), short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: object) -> str:  # noqa: PLR0911 - one line per YAML type
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


class _Problems:
    """Collects problems; each check returns the parsed value or None."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{_key(path)}: {message}")

    def unknown_keys(self, path: str, mapping: Mapping[str, object], known: Sequence[str]) -> None:
        for k in mapping:
            if k not in known:
                hint = difflib.get_close_matches(str(k), list(known), n=1)
                suggestion = f' (did you mean "{hint[0]}"?)' if hint else ""
                where = f"{path}.{k}" if path else str(k)
                self.add(where, f"unknown key{suggestion}; known keys: {', '.join(sorted(known))}")

    def string(
        self,
        path: str,
        value: object,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
        max_len: int | None = None,
    ) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string, got {_type_name(value)} {_show(value)}")
            return None
        if value == "":
            self.add(path, "must not be empty")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.add(path, f"{_show(value)} is not {what}")
            return None
        if max_len is not None and len(value.encode()) > max_len:
            self.add(path, f"{_show(value)} is longer than {max_len} bytes")
            return None
        return value

    def integer(self, path: str, value: object, low: int, high: int, what: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"must be an integer, got {_type_name(value)} {_show(value)}")
            return None
        if not low <= value <= high:
            self.add(path, f"{value} is not {what} ({low}..{high})")
            return None
        return value

    def number(self, path: str, value: object, low: float, high: float, what: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, f"must be a number, got {_type_name(value)} {_show(value)}")
            return None
        number = float(value)
        if math.isnan(number) or not low < number <= high:
            self.add(path, f"{_show(value)} is not {what} (> {low:g} and ≤ {high:g})")
            return None
        return number

    def boolean(self, path: str, value: object) -> bool | None:
        if not isinstance(value, bool):
            self.add(path, f"must be true or false, got {_type_name(value)} {_show(value)}")
            return None
        return value

    def choice(self, path: str, value: object, choices: Sequence[T]) -> T | None:
        for c in choices:
            if value == c and isinstance(value, str):
                return c
        allowed = ", ".join(f'"{c}"' for c in choices)
        self.add(path, f"{_show(value)} is not one of {allowed}")
        return None

    def mapping(self, path: str, value: object) -> Mapping[str, object] | None:
        if not isinstance(value, Mapping):
            self.add(path, f"must be a mapping, got {_type_name(value)} {_show(value)}")
            return None
        return cast("Mapping[str, object]", value)

    def names(
        self,
        path: str,
        value: object,
        *,
        pattern: re.Pattern[str],
        noun: str,
        what: str,
        check: Callable[[str, str], bool] | None = None,
    ) -> tuple[str, ...] | None:
        """A list of distinct names, each matching `pattern` (and `check(path, name)` if given,
        which reports its own problem); None if anything in it is wrong."""
        if not isinstance(value, list):
            self.add(path, f"must be a list of {noun} names, got {_type_name(value)}")
            return None
        result: list[str] = []
        ok = True
        for i, item in enumerate(value):
            where = f"{path}[{i}]"
            name = self.string(
                where, item, pattern=pattern, what=what, max_len=MAX_IDENTIFIER_BYTES
            )
            if name is None:
                ok = False
            elif name in result:
                self.add(where, f"duplicate {noun} {_show(name)}")
                ok = False
            elif check is not None and not check(where, name):
                ok = False
            else:
                result.append(name)
        return tuple(result) if ok else None


def _valid_host(host: str) -> str | None:
    """The host as it is used (IPv6 without brackets), or None if it is no host name or address.

    An IPv6 zone (`fe80::1%eth0`) is refused: `%` would need escaping in the URI and libpq's
    pgpass matching compares the text."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if bare != host or not _HOST_NAME.fullmatch(host):
            return None
        return host if all(len(label) <= MAX_K8S_NAME for label in host.split(".")) else None
    if isinstance(address, ipaddress.IPv6Address):
        return None if address.scope_id else bare
    return None if bare != host else host  # brackets are for IPv6 only


def is_loopback_host(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1: traffic that never leaves the machine."""
    if host.lower() in LOCALHOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refused_namespace(namespace: str, admin_secret_namespace: str) -> str | None:
    """Why an app's Secret must not live in `namespace` (None when it may).

    Anyone who can create a pod in a namespace can mount every Secret in it: Kubernetes' own
    namespaces, `default` (where unqualified kubectl commands and stray pods land) and the admin
    Secret's namespace (its pods could mount the admin password) are no place for app Secrets."""
    if namespace.startswith(SYSTEM_NAMESPACE_PREFIX):
        return f"{_show(namespace)} is a Kubernetes system namespace ({SYSTEM_NAMESPACE_PREFIX}*)"
    if namespace == DEFAULT_NAMESPACE:
        return (
            f"{_show(namespace)} is Kubernetes' default namespace (every unqualified kubectl "
            "command and stray pod lands there)"
        )
    if namespace == admin_secret_namespace:
        return (
            f"{_show(namespace)} holds the admin Secret ({_key('postgres.adminSecretNamespace')}):"
            " a pod there could mount the admin password"
        )
    return None


def _check_namespace(
    problems: _Problems, path: str, namespace: str, admin_secret_namespace: str, why: str = ""
) -> bool:
    reason = refused_namespace(namespace, admin_secret_namespace)
    if reason is not None:
        problems.add(path, f"{why}{reason}; app Secrets must not be placed there")
    return reason is None


def _fields(
    problems: _Problems,
    path: str,
    mapping: Mapping[str, object],
    known: Mapping[str, str],
    checks: Mapping[str, Callable[[str, object], object | None]],
) -> dict[str, object]:
    """Check each known key present in `mapping`; return dataclass kwargs for the valid ones."""
    problems.unknown_keys(path, mapping, list(known))
    kwargs: dict[str, object] = {}
    for yaml_key, attr in known.items():
        if yaml_key in mapping:
            parsed = checks[yaml_key](f"{path}.{yaml_key}", mapping[yaml_key])
            if parsed is not None:
                kwargs[attr] = parsed
    return kwargs


def _parse_postgres(problems: _Problems, value: object) -> PostgresSettings:
    mapping = problems.mapping("postgres", value)
    if mapping is None:
        return PostgresSettings()
    p = problems

    def host(path: str, v: object) -> str | None:
        text = p.string(path, v, max_len=253)
        if text is None:
            return None
        valid = _valid_host(text)
        if valid is None:
            p.add(path, f"{_show(text)} is not a host name or IP address")
        return valid

    def port(path: str, v: object) -> int | None:
        return p.integer(path, v, 1, 65535, "a TCP port")

    def user(path: str, v: object) -> str | None:
        return p.string(path, v, pattern=_ROLE, what="a role name", max_len=MAX_IDENTIFIER_BYTES)

    def label(path: str, v: object) -> str | None:
        return p.string(path, v, pattern=_DNS_LABEL, what="a DNS-1123 label", max_len=63)

    def subdomain(path: str, v: object) -> str | None:
        return p.string(
            path, v, pattern=_DNS_SUBDOMAIN, what="a Kubernetes object name", max_len=253
        )

    def secret_key(path: str, v: object) -> str | None:
        return p.string(path, v, pattern=_SECRET_KEY, what="a Secret key", max_len=253)

    harden = _harden_check(p)

    checks: dict[str, Callable[[str, object], object | None]] = {
        "host": host,
        "port": port,
        "sslmode": lambda path, v: p.choice(path, v, LIBPQ_SSLMODES),
        "adminHost": host,
        "adminPort": port,
        "adminUser": user,
        "adminSslmode": lambda path, v: p.choice(path, v, ADMIN_SSLMODES),
        "adminSecretNamespace": label,
        "adminSecretName": subdomain,
        "adminSecretKey": secret_key,
        "allowInsecureAdmin": p.boolean,
        "hardenDatabases": lambda path, v: p.names(
            path, v, pattern=_DATABASE, noun="database", what="a database name", check=harden
        ),
        "connectionBudgetWarnPercent": lambda path, v: p.integer(
            path, v, 1, 100, "a percentage of the server's connections"
        ),
    }
    kwargs = _fields(problems, "postgres", mapping, POSTGRES_KEYS, checks)
    settings = PostgresSettings(**kwargs)  # type: ignore[arg-type]
    unreadable_opt_in = "allowInsecureAdmin" in mapping and "allow_insecure_admin" not in kwargs
    if (
        settings.admin_sslmode == "disable"
        and not settings.allow_insecure_admin
        and not unreadable_opt_in
        and not is_loopback_host(settings.admin_host)
    ):
        problems.add(
            "postgres.adminSslmode",
            f'"disable" with {_key("postgres.adminHost")} {_show(settings.admin_host)}, which is '
            "not a loopback address: the admin password would cross the network in clear; use "
            '"require", "verify-ca" or "verify-full", or set '
            f"{_key('postgres.allowInsecureAdmin')}: true if that path is protected otherwise "
            "(a VPN, a tunnel)",
        )
    return settings


def _harden_check(problems: _Problems) -> Callable[[str, str], bool]:
    def check(path: str, name: str) -> bool:
        if name == "template0":
            problems.add(
                path,
                '"template0" accepts no connections (datallowconn = false): there is nothing to '
                "revoke",
            )
            return False
        return True

    return check


def _parse_verification(problems: _Problems, value: object) -> VerificationSettings:
    mapping = problems.mapping("verification", value)
    if mapping is None:
        return VerificationSettings()
    p = problems
    checks: dict[str, Callable[[str, object], object | None]] = {
        "enabled": p.boolean,
        "mode": lambda path, v: p.choice(path, v, VERIFICATION_MODES),
        "image": lambda path, v: p.string(
            path, v, pattern=_IMAGE, what="an image reference", max_len=512
        ),
        "imagePullPolicy": lambda path, v: p.choice(path, v, PULL_POLICIES),
        "timeoutSeconds": lambda path, v: p.integer(path, v, 5, 3600, "a timeout in seconds"),
        "latencyBudgetMs": lambda path, v: p.number(
            path, v, 0.0, 60_000.0, "a latency budget in milliseconds"
        ),
        "rerun": lambda path, v: p.choice(path, v, RERUN_POLICIES),
        "allowedDatabases": lambda path, v: p.names(
            path, v, pattern=_DATABASE, noun="database", what="a database name"
        ),
    }
    kwargs = _fields(problems, "verification", mapping, VERIFICATION_KEYS, checks)
    return VerificationSettings(**kwargs)  # type: ignore[arg-type]


def _parse_unmanaged(
    problems: _Problems, value: object, apps: Sequence[AppSpec]
) -> UnmanagedSettings:
    """Names as they are on the server (any name without control characters: a hand-made
    object may be quoted, mixed case); an app's own role or database is refused (it is managed)."""
    mapping = problems.mapping("unmanaged", value)
    if mapping is None:
        return UnmanagedSettings()
    p = problems
    roles = {app.role_name: i for i, app in enumerate(apps)}
    databases = {app.database_name: i for i, app in enumerate(apps)}

    def not_an_app(owner: Mapping[str, int], noun: str) -> Callable[[str, str], bool]:
        def check(path: str, name: str) -> bool:
            if name in owner:
                p.add(
                    path,
                    f"{_show(name)} is the {noun} of {_key('apps')}[{owner[name]}]; the stack "
                    "manages it, so it is never reported as unmanaged",
                )
                return False
            return True

        return check

    checks: dict[str, Callable[[str, object], object | None]] = {
        "ignoreRoles": lambda path, v: p.names(
            path, v, pattern=_ROLE, noun="role", what="a role name", check=not_an_app(roles, "role")
        ),
        "ignoreDatabases": lambda path, v: p.names(
            path,
            v,
            pattern=_ROLE,
            noun="database",
            what="a database name",
            check=not_an_app(databases, "database"),
        ),
    }
    kwargs = _fields(problems, "unmanaged", mapping, UNMANAGED_KEYS, checks)
    return UnmanagedSettings(**kwargs)  # type: ignore[arg-type]


def _parse_app_name(problems: _Problems, path: str, value: object) -> str | None:
    name = problems.string(path, value)
    if name is None:
        return None
    ok = True
    if not _APP_NAME.fullmatch(name):
        problems.add(
            path,
            f"{_show(name)} is not a DNS-1123 label starting with a letter "
            "(lowercase letters, digits and '-'; ending with a letter or digit)",
        )
        ok = False
    if len(name.encode()) > MAX_APP_NAME:
        problems.add(
            path,
            f"{_show(name)} is {len(name.encode())} characters long; at most {MAX_APP_NAME} "
            f"so that the Secret name `<name>{SECRET_SUFFIX}` fits in {MAX_K8S_NAME} "
            f"(role and database names fit in {MAX_IDENTIFIER_BYTES} bytes)",
        )
        ok = False
    derived = name.replace("-", "_")
    if name in RESERVED_NAMES or derived in RESERVED_NAMES:
        problems.add(path, f"{_show(name)} is a reserved PostgreSQL name")
        ok = False
    elif derived.startswith("pg_"):
        problems.add(
            path,
            f"{_show(name)} gives the role/database name {_show(derived)}; "
            "names starting with pg_ are reserved by PostgreSQL",
        )
        ok = False
    return name if ok else None


@dataclass(frozen=True)
class _AppContext:
    """What checking one app needs from the rest of the config."""

    apps_namespace: str
    admin_secret_namespace: str
    allowed_extensions: tuple[str, ...] = ()
    namespace_per_app: bool = False


def _extension_check(problems: _Problems, allowed: Sequence[str]) -> Callable[[str, str], bool]:
    """Only trusted extensions, or those the operator listed in `allowedExtensions`."""

    def check(path: str, ext: str) -> bool:
        if ext in TRUSTED_EXTENSIONS or ext in allowed:
            return True
        if ext in UNTRUSTED_EXTENSIONS:
            why = f"not a trusted extension: {UNTRUSTED_EXTENSIONS[ext]}"
        else:
            hint = difflib.get_close_matches(ext, sorted(TRUSTED_EXTENSIONS), n=1)
            why = "not an extension PostgreSQL marks trusted" + (
                f' (did you mean "{hint[0]}"?)' if hint else ""
            )
        problems.add(
            path,
            f"{_show(ext)} is {why}; to allow it anyway, add it to {_key('allowedExtensions')}",
        )
        return False

    return check


def _parse_extensions(
    problems: _Problems, path: str, value: object, allowed: Sequence[str] = ()
) -> tuple[str, ...] | None:
    return problems.names(
        path,
        value,
        pattern=_EXTENSION,
        noun="extension",
        what="an extension name",
        check=_extension_check(problems, allowed),
    )


def _app_namespace(
    problems: _Problems,
    path: str,
    mapping: Mapping[str, object],
    name: str | None,
    context: _AppContext,
) -> str | None:
    """The app's own namespace: explicit, or derived from its name with `namespacePerApp`; None
    for the apps namespace (or when it is refused, which is reported)."""
    if "namespace" in mapping:
        namespace = problems.string(
            f"{path}.namespace",
            mapping["namespace"],
            pattern=_DNS_LABEL,
            what="a DNS-1123 label (a namespace name)",
            max_len=63,
        )
        if namespace is not None and _check_namespace(
            problems, f"{path}.namespace", namespace, context.admin_secret_namespace
        ):
            return namespace
        return None
    if context.namespace_per_app and name is not None:
        why = (
            f"with {_key('namespacePerApp')} the app gets the namespace {_show(name)}, which is "
            "refused: "
        )
        if _check_namespace(problems, f"{path}.name", name, context.admin_secret_namespace, why):
            return name
    return None


def _parse_app(
    problems: _Problems, index: int, value: object, context: _AppContext
) -> AppSpec | None:
    path = f"apps[{index}]"
    if isinstance(value, str):
        value = {"name": value}
    mapping = problems.mapping(path, value)
    if mapping is None:
        return None
    problems.unknown_keys(path, mapping, APP_KEYS)
    before = len(problems.items)
    if "name" not in mapping:
        problems.add(f"{path}.name", "is required")
        name = None
    else:
        name = _parse_app_name(problems, f"{path}.name", mapping["name"])
    kwargs: dict[str, object] = {}
    namespace = _app_namespace(problems, path, mapping, name, context)
    if "profile" in mapping and mapping["profile"] is not None:
        kwargs["profile"] = problems.choice(f"{path}.profile", mapping["profile"], PROFILES)
    if "connectionLimit" in mapping:
        kwargs["connection_limit"] = problems.integer(
            f"{path}.connectionLimit",
            mapping["connectionLimit"],
            1,
            MAX_CONNECTION_LIMIT,
            "a connection limit",
        )
    if "extensions" in mapping:
        kwargs["extensions"] = _parse_extensions(
            problems, f"{path}.extensions", mapping["extensions"], context.allowed_extensions
        )
    if "deletion" in mapping:
        kwargs["deletion"] = problems.choice(
            f"{path}.deletion", mapping["deletion"], DELETION_POLICIES
        )
    if "passwordVersion" in mapping:
        kwargs["password_version"] = problems.integer(
            f"{path}.passwordVersion", mapping["passwordVersion"], 0, 1_000_000, "a version"
        )
    if "allowReplace" in mapping:
        kwargs["allow_replace"] = problems.boolean(f"{path}.allowReplace", mapping["allowReplace"])
    if name is None or len(problems.items) > before:
        return None
    return AppSpec(
        name=name,
        namespace=namespace or context.apps_namespace,
        **kwargs,  # type: ignore[arg-type]
    )


def _parse_apps(problems: _Problems, value: object, context: _AppContext) -> tuple[AppSpec, ...]:
    if not isinstance(value, list):
        problems.add("apps", f"must be a list of apps, got {_type_name(value)} {_show(value)}")
        return ()
    apps: list[AppSpec] = []
    first_by_name: dict[str, int] = {}
    first_by_derived: dict[str, int] = {}
    for index, item in enumerate(value):
        raw_name = item if isinstance(item, str) else None
        if isinstance(item, Mapping):
            raw_name = item.get("name") if isinstance(item.get("name"), str) else None
        if isinstance(raw_name, str):
            derived = raw_name.replace("-", "_")
            if raw_name in first_by_name:
                problems.add(
                    f"apps[{index}].name",
                    f"duplicate app {_show(raw_name)} (also apps[{first_by_name[raw_name]}])",
                )
            elif derived in first_by_derived:
                problems.add(
                    f"apps[{index}].name",
                    f"{_show(raw_name)} collides with apps[{first_by_derived[derived]}]: both "
                    f"give the role/database name {_show(derived)} ('-' becomes '_')",
                )
            first_by_name.setdefault(raw_name, index)
            first_by_derived.setdefault(derived, index)
        app = _parse_app(problems, index, item, context)
        if app is not None:
            apps.append(app)
    return tuple(apps)


def parse_settings(raw: Mapping[str, object], *, kube_context: str | None = None) -> StackSettings:
    """Turn the `postgres-apps:` config (keys without the namespace, values as YAML types) into
    settings. Pure. Raises `ConfigError` listing every problem, each naming its config key.

    A secret key (`adminPassword`) is accepted only as a secret: as YAML's `{secure: ...}` or left
    out (`raw_config` leaves out what Pulumi marks secret); a plain value is refused."""
    problems = _Problems()
    problems.unknown_keys("", raw, [*TOP_LEVEL_KEYS, *SECRET_KEYS])
    _check_secret_keys(problems, raw)
    postgres = (
        _parse_postgres(problems, raw["postgres"]) if "postgres" in raw else PostgresSettings()
    )
    apps_namespace = "apps"
    if "appsNamespace" in raw:
        parsed_ns = problems.string(
            "appsNamespace",
            raw["appsNamespace"],
            pattern=_DNS_LABEL,
            what="a DNS-1123 label (a namespace name)",
            max_len=63,
        )
        if parsed_ns is not None and _check_namespace(
            problems, "appsNamespace", parsed_ns, postgres.admin_secret_namespace
        ):
            apps_namespace = parsed_ns
    elif refused_namespace(apps_namespace, postgres.admin_secret_namespace) is not None:
        _check_namespace(
            problems,
            "appsNamespace",
            apps_namespace,
            postgres.admin_secret_namespace,
            "not set, so it is the default; ",
        )
    allowed_extensions: tuple[str, ...] = ()
    if "allowedExtensions" in raw:
        allowed_extensions = (
            problems.names(
                "allowedExtensions",
                raw["allowedExtensions"],
                pattern=_EXTENSION,
                noun="extension",
                what="an extension name",
            )
            or ()
        )
    namespace_per_app = False
    if "namespacePerApp" in raw:
        namespace_per_app = bool(problems.boolean("namespacePerApp", raw["namespacePerApp"]))
    context = _AppContext(
        apps_namespace=apps_namespace,
        admin_secret_namespace=postgres.admin_secret_namespace,
        allowed_extensions=allowed_extensions,
        namespace_per_app=namespace_per_app,
    )
    apps = _parse_apps(problems, raw["apps"], context) if "apps" in raw else ()
    verification = (
        _parse_verification(problems, raw["verification"])
        if "verification" in raw
        else VerificationSettings()
    )
    _check_not_app_databases(problems, apps, "postgres.hardenDatabases", postgres.harden_databases)
    _check_not_app_databases(
        problems, apps, "verification.allowedDatabases", verification.allowed_databases
    )
    retired = _parse_retired(problems, raw["retired"], apps) if "retired" in raw else ()
    unmanaged = (
        _parse_unmanaged(problems, raw["unmanaged"], apps)
        if "unmanaged" in raw
        else UnmanagedSettings()
    )
    if problems.items:
        raise ConfigError(problems.items)
    return StackSettings(
        postgres=postgres,
        apps_namespace=apps_namespace,
        apps=apps,
        verification=verification,
        kube_context=kube_context or None,
        retired=retired,
        allowed_extensions=allowed_extensions,
        namespace_per_app=namespace_per_app,
        unmanaged=unmanaged,
    )


def _check_secret_keys(problems: _Problems, raw: Mapping[str, object]) -> None:
    """A secret set without `--secret` sits in plain text in `Pulumi.<stack>.yaml` (and in the
    program's config): refuse it, naming the fix, never the value."""
    for key in SECRET_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            continue
        problems.add(
            key,
            "is set in plain text (without --secret), so it is stored unencrypted in the stack "
            "config; set it as a secret: "
            f"`pulumi config set --secret {_key(key)} <value>`",
        )


def _check_not_app_databases(
    problems: _Problems, apps: Sequence[AppSpec], path: str, databases: Sequence[str]
) -> None:
    """`hardenDatabases` and `allowedDatabases` name databases outside the managed apps: an app's
    own database is already closed to PUBLIC and must stay closed to the other apps."""
    owner = {app.database_name: i for i, app in enumerate(apps)}
    for i, database in enumerate(databases):
        if database in owner:
            problems.add(
                f"{path}[{i}]",
                f"{_show(database)} is the database of {_key('apps')}[{owner[database]}]; an "
                "app's database is closed to every other app and cannot be listed here",
            )


def _parse_retired(problems: _Problems, value: object, apps: Sequence[AppSpec]) -> tuple[str, ...]:
    if not isinstance(value, list):
        problems.add("retired", f"must be a list of app names, got {_type_name(value)}")
        return ()
    current = {app.name for app in apps}
    names: list[str] = []
    for i, item in enumerate(value):
        name = problems.string(f"retired[{i}]", item, pattern=_APP_NAME, what="an app name")
        if name is None:
            continue
        if name in current:
            problems.add(f"retired[{i}]", f"{_show(name)} is still in postgres-apps:apps")
        else:
            names.append(name)
    return tuple(names)


def _decode(value: object) -> object:
    """Pulumi hands structured config values over as JSON text and scalars as plain strings."""
    if isinstance(value, str):
        try:
            return cast("object", json.loads(value))
        except ValueError:
            return value
    return value


def raw_config() -> dict[str, object]:
    """Every `postgres-apps:` key set for this stack (decoded), without the namespace prefix."""
    from pulumi.runtime import config as runtime_config  # noqa: PLC0415

    merged: dict[str, object] = {}
    merged.update(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    prefix = f"{CONFIG_NAMESPACE}:"
    raw: dict[str, object] = {}
    for full_key, value in merged.items():
        if full_key.startswith(prefix):
            key = full_key[len(prefix) :]
            if key in SECRET_KEYS:
                # read as a secret Output by postgres_apps.admin, never parsed here; only whether
                # it is a secret is passed on (the value never is)
                if not is_config_secret(full_key):
                    raw[key] = PLAINTEXT_SECRET
                continue
            if key == "appsNamespace":
                raw[key] = value
            else:
                raw[key] = _decode(value)
    return raw


def is_config_secret(full_key: str) -> bool:
    """Whether Pulumi hands this config key over as a secret (`pulumi config set --secret`).

    The language host passes the secret keys in PULUMI_CONFIG_SECRET_KEYS; the SDK's exec script
    stores them with `pulumi.runtime.set_all_config` (also what the unit harness and the mocks
    call), and `pulumi.runtime.is_config_secret` answers from there. The environment is asked too,
    for a program started without that script."""
    from pulumi.runtime import config as runtime_config  # noqa: PLC0415

    return (
        runtime_config.is_config_secret(full_key)
        or full_key in runtime_config.get_config_secret_keys_env()
    )


def load_settings() -> StackSettings:
    """Read and validate the stack's config (`postgres-apps:*` and `kubernetes:context`)."""
    kube_context = pulumi.Config("kubernetes").get("context")
    return parse_settings(raw_config(), kube_context=kube_context)
