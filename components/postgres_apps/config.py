"""Stack config → the settings of `postgres_apps.settings`, validated by pydantic models.

Parsing (`parse_settings`) reports every problem at once, each at its config key, before any
resource is registered; every message comes from this module (`_MESSAGES` for pydantic's own
error types, `_refuse` for the checks written here).

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
      secret:                      # beyond the built-in keys (and the profile's)
        keys:                      # templates over ${host} ${port} ${host_port} ${dbname}
          N8N_DB_URL: ${uri}       #   ${user} ${password} ${sslmode} ${uri} ${jdbc_uri}; $$ is $
        labels: {team: automation}
        annotations: {reloader.stakater.com/match: "true"}
        connectionKeys: [N8N_DB_URL]   # the gate logs in with these (libpq URI or key=value)
  postgres-apps:secret:            # the same shape, for every app (an app's own entry wins)
    annotations: {}
  postgres-apps:podSecurityEnforce:  # per namespace: restricted (default) | baseline | privileged
    automation: baseline           #   (audit and warn stay restricted)
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
  postgres-apps:retirement:        # `deletion: drop` takes a verified pg_dump here before dropping
    directory: retired-copies      # on the Pulumi host; relative to the project directory
    persistentVolumeClaim: null    # or a claim in adminSecretNamespace: a pod takes the copy there
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
- in `secret.keys`: a built-in key, a key of the app's profile (also from the stack-wide
  `postgres-apps:secret`), a template naming anything but `TEMPLATE_FIELDS`; in `secret.labels`
  the labels postgres-apps sets itself; in `secret.annotations` `pulumi.com/*` (read by the
  Kubernetes provider); label and annotation keys must be Kubernetes qualified names;
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
from collections.abc import Callable, Mapping
from string import Template
from typing import Annotated, Any, Literal, cast

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError

from postgres_apps.credentials import BASE_KEYS, PROFILE_KEYS, TEMPLATE_FIELDS
from postgres_apps.namespace import MANAGED_BY, PART_OF
from postgres_apps.settings import (
    CONFIG_NAMESPACE,
    DEFAULT_CONNECTION_BUDGET_WARN_PERCENT,
    DEFAULT_HARDEN_DATABASES,
    SECRET_SUFFIX,
    AppSpec,
    DeletionPolicy,
    PodSecurityLevel,
    PostgresSettings,
    Profile,
    RerunPolicy,
    RetirementSettings,
    SecretExtras,
    StackSettings,
    UnmanagedSettings,
    VerificationMode,
    VerificationSettings,
    ordered_namespaces,
)

SECRET_KEYS = ("adminPassword",)
MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL NAMEDATALEN - 1: longer role/database names are silently truncated by the server."""
MAX_K8S_NAME = 63
MAX_APP_NAME = MAX_K8S_NAME - len(SECRET_SUFFIX)
"""48: the Secret `<name>-db-credentials` must be a valid DNS-1123 label (≤ 63)."""

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
_QUALIFIED_NAME = re.compile(
    r"(?:(?P<prefix>[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)/)?"
    r"(?P<name>[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)"
)
"""A label or annotation key: optional DNS-subdomain prefix (≤ 253) and `/`, a name (≤ 63)."""
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_EXTENSION = re.compile(r"[a-z][a-z0-9_-]*")
_IMAGE = re.compile(r"[^\s]+")
_DATABASE = re.compile(r"[a-z_][a-z0-9_]*")
"""An existing database named in config: PostgreSQL's unquoted-identifier rule, lowercase ASCII
(what an unquoted name folds to), so the name means the same in SQL, psql and config."""
_PATH = re.compile(r"[^\x00-\x1f\x7f]+")
"""A file system path: anything without control characters."""
_ROLE = re.compile(r"[^\x00-\x1f\x7f]+")
"""The admin user: any name without control characters (libpq cannot carry NUL; a newline would
split the pgpass-style and log lines it appears in)."""


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


