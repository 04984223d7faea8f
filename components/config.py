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
    adminSslmode: disable
    adminSecretNamespace: data
    adminSecretName: postgres-postgresql
    adminSecretKey: postgres-password
  postgres-apps:appsNamespace: apps
  postgres-apps:apps:
    - name: app-test               # or just `- app-test`
    - name: n8n
      profile: n8n
      namespace: automation
      connectionLimit: 10
      extensions: [pgcrypto]
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
  postgres-apps:retired: []        # apps retired by hand: their removal is not refused
  postgres-apps:adminPassword:     # optional config secret; overrides the Kubernetes Secret
    secure: ...
```
"""

from __future__ import annotations

import difflib
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

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_APP_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HOST = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_EXTENSION = re.compile(r"^[a-z][a-z0-9_-]*$")
_IMAGE = re.compile(r"^[^\s]+$")


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

TOP_LEVEL_KEYS = ("postgres", "appsNamespace", "apps", "verification", "retired")
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
VERIFICATION_KEYS = {
    "enabled": "enabled",
    "mode": "mode",
    "image": "image",
    "imagePullPolicy": "image_pull_policy",
    "timeoutSeconds": "timeout_seconds",
    "latencyBudgetMs": "latency_budget_ms",
    "rerun": "rerun",
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
        if pattern is not None and not pattern.match(value):
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
        return p.string(path, v, pattern=_HOST, what="a host name or IP address", max_len=253)

    def port(path: str, v: object) -> int | None:
        return p.integer(path, v, 1, 65535, "a TCP port")

    def user(path: str, v: object) -> str | None:
        return p.string(path, v, max_len=MAX_IDENTIFIER_BYTES)

    def label(path: str, v: object) -> str | None:
        return p.string(path, v, pattern=_DNS_LABEL, what="a DNS-1123 label", max_len=63)

    def subdomain(path: str, v: object) -> str | None:
        return p.string(
            path, v, pattern=_DNS_SUBDOMAIN, what="a Kubernetes object name", max_len=253
        )

    def secret_key(path: str, v: object) -> str | None:
        return p.string(path, v, pattern=_SECRET_KEY, what="a Secret key", max_len=253)

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
    }
    kwargs = _fields(problems, "postgres", mapping, POSTGRES_KEYS, checks)
    return PostgresSettings(**kwargs)  # type: ignore[arg-type]


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
    }
    kwargs = _fields(problems, "verification", mapping, VERIFICATION_KEYS, checks)
    return VerificationSettings(**kwargs)  # type: ignore[arg-type]


def _parse_app_name(problems: _Problems, path: str, value: object) -> str | None:
    name = problems.string(path, value)
    if name is None:
        return None
    ok = True
    if not _APP_NAME.match(name):
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


def _parse_extensions(problems: _Problems, path: str, value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        problems.add(path, f"must be a list of extension names, got {_type_name(value)}")
        return None
    result: list[str] = []
    ok = True
    for i, item in enumerate(value):
        ext = problems.string(
            f"{path}[{i}]",
            item,
            pattern=_EXTENSION,
            what="an extension name",
            max_len=MAX_IDENTIFIER_BYTES,
        )
        if ext is None:
            ok = False
        elif ext in result:
            problems.add(f"{path}[{i}]", f"duplicate extension {_show(ext)}")
            ok = False
        else:
            result.append(ext)
    return tuple(result) if ok else None


def _parse_app(
    problems: _Problems, index: int, value: object, apps_namespace: str
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
    if "namespace" in mapping:
        kwargs["namespace"] = problems.string(
            f"{path}.namespace",
            mapping["namespace"],
            pattern=_DNS_LABEL,
            what="a DNS-1123 label (a namespace name)",
            max_len=63,
        )
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
            problems, f"{path}.extensions", mapping["extensions"]
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
    namespace = kwargs.pop("namespace", None) or apps_namespace
    return AppSpec(name=name, namespace=cast("str", namespace), **kwargs)  # type: ignore[arg-type]


def _parse_apps(problems: _Problems, value: object, apps_namespace: str) -> tuple[AppSpec, ...]:
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
        app = _parse_app(problems, index, item, apps_namespace)
        if app is not None:
            apps.append(app)
    return tuple(apps)


def parse_settings(raw: Mapping[str, object], *, kube_context: str | None = None) -> StackSettings:
    """Turn the `postgres-apps:` config (keys without the namespace, values as YAML types) into
    settings. Pure. Raises `ConfigError` listing every problem, each naming its config key."""
    problems = _Problems()
    problems.unknown_keys("", raw, [*TOP_LEVEL_KEYS, *SECRET_KEYS])
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
        apps_namespace = parsed_ns or apps_namespace
    apps = _parse_apps(problems, raw["apps"], apps_namespace) if "apps" in raw else ()
    verification = (
        _parse_verification(problems, raw["verification"])
        if "verification" in raw
        else VerificationSettings()
    )
    retired = _parse_retired(problems, raw["retired"], apps) if "retired" in raw else ()
    if problems.items:
        raise ConfigError(problems.items)
    return StackSettings(
        postgres=postgres,
        apps_namespace=apps_namespace,
        apps=apps,
        verification=verification,
        kube_context=kube_context or None,
        retired=retired,
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
                continue  # read as a secret Output by components.admin, never parsed here
            if key == "appsNamespace":
                raw[key] = value
            else:
                raw[key] = _decode(value)
    return raw


def load_settings() -> StackSettings:
    """Read and validate the stack's config (`postgres-apps:*` and `kubernetes:context`)."""
    kube_context = pulumi.Config("kubernetes").get("context")
    return parse_settings(raw_config(), kube_context=kube_context)