class ConfigError(pulumi.RunError):
    """Invalid stack config. `problems` holds one line per problem, each naming its config key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        header = f"invalid stack config ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n  - ".join([header, *self.problems]))


# --------------------------------------------------------------------------------------------
# messages: one source for every text a problem can carry


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


def _got(value: object) -> str:
    return f"got {_type_name(value)} {_show(value)}"


LIST_NOUNS = {
    "allowedExtensions": "extension",
    "extensions": "extension",
    "hardenDatabases": "database",
    "allowedDatabases": "database",
    "ignoreDatabases": "database",
    "ignoreRoles": "role",
    "retired": "app",
    "connectionKeys": "Secret key",
}
"""What a list holds, for "must be a list of <noun> names" (keyed by the list's config key)."""


def _list_message(e: ErrorDetails) -> str:
    field = str(e["loc"][-1])
    if field == "apps":
        return f"must be a list of apps, {_got(e['input'])}"
    return f"must be a list of {LIST_NOUNS[field]} names, got {_type_name(e['input'])}"


def _choices(e: ErrorDetails) -> str:
    expected = re.findall(r"'([^']*)'", str(e.get("ctx", {}).get("expected", "")))
    return f"{_show(e['input'])} is not one of " + ", ".join(f'"{c}"' for c in expected)


_MESSAGES: dict[str, Callable[[ErrorDetails], str]] = {
    "missing": lambda e: "is required",
    "string_type": lambda e: f"must be a string, {_got(e['input'])}",
    "int_type": lambda e: f"must be an integer, {_got(e['input'])}",
    "float_type": lambda e: f"must be a number, {_got(e['input'])}",
    "bool_type": lambda e: f"must be true or false, {_got(e['input'])}",
    "model_type": lambda e: f"must be a mapping, {_got(e['input'])}",
    "dict_type": lambda e: f"must be a mapping, {_got(e['input'])}",
    "list_type": _list_message,
    "literal_error": _choices,
}
"""Pydantic's error types → today's texts (anything else keeps pydantic's own message)."""


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    known = sorted(f.alias or name for name, f in _model_at(loc[:-1]).model_fields.items())
    hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
    suggestion = f' (did you mean "{hint[0]}"?)' if hint else ""
    return f"unknown key{suggestion}; known keys: {', '.join(known)}"


def _path(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _refuse(*problems: str, at: str = "") -> PydanticCustomError:
    """One or more problems found by a check written here; `at` extends the error's key path
    (e.g. `.name` from a check on the whole app)."""
    return PydanticCustomError("config", "{problems}", {"problems": list(problems), "at": at})


def _refuse_each(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """Several problems, each at its own key below the error's path: (`.key`, message) pairs."""
    return PydanticCustomError(
        "config",
        "{problems}",
        {"problems": [text for _, text in problems], "at": "", "ats": [at for at, _ in problems]},
    )


def _problems(error: ValidationError) -> list[str]:
    """Every problem as `postgres-apps:<key path>: <message>`, unknown keys first in their
    mapping (as the operator reads it: the typo, then the values)."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    for e in error.errors():
        loc = tuple(e["loc"])
        if e["type"] == "config":
            ctx = e.get("ctx", {})
            ats = ctx.get("ats") or [ctx["at"]] * len(ctx["problems"])
            out += [
                (loc, f"{_key(_path(loc) + at)}: {p}")
                for at, p in zip(ats, ctx["problems"], strict=True)
            ]
            continue
        if e["type"] == "extra_forbidden":
            at = next((i for i, (o, _) in enumerate(out) if o[: len(loc) - 1] == loc[:-1]), None)
            out.insert(
                len(out) if at is None else at, (loc, f"{_key(_path(loc))}: {_unknown_key(loc)}")
            )
            continue
        message = _MESSAGES[e["type"]](e) if e["type"] in _MESSAGES else e["msg"]
        out.append((loc, f"{_key(_path(loc))}: {message}"))
    return [text for _, text in out]


# --------------------------------------------------------------------------------------------
# checks pydantic does not know: each returns the value or raises `_refuse(...)`


def _text(pattern: re.Pattern[str] | None, what: str, max_len: int | None = None) -> Any:
    """A non-empty string matching `pattern` as a whole (`fullmatch`: `re.match` with `$` would
    accept "app\\n", which then ends up in role names, Secret names and pgpass lines)."""

    def check(value: str) -> str:
        if value == "":
            raise _refuse("must not be empty")
        if pattern is not None and not pattern.fullmatch(value):
            raise _refuse(f"{_show(value)} is not {what}")
        if max_len is not None and len(value.encode()) > max_len:
            raise _refuse(f"{_show(value)} is longer than {max_len} bytes")
        return value

    return AfterValidator(check)


def _between(low: int, high: int, what: str) -> Any:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise _refuse(f"{value} is not {what} ({low}..{high})")
        return value

    return AfterValidator(check)


def _above(low: float, high: float, what: str) -> Any:
    def check(value: float) -> float:
        if math.isnan(value) or not low < value <= high:
            shown = int(value) if value.is_integer() else value  # as written: pydantic gives float
            raise _refuse(f"{_show(shown)} is not {what} (> {low:g} and ≤ {high:g})")
        return float(value)

    return AfterValidator(check)


def _distinct(noun: str) -> Any:
    def check(values: list[str]) -> list[str]:
        for i, name in enumerate(values):
            if name in values[:i]:
                raise _refuse(f"duplicate {noun} {_show(name)}", at=f"[{i}]")
        return values

    return AfterValidator(check)


def _context(info: ValidationInfo) -> dict[str, Any]:
    return cast("dict[str, Any]", info.context)


def _host(value: str) -> str:
    valid = _valid_host(value)
    if valid is None:
        raise _refuse(f"{_show(value)} is not a host name or IP address")
    return valid


def _namespace_allowed(value: str, info: ValidationInfo) -> str:
    reason = refused_namespace(value, _context(info)["admin_secret_namespace"])
    if reason is not None:
        raise _refuse(f"{reason}; app Secrets must not be placed there")
    return value


def _app_name(name: str, info: ValidationInfo) -> str:
    ctx = _context(info)
    problems: list[str] = list(ctx["duplicates"])
    if not _APP_NAME.fullmatch(name):
        problems.append(
            f"{_show(name)} is not a DNS-1123 label starting with a letter "
            "(lowercase letters, digits and '-'; ending with a letter or digit)"
        )
    if len(name.encode()) > MAX_APP_NAME:
        problems.append(
            f"{_show(name)} is {len(name.encode())} characters long; at most {MAX_APP_NAME} "
            f"so that the Secret name `<name>{SECRET_SUFFIX}` fits in {MAX_K8S_NAME} "
            f"(role and database names fit in {MAX_IDENTIFIER_BYTES} bytes)"
        )
    derived = name.replace("-", "_")
    if name in RESERVED_NAMES or derived in RESERVED_NAMES:
        problems.append(f"{_show(name)} is a reserved PostgreSQL name")
    elif derived.startswith("pg_"):
        problems.append(
            f"{_show(name)} gives the role/database name {_show(derived)}; "
            "names starting with pg_ are reserved by PostgreSQL"
        )
    if not problems and ctx["namespace_per_app"] and not ctx["has_namespace"]:
        reason = refused_namespace(name, ctx["admin_secret_namespace"])
        if reason is not None:
            problems.append(
                f"with {_key('namespacePerApp')} the app gets the namespace {_show(name)}, which "
                f"is refused: {reason}; app Secrets must not be placed there"
            )
    if problems:
        raise _refuse(*problems)
    return name


def _trusted_extension(ext: str, info: ValidationInfo) -> str:
    """Only trusted extensions, or those the operator listed in `allowedExtensions`."""
    if ext in TRUSTED_EXTENSIONS or ext in _context(info)["allowed_extensions"]:
        return ext
    if ext in UNTRUSTED_EXTENSIONS:
        why = f"not a trusted extension: {UNTRUSTED_EXTENSIONS[ext]}"
    else:
        hint = difflib.get_close_matches(ext, sorted(TRUSTED_EXTENSIONS), n=1)
        why = "not an extension PostgreSQL marks trusted" + (
            f' (did you mean "{hint[0]}"?)' if hint else ""
        )
    raise _refuse(
        f"{_show(ext)} is {why}; to allow it anyway, add it to {_key('allowedExtensions')}"
    )


GATE_SESSIONS = 2
"""Sessions of an app's role the pod-mode gate holds at once: the probe times logins with psql's
`\\connect`, which opens the new session before it closes the old one."""


def _room_for_the_gate(limit: int, info: ValidationInfo) -> int:
    """With the pod-mode gate on, the role's CONNECTION LIMIT must leave it room to log in."""
    if limit < GATE_SESSIONS and _context(info)["pod_gate"]:
        raise _refuse(
            f"{limit} leaves the verification gate no room: in pod mode it logs in as the app "
            f"with a second session while the first is still open; use at least "
            f"{GATE_SESSIONS}, or {_key('verification.mode')}: direct, or "
            f"{_key('verification.enabled')}: false"
        )
    return limit


def _not_template0(name: str) -> str:
    if name == "template0":
        raise _refuse(
            '"template0" accepts no connections (datallowconn = false): there is nothing to revoke'
        )
    return name


def _not_an_apps(noun: str, why: str) -> Any:
    """Refuse the name of an app's own role or database in a list of the server's other objects."""

    def check(name: str, info: ValidationInfo) -> str:
        owner = _context(info)["app_objects"]
        if name in owner:
            raise _refuse(f"{_show(name)} is the {noun} of {_key('apps')}[{owner[name]}]; {why}")
        return name

    return AfterValidator(check)


_NOT_AN_APPS_DATABASE = _not_an_apps(
    "database", "an app's database is closed to every other app and cannot be listed here"
)
"""`hardenDatabases` and `allowedDatabases` name databases outside the managed apps: an app's
own database is already closed to PUBLIC and must stay closed to the other apps."""
_MANAGED = "the stack manages it, so it is never reported as unmanaged"


def _not_current_app(name: str, info: ValidationInfo) -> str:
    if name in _context(info)["app_names"]:
        raise _refuse(f"{_show(name)} is still in postgres-apps:apps")
    return name


def _secret(value: object) -> object:
    """A secret set without `--secret` sits in plain text in `Pulumi.<stack>.yaml` (and in the
    program's config): refuse it, naming the fix, never the value."""
    if isinstance(value, Mapping) and set(value) == {"secure"}:
        return None
    raise _refuse(
        "is set in plain text (without --secret), so it is stored unencrypted in the stack "
        f"config; set it as a secret: `pulumi config set --secret {_key('adminPassword')} <value>`"
    )


SECRET_LABELS = (*sorted(MANAGED_BY), *sorted(PART_OF), "app.kubernetes.io/name")
"""Labels postgres-apps sets on every app Secret itself (`app_database.secret_labels`)."""
PROVIDER_ANNOTATION_PREFIX = "pulumi.com/"
"""Annotations the Kubernetes provider reads as instructions (`pulumi.com/skipAwait`, ...)."""
COPYING_ANNOTATION_PREFIXES: tuple[str, ...] = (
    "replicator.v1.mittwald.de/",  # kubernetes-replicator: replicate-to, replicate-to-matching
    "reflector.v1.k8s.emberstack.com/",  # kubernetes-reflector: reflection-allowed, -auto-enabled
    "kubed.appscode.com/",  # kubed: sync
)
"""Annotations that make a controller copy the Secret into other namespaces, where whoever may
create pods there could mount it: the app's credentials stay in the app's namespace (the policy
pack refuses them too: `policies/postgres_apps_policies.py`, `COPYING_ANNOTATION_PREFIXES`)."""


def _qualified_name_problem(key: str) -> str | None:
    match = _QUALIFIED_NAME.fullmatch(key)
    too_long = match is not None and (
        len(match["name"]) > MAX_K8S_NAME or len(match["prefix"] or "") > 253
    )
    if match is None or too_long:
        return (
            f"{_show(key)} is not a Kubernetes qualified name (an optional DNS-subdomain prefix "
            "and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending "
            "with a letter or digit)"
        )
    return None


def _secret_keys(keys: dict[str, str]) -> dict[str, str]:
    """Extra Secret keys: a valid key that is no built-in one, and a template that names only
    the connection facts."""
    problems: list[tuple[str, str]] = []
    known = ", ".join(f"${{{name}}}" for name in TEMPLATE_FIELDS)
    for key, template in keys.items():
        at = f".{key}"
        if not _SECRET_KEY.fullmatch(key) or len(key) > 253:
            problems.append(
                (at, f"{_show(key)} is not a Secret key (letters, digits, '-', '_' and '.')")
            )
        elif key in BASE_KEYS:
            problems.append(
                (at, f"{_show(key)} is a built-in key of the app's Secret; choose another name")
            )
        parsed = Template(template)
        if not parsed.is_valid():
            problems.append(
                (
                    at,
                    f"{_show(template)} is not a valid template: a placeholder is ${{name}} "
                    f"({known}) and a literal $ is $$",
                )
            )
            continue
        for name in parsed.get_identifiers():
            if name not in TEMPLATE_FIELDS:
                hint = difflib.get_close_matches(name, list(TEMPLATE_FIELDS), n=1)
                suggestion = f" (did you mean ${{{hint[0]}}}?)" if hint else ""
                problems.append(
                    (at, f"unknown placeholder ${{{name}}}{suggestion}; known: {known}")
                )
    if problems:
        raise _refuse_each(problems)
    return keys


def _secret_labels(labels: dict[str, str]) -> dict[str, str]:
    problems: list[tuple[str, str]] = []
    for key, value in labels.items():
        at = f".{key}"
        problem = _qualified_name_problem(key)
        if problem is not None:
            problems.append((at, problem))
        elif key in SECRET_LABELS:
            problems.append(
                (at, f"{_show(key)} is set by postgres-apps on every app Secret; choose another")
            )
        if not _LABEL_VALUE.fullmatch(value) or len(value) > MAX_K8S_NAME:
            problems.append(
                (
                    at,
                    f"{_show(value)} is not a label value (at most 63 letters, digits, '-', '_' "
                    "or '.', starting and ending with a letter or digit)",
                )
            )
    if problems:
        raise _refuse_each(problems)
    return labels


def _secret_annotations(annotations: dict[str, str]) -> dict[str, str]:
    problems: list[tuple[str, str]] = []
    for key in annotations:
        problem = _qualified_name_problem(key)
        if problem is None and key.startswith(PROVIDER_ANNOTATION_PREFIX):
            problem = (
                f"{_show(key)} is an instruction to the Pulumi Kubernetes provider "
                f"({PROVIDER_ANNOTATION_PREFIX}*), not an annotation for the app"
            )
        elif problem is None and key.startswith(COPYING_ANNOTATION_PREFIXES):
            problem = (
                f"{_show(key)} makes a controller copy the Secret into other namespaces, where "
                "any pod could mount the app's credentials; give each namespace its own app"
            )
        if problem is not None:
            problems.append((f".{key}", problem))
    if problems:
        raise _refuse_each(problems)
    return annotations


def _known_profile(profile: str) -> str:
    if profile not in PROFILE_KEYS:
        raise _refuse(
            f"{_show(profile)} is not one of " + ", ".join(f'"{p}"' for p in PROFILE_KEYS)
        )
    return profile


Namespace = Annotated[
    str,
    _text(_DNS_LABEL, "a DNS-1123 label (a namespace name)", 63),
    AfterValidator(_namespace_allowed),
]
Host = Annotated[str, _text(None, "", 253), AfterValidator(_host)]
Port = Annotated[int, _between(1, 65535, "a TCP port")]
Database = Annotated[str, _text(_DATABASE, "a database name", MAX_IDENTIFIER_BYTES)]
Extension = Annotated[str, _text(_EXTENSION, "an extension name", MAX_IDENTIFIER_BYTES)]
ServerName = Annotated[str, _text(_ROLE, "a role name", MAX_IDENTIFIER_BYTES)]
"""A name as it is on the server: any name without control characters (libpq cannot carry NUL;
a newline would split the pgpass-style and log lines it appears in)."""
Databases = Annotated[list[Annotated[Database, _NOT_AN_APPS_DATABASE]], _distinct("database")]


# --------------------------------------------------------------------------------------------
# the config as the operator writes it (camelCase keys); `.settings()` gives the contract


class _Model(BaseModel):
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        hide_input_in_errors=True,
    )

    def fields(self) -> dict[str, Any]:
        """Field values as the settings take them (lists become tuples)."""
        return {k: tuple(v) if isinstance(v, list) else v for k, v in self}


class _Postgres(_Model):
    host: Host = PostgresSettings.host
    port: Port = PostgresSettings.port
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    admin_host: Host = PostgresSettings.admin_host
    admin_port: Port = PostgresSettings.admin_port
    admin_user: ServerName = PostgresSettings.admin_user
    admin_sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = "disable"
    """The postgresql provider (lib/pq) knows no `allow`/`prefer`."""
    admin_secret_namespace: Annotated[str, _text(_DNS_LABEL, "a DNS-1123 label", 63)] = (
        PostgresSettings.admin_secret_namespace
    )
    admin_secret_name: Annotated[str, _text(_DNS_SUBDOMAIN, "a Kubernetes object name", 253)] = (
        PostgresSettings.admin_secret_name
    )
    admin_secret_key: Annotated[str, _text(_SECRET_KEY, "a Secret key", 253)] = (
        PostgresSettings.admin_secret_key
    )
    allow_insecure_admin: bool = False
    harden_databases: Annotated[
        list[Annotated[Database, AfterValidator(_not_template0), _NOT_AN_APPS_DATABASE]],
        _distinct("database"),
    ] = Field(default_factory=lambda: list(DEFAULT_HARDEN_DATABASES))
    connection_budget_warn_percent: Annotated[
        int, _between(1, 100, "a percentage of the server's connections")
    ] = DEFAULT_CONNECTION_BUDGET_WARN_PERCENT

    @model_validator(mode="after")
    def _admin_in_clear(self) -> _Postgres:
        if (
            self.admin_sslmode == "disable"
            and not self.allow_insecure_admin
            and not is_loopback_host(self.admin_host)
        ):
            raise _refuse(
                f'"disable" with {_key("postgres.adminHost")} {_show(self.admin_host)}, which is '
                "not a loopback address: the admin password would cross the network in clear; "
                'use "require", "verify-ca" or "verify-full", or set '
                f"{_key('postgres.allowInsecureAdmin')}: true if that path is protected otherwise "
                "(a VPN, a tunnel)",
                at=".adminSslmode",
            )
        return self


class _Secret(_Model):
    keys: Annotated[dict[str, str], AfterValidator(_secret_keys)] = Field(default_factory=dict)
    labels: Annotated[dict[str, str], AfterValidator(_secret_labels)] = Field(default_factory=dict)
    annotations: Annotated[dict[str, str], AfterValidator(_secret_annotations)] = Field(
        default_factory=dict
    )

    connection_keys: Annotated[list[str], _distinct("key")] = Field(default_factory=list)

    def extras_for(self, app: _Secret) -> SecretExtras:
        """These stack-wide entries with the app's own over them."""
        return SecretExtras(
            keys=tuple({**self.keys, **app.keys}.items()),
            labels=tuple({**self.labels, **app.labels}.items()),
            annotations=tuple({**self.annotations, **app.annotations}.items()),
            connection_keys=tuple(dict.fromkeys([*self.connection_keys, *app.connection_keys])),
        )


def _profile_collisions(keys: Mapping[str, str], profile: str | None) -> list[str]:
    """Keys of `keys` that the profile already sets (in `keys`' order)."""
    return [k for k in keys if profile is not None and k in PROFILE_KEYS[profile]]


class _App(_Model):
    name: Annotated[str, _text(None, ""), AfterValidator(_app_name)]
    namespace: Namespace | None = None
    profile: Annotated[Profile, AfterValidator(_known_profile)] | None = None
    connection_limit: Annotated[
        int,
        _between(1, MAX_CONNECTION_LIMIT, "a connection limit"),
        AfterValidator(_room_for_the_gate),
    ] = 20
    extensions: Annotated[
        list[Annotated[Extension, AfterValidator(_trusted_extension)]], _distinct("extension")
    ] = Field(default_factory=list)
    deletion: DeletionPolicy = "protect"
    password_version: Annotated[int, _between(0, 1_000_000, "a version")] = 0
    allow_replace: bool = False
    secret: _Secret = Field(default_factory=_Secret)

    @model_validator(mode="after")
    def _keys_free_of_the_profile(self) -> _App:
        taken = _profile_collisions(self.secret.keys, self.profile)
        if taken:
            raise _refuse_each(
                [
                    (
                        f".secret.keys.{key}",
                        f"{_show(key)} is a key of the profile {_show(self.profile)}; choose "
                        "another name, or leave the profile out and template every key yourself",
                    )
                    for key in taken
                ]
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _one_app(cls, value: object, info: ValidationInfo) -> object:
        """`- app-test` is `- name: app-test`; duplicates are found here, in list order, on the
        names as written (so a duplicate is reported even when its first is invalid)."""
        ctx = _context(info)
        index = ctx["next_index"]
        ctx["next_index"] += 1
        value = {"name": value} if isinstance(value, str) else value
        ctx["has_namespace"] = isinstance(value, Mapping) and "namespace" in value
        ctx["duplicates"] = []
        name = value.get("name") if isinstance(value, Mapping) else None
        if isinstance(name, str):
            derived = name.replace("-", "_")
            first, by_derived = ctx["first_by_name"], ctx["first_by_derived"]
            if name in first:
                ctx["duplicates"].append(f"duplicate app {_show(name)} (also apps[{first[name]}])")
            elif derived in by_derived:
                ctx["duplicates"].append(
                    f"{_show(name)} collides with apps[{by_derived[derived]}]: both give the "
                    f"role/database name {_show(derived)} ('-' becomes '_')"
                )
            first.setdefault(name, index)
            by_derived.setdefault(derived, index)
        return value


class _Verification(_Model):
    enabled: bool = True
    mode: VerificationMode = "pod"
    image: Annotated[str, _text(_IMAGE, "an image reference", 512)] = VerificationSettings.image
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    timeout_seconds: Annotated[int, _between(5, 3600, "a timeout in seconds")] = 120
    latency_budget_ms: Annotated[
        float, _above(0.0, 60_000.0, "a latency budget in milliseconds")
    ] = VerificationSettings.latency_budget_ms
    rerun: RerunPolicy = "always"
    allowed_databases: Databases = Field(default_factory=list)


class _Unmanaged(_Model):
    """Names as they are on the server (a hand-made object may be quoted, mixed case)."""

    ignore_roles: Annotated[
        list[Annotated[ServerName, _not_an_apps("role", _MANAGED)]], _distinct("role")
    ] = Field(default_factory=list)
    ignore_databases: Annotated[
        list[
            Annotated[
                str,
                _text(_ROLE, "a database name", MAX_IDENTIFIER_BYTES),
                _not_an_apps("database", _MANAGED),
            ]
        ],
        _distinct("database"),
    ] = Field(default_factory=list)


class _Retirement(_Model):
    directory: Annotated[str, _text(_PATH, "a directory path", 4096)] = RetirementSettings.directory
    persistent_volume_claim: (
        Annotated[str, _text(_DNS_SUBDOMAIN, "a Kubernetes object name", 253)] | None
    ) = None


class _Stack(_Model):
    admin_password: Annotated[object, PlainValidator(_secret)] = None
    """Read as a secret Output by postgres_apps.admin; here only refused in plain text."""
    postgres: _Postgres = Field(default_factory=_Postgres)
    apps_namespace: Namespace = "apps"
    allowed_extensions: Annotated[list[Extension], _distinct("extension")] = Field(
        default_factory=list
    )
    namespace_per_app: bool = False
    apps: list[_App] = Field(default_factory=list)
    verification: _Verification = Field(default_factory=_Verification)
    retired: list[
        Annotated[str, _text(_APP_NAME, "an app name"), AfterValidator(_not_current_app)]
    ] = Field(default_factory=list)
    unmanaged: _Unmanaged = Field(default_factory=_Unmanaged)
    retirement: _Retirement = Field(default_factory=_Retirement)
    secret: _Secret = Field(default_factory=_Secret)
    """Secret keys, labels and annotations for every app (an app's own `secret` wins)."""
    pod_security_enforce: dict[str, PodSecurityLevel] = Field(default_factory=dict)
    """Namespace → the Pod Security level it enforces (default `restricted` for every one)."""

    @model_validator(mode="after")
    def _enforce_levels_name_our_namespaces(self) -> _Stack:
        ours = self._namespaces()
        problems = [
            (
                f"podSecurityEnforce.{ns}",
                f"{_show(ns)} is not a namespace of this stack ({', '.join(ours)})",
            )
            for ns in self.pod_security_enforce
            if ns not in ours
        ]
        if problems:
            raise _refuse_each(problems)
        return self

    def _namespaces(self) -> tuple[str, ...]:
        """What `StackSettings.namespaces` will be."""
        return ordered_namespaces(self.apps_namespace, map(self._namespace_of, self.apps))

    def _namespace_of(self, app: _App) -> str:
        """The app's namespace: its own, its name (`namespacePerApp`) or the apps namespace."""
        return app.namespace or (app.name if self.namespace_per_app else self.apps_namespace)

    @model_validator(mode="after")
    def _connection_keys_are_templated(self) -> _Stack:
        """A connection key names a key of `keys` that every app it applies to has: the stack's
        own (for a stack-wide one) or the app's or the stack's (for an app's)."""
        problems: list[tuple[str, str]] = []
        levels = [("secret", self.secret, set(self.secret.keys))]
        levels += [
            (f"apps[{i}].secret", app.secret, {*self.secret.keys, *app.secret.keys})
            for i, app in enumerate(self.apps)
        ]
        for at, secret, keys in levels:
            for j, key in enumerate(secret.connection_keys):
                if key not in keys:
                    problems.append(
                        (
                            f"{at}.connectionKeys[{j}]",
                            f"{_show(key)} is not a key of {_key(at + '.keys')}"
                            + (f" or {_key('secret.keys')}" if at != "secret" else "")
                            + "; list the templated keys that hold a connection string",
                        )
                    )
        if problems:
            raise _refuse_each(problems)
        return self

    @model_validator(mode="after")
    def _stack_keys_free_of_profiles(self) -> _Stack:
        problems: list[tuple[str, str]] = []
        for key in self.secret.keys:
            users = [
                f"the profile {_show(app.profile)} of apps[{i}] ({app.name})"
                for i, app in enumerate(self.apps)
                if key not in app.secret.keys and _profile_collisions({key: ""}, app.profile)
            ]
            if users:
                problems.append(
                    (
                        f"secret.keys.{key}",
                        f"{_show(key)} is a key of {', '.join(users)}; choose another name",
                    )
                )
        if problems:
            raise _refuse_each(problems)
        return self

    @model_validator(mode="after")
    def _default_apps_namespace(self) -> _Stack:
        if "apps_namespace" not in self.model_fields_set:
            reason = refused_namespace(self.apps_namespace, self.postgres.admin_secret_namespace)
            if reason is not None:
                raise _refuse(
                    f"not set, so it is the default; {reason}; app Secrets must not be placed "
                    "there",
                    at="appsNamespace",
                )
        return self

    def settings(self, kube_context: str | None) -> StackSettings:
        fields = self.fields()
        return StackSettings(
            postgres=PostgresSettings(**self.postgres.fields()),
            apps_namespace=self.apps_namespace,
            apps=tuple(
                AppSpec(
                    **{
                        **app.fields(),
                        "namespace": self._namespace_of(app),
                        "secret": self.secret.extras_for(app.secret),
                    }
                )
                for app in self.apps
            ),
            verification=VerificationSettings(**self.verification.fields()),
            kube_context=kube_context or None,
            retired=fields["retired"],
            allowed_extensions=fields["allowed_extensions"],
            namespace_per_app=self.namespace_per_app,
            unmanaged=UnmanagedSettings(**self.unmanaged.fields()),
            retirement=RetirementSettings(**self.retirement.fields()),
            pod_security_enforce=tuple(self.pod_security_enforce.items()),
        )


_MODELS: dict[tuple[str, ...], type[_Model]] = {
    (): _Stack,
    ("postgres",): _Postgres,
    ("apps",): _App,
    ("verification",): _Verification,
    ("unmanaged",): _Unmanaged,
    ("retirement",): _Retirement,
    ("secret",): _Secret,
    ("apps", "secret"): _Secret,
}


def _model_at(loc: tuple[str | int, ...]) -> type[_Model]:
    return _MODELS[tuple(str(p) for p in loc if not isinstance(p, int))]


def _validation_context(raw: Mapping[str, object]) -> dict[str, Any]:
    """What checks on one key need from others, read from the raw config (a value that is itself
    invalid is reported at its own key). `next_index`, `first_by_*`, `duplicates` and
    `has_namespace` are the state of the walk through `apps` (`_App._one_app`; pydantic
    validates list items in order); a fresh context for each `parse_settings` call."""
    postgres = raw.get("postgres")
    admin_ns = postgres.get("adminSecretNamespace") if isinstance(postgres, Mapping) else None
    allowed = raw.get("allowedExtensions")
    apps = raw.get("apps")
    names: dict[str, int] = {}
    for i, item in enumerate(apps if isinstance(apps, list) else []):
        name = item.get("name") if isinstance(item, Mapping) else item
        if isinstance(name, str) and _APP_NAME.fullmatch(name):
            names.setdefault(name, i)
    verification = raw.get("verification")
    return {
        "pod_gate": not isinstance(verification, Mapping)
        or (verification.get("enabled") is not False and verification.get("mode", "pod") == "pod"),
        "admin_secret_namespace": admin_ns if isinstance(admin_ns, str) else "data",
        "allowed_extensions": allowed if isinstance(allowed, list) else [],
        "namespace_per_app": raw.get("namespacePerApp") is True,
        "app_names": names,
        "app_objects": {name.replace("-", "_"): i for name, i in names.items()},
        "next_index": 0,
        "first_by_name": {},
        "first_by_derived": {},
    }


def parse_settings(raw: Mapping[str, object], *, kube_context: str | None = None) -> StackSettings:
    """Turn the `postgres-apps:` config (keys without the namespace, values as YAML types) into
    settings. Pure. Raises `ConfigError` listing every problem, each naming its config key.

    A secret key (`adminPassword`) is accepted only as a secret: as YAML's `{secure: ...}` or left
    out (`raw_config` leaves out what Pulumi marks secret); a plain value is refused."""
    try:
        stack = _Stack.model_validate(dict(raw), context=_validation_context(raw))
    except ValidationError as error:
        raise ConfigError(_problems(error)) from None
    return stack.settings(kube_context)


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
