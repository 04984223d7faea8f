"""Stack config → settings: valid configs parse to the right values; each bad one fails with a
message naming its config key; every problem is reported at once."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from postgres_apps.config import (
    PLAINTEXT_SECRET,
    TRUSTED_EXTENSIONS,
    ConfigError,
    load_settings,
    parse_settings,
)
from postgres_apps.settings import (
    AppSpec,
    PostgresSettings,
    SecretExtras,
    StackSettings,
    VerificationSettings,
)
from tests.unit.conftest import REPO, ProgramMocks, RecordingMonitor, run_program, run_under_mocks


def test_empty_config_gives_defaults() -> None:
    s = parse_settings({})
    assert s == StackSettings()
    assert s.postgres.host == "postgres-postgresql.data.svc.cluster.local"
    assert s.postgres.port == 5432
    assert s.apps_namespace == "apps"
    assert s.apps == ()
    assert s.verification.latency_budget_ms == 100.0
    assert s.verification.mode == "pod"


def test_connection_budget_warn_percent_default_and_bounds() -> None:
    assert parse_settings({}).postgres.connection_budget_warn_percent == 80
    for value in (1, 55, 100):
        raw = {"postgres": {"connectionBudgetWarnPercent": value}}
        assert parse_settings(raw).postgres.connection_budget_warn_percent == value


def test_full_config() -> None:
    s = parse_settings(
        {
            "postgres": {
                "host": "pg.example.internal",
                "port": 6432,
                "sslmode": "verify-full",
                "adminHost": "10.0.0.5",
                "adminPort": 15432,
                "adminUser": "admin",
                "adminSslmode": "require",
                "adminSecretNamespace": "db",
                "adminSecretName": "pg-admin",
                "adminSecretKey": "password",
            },
            "appsNamespace": "workloads",
            "apps": [
                "app-test",
                {
                    "name": "n8n",
                    "profile": "n8n",
                    "namespace": "automation",
                    "connectionLimit": 5,
                    "extensions": ["pgcrypto", "uuid-ossp"],
                    "deletion": "retain",
                    "passwordVersion": 3,
                },
                {"name": "paperless", "profile": "paperless", "deletion": "drop"},
            ],
            "verification": {
                "enabled": False,
                "mode": "direct",
                "image": "registry.local/psql:15",
                "imagePullPolicy": "Never",
                "timeoutSeconds": 30,
                "latencyBudgetMs": 12.5,
                "rerun": "on-change",
            },
            "retired": ["old-app"],
        },
        kube_context="home",
    )
    assert s.postgres == PostgresSettings(
        host="pg.example.internal",
        port=6432,
        sslmode="verify-full",
        admin_host="10.0.0.5",
        admin_port=15432,
        admin_user="admin",
        admin_secret_namespace="db",
        admin_secret_name="pg-admin",
        admin_secret_key="password",
        admin_sslmode="require",
    )
    assert s.apps_namespace == "workloads"
    assert s.apps == (
        AppSpec(name="app-test", namespace="workloads"),
        AppSpec(
            name="n8n",
            namespace="automation",
            profile="n8n",
            connection_limit=5,
            extensions=("pgcrypto", "uuid-ossp"),
            deletion="retain",
            password_version=3,
        ),
        AppSpec(name="paperless", namespace="workloads", profile="paperless", deletion="drop"),
    )
    assert s.verification == VerificationSettings(
        enabled=False,
        mode="direct",
        image="registry.local/psql:15",
        image_pull_policy="Never",
        timeout_seconds=30,
        latency_budget_ms=12.5,
        rerun="on-change",
    )
    assert s.kube_context == "home"
    assert s.retired == ("old-app",)
    assert s.namespaces == ("workloads", "automation")


def test_derived_names() -> None:
    app = parse_settings({"apps": [{"name": "my-app-2"}]}).apps[0]
    assert app.role_name == "my_app_2"
    assert app.database_name == "my_app_2"
    assert app.secret_name == "my-app-2-db-credentials"
    assert app.connection_limit == 20
    assert app.deletion == "protect"


def test_longest_allowed_name_fits_everywhere() -> None:
    name = "a" * 48
    app = parse_settings({"apps": [name]}).apps[0]
    assert len(app.secret_name) == 63
    assert len(app.role_name.encode()) <= 63


BAD_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "uppercase name",
        {"apps": [{"name": "ok"}, {"name": "fine"}, {"name": "Bad_Name"}]},
        'postgres-apps:apps[2].name: "Bad_Name" is not a DNS-1123 label',
    ),
    ("name starts with digit", {"apps": ["1app"]}, 'apps[0].name: "1app" is not a DNS-1123 label'),
    ("name ends with dash", {"apps": ["app-"]}, 'apps[0].name: "app-" is not a DNS-1123 label'),
    ("name with dot", {"apps": ["my.app"]}, 'apps[0].name: "my.app" is not a DNS-1123 label'),
    ("empty name", {"apps": [{"name": ""}]}, "postgres-apps:apps[0].name: must not be empty"),
    ("missing name", {"apps": [{"profile": "n8n"}]}, "postgres-apps:apps[0].name: is required"),
    (
        "duplicate",
        {"apps": ["app-a", "app-b", "app-a"]},
        'postgres-apps:apps[2].name: duplicate app "app-a" (also apps[0])',
    ),
    (
        "duplicate after - to _",
        {"apps": ["my-app", {"name": "my_app"}]},
        'postgres-apps:apps[1].name: "my_app" collides with apps[0]: both give the role/database '
        'name "my_app"',
    ),
    ("reserved postgres", {"apps": ["postgres"]}, 'apps[0].name: "postgres" is a reserved'),
    ("reserved template0", {"apps": ["template0"]}, 'apps[0].name: "template0" is a reserved'),
    ("reserved template1", {"apps": ["template1"]}, 'apps[0].name: "template1" is a reserved'),
    ("reserved public", {"apps": ["public"]}, 'apps[0].name: "public" is a reserved'),
    (
        "reserved pg_ prefix",
        {"apps": ["pg-stat"]},
        'apps[0].name: "pg-stat" gives the role/database name "pg_stat"; names starting with pg_ '
        "are reserved",
    ),
    (
        "name too long",
        {"apps": ["a" * 49]},
        f'apps[0].name: "{"a" * 49}" is 49 characters long; at most 48',
    ),
    ("port not a number", {"postgres": {"port": "5432"}}, "postgres.port: must be an integer"),
    ("port zero", {"postgres": {"port": 0}}, "postgres-apps:postgres.port: 0 is not a TCP port"),
    ("port too high", {"postgres": {"adminPort": 70000}}, "postgres.adminPort: 70000 is not a TCP"),
    ("port boolean", {"postgres": {"port": True}}, "postgres.port: must be an integer"),
    (
        "budget warn zero",
        {"postgres": {"connectionBudgetWarnPercent": 0}},
        "postgres-apps:postgres.connectionBudgetWarnPercent: 0 is not a percentage of the "
        "server's connections (1..100)",
    ),
    (
        "budget warn over 100",
        {"postgres": {"connectionBudgetWarnPercent": 101}},
        "postgres.connectionBudgetWarnPercent: 101 is not a percentage",
    ),
    (
        "budget warn a float",
        {"postgres": {"connectionBudgetWarnPercent": 80.5}},
        "postgres.connectionBudgetWarnPercent: must be an integer",
    ),
    (
        "budget warn a string",
        {"postgres": {"connectionBudgetWarnPercent": "80"}},
        "postgres.connectionBudgetWarnPercent: must be an integer",
    ),
    ("bad sslmode", {"postgres": {"sslmode": "on"}}, 'postgres.sslmode: "on" is not one of'),
    (
        "admin sslmode prefer",
        {"postgres": {"adminSslmode": "prefer"}},
        'postgres-apps:postgres.adminSslmode: "prefer" is not one of "disable", "require"',
    ),
    ("bad host", {"postgres": {"host": "a host"}}, 'postgres.host: "a host" is not a host name'),
    (
        "unknown profile",
        {"apps": [{"name": "wp", "profile": "wordpress"}]},
        'postgres-apps:apps[0].profile: "wordpress" is not one of "n8n", "paperless", "gitea"',
    ),
    (
        "unknown top-level key",
        {"aps": []},
        'postgres-apps:aps: unknown key (did you mean "apps"?)',
    ),
    (
        "snake_case key (the settings' attribute name, not the config key)",
        {"apps_namespace": "apps"},
        'postgres-apps:apps_namespace: unknown key (did you mean "appsNamespace"?)',
    ),
    (
        "unknown app key",
        {"apps": [{"name": "x1", "connectionLimt": 5}]},
        'postgres-apps:apps[0].connectionLimt: unknown key (did you mean "connectionLimit"?)',
    ),
    (
        "unknown postgres key",
        {"postgres": {"adminPasword": "x"}},
        "postgres-apps:postgres.adminPasword: unknown key",
    ),
    (
        "unknown verification key",
        {"verification": {"latencyBudget": 100}},
        'postgres-apps:verification.latencyBudget: unknown key (did you mean "latencyBudgetMs"?)',
    ),
    (
        "latency budget negative",
        {"verification": {"latencyBudgetMs": -1}},
        "postgres-apps:verification.latencyBudgetMs: -1 is not a latency budget",
    ),
    (
        "latency budget zero",
        {"verification": {"latencyBudgetMs": 0}},
        "verification.latencyBudgetMs: 0 is not a latency budget",
    ),
    (
        "latency budget string",
        {"verification": {"latencyBudgetMs": "100ms"}},
        "verification.latencyBudgetMs: must be a number, got a string",
    ),
    (
        "timeout too short",
        {"verification": {"timeoutSeconds": 1}},
        "verification.timeoutSeconds: 1 is not a timeout in seconds (5..3600)",
    ),
    (
        "timeout float",
        {"verification": {"timeoutSeconds": 2.5}},
        "verification.timeoutSeconds: must be an integer, got a number",
    ),
    (
        "bad deletion policy",
        {"apps": [{"name": "x1", "deletion": "delete"}]},
        'postgres-apps:apps[0].deletion: "delete" is not one of "protect", "retain", "drop"',
    ),
    (
        "bad mode",
        {"verification": {"mode": "kubectl"}},
        'postgres-apps:verification.mode: "kubectl" is not one of "pod", "direct"',
    ),
    (
        "bad rerun",
        {"verification": {"rerun": "never"}},
        'verification.rerun: "never" is not one of "always", "on-change"',
    ),
    (
        "enabled not boolean",
        {"verification": {"enabled": "yes"}},
        "postgres-apps:verification.enabled: must be true or false, got a string",
    ),
    (
        "bad pull policy",
        {"verification": {"imagePullPolicy": "never"}},
        'verification.imagePullPolicy: "never" is not one of "Always", "IfNotPresent", "Never"',
    ),
    ("apps not a list", {"apps": {"name": "x"}}, "postgres-apps:apps: must be a list of apps"),
    ("app not a mapping", {"apps": [5]}, "postgres-apps:apps[0]: must be a mapping, got a number"),
    ("postgres not a mapping", {"postgres": "pg"}, "postgres-apps:postgres: must be a mapping"),
    (
        "verification not a mapping",
        {"verification": True},
        "postgres-apps:verification: must be a mapping, got a boolean",
    ),
    (
        "connection limit zero",
        {"apps": [{"name": "x1", "connectionLimit": 0}]},
        "apps[0].connectionLimit: 0 is not a connection limit",
    ),
    (
        "connection limit unlimited",
        {"apps": [{"name": "x1", "connectionLimit": -1}]},
        "apps[0].connectionLimit: -1 is not a connection limit",
    ),
    (
        "extensions not a list",
        {"apps": [{"name": "x1", "extensions": "pgcrypto"}]},
        "apps[0].extensions: must be a list of extension names",
    ),
    (
        "bad extension name",
        {"apps": [{"name": "x1", "extensions": ["pgcrypto; DROP"]}]},
        'apps[0].extensions[0]: "pgcrypto; DROP" is not an extension name',
    ),
    (
        "duplicate extension",
        {"apps": [{"name": "x1", "extensions": ["pgcrypto", "pgcrypto"]}]},
        'apps[0].extensions[1]: duplicate extension "pgcrypto"',
    ),
    (
        "bad app namespace",
        {"apps": [{"name": "x1", "namespace": "Apps"}]},
        'apps[0].namespace: "Apps" is not a DNS-1123 label',
    ),
    (
        "bad apps namespace",
        {"appsNamespace": "my_apps"},
        'postgres-apps:appsNamespace: "my_apps" is not a DNS-1123 label',
    ),
    (
        "retired not a list",
        {"retired": "old-app"},
        "postgres-apps:retired: must be a list of app names, got a string",
    ),
    (
        "retired app still configured",
        {"apps": ["old-app"], "retired": ["old-app"]},
        'postgres-apps:retired[0]: "old-app" is still in postgres-apps:apps',
    ),
    (
        "retired bad name",
        {"retired": ["Old"]},
        'postgres-apps:retired[0]: "Old" is not an app name',
    ),
    (
        "allowReplace not boolean",
        {"apps": [{"name": "x1", "allowReplace": "yes"}]},
        "postgres-apps:apps[0].allowReplace: must be true or false, got a string",
    ),
    (
        "negative password version",
        {"apps": [{"name": "x1", "passwordVersion": -1}]},
        "apps[0].passwordVersion: -1 is not a version",
    ),
    # -- full-string matching: a trailing newline is not part of any valid name (issue 11) ----
    ("name trailing newline", {"apps": ["app\n"]}, r'apps[0].name: "app\n" is not a DNS-1123'),
    (
        "duplicate but for a newline",
        {"apps": ["a1", "a1\n"]},
        r'postgres-apps:apps[1].name: "a1\n" is not a DNS-1123 label',
    ),
    (
        "app namespace trailing newline",
        {"apps": [{"name": "x1", "namespace": "team\n"}]},
        r'apps[0].namespace: "team\n" is not a DNS-1123 label',
    ),
    (
        "apps namespace trailing newline",
        {"appsNamespace": "apps\n"},
        r'postgres-apps:appsNamespace: "apps\n" is not a DNS-1123 label',
    ),
    (
        "extension trailing newline",
        {"apps": [{"name": "x1", "extensions": ["pgcrypto\n"]}]},
        r'apps[0].extensions[0]: "pgcrypto\n" is not an extension name',
    ),
    (
        "host trailing newline",
        {"postgres": {"host": "pg.local\n"}},
        r'postgres.host: "pg.local\n" is not a host name or IP address',
    ),
    (
        "admin host trailing newline",
        {"postgres": {"adminHost": "127.0.0.1\n"}},
        r'postgres.adminHost: "127.0.0.1\n" is not a host name',
    ),
    (
        "image trailing newline",
        {"verification": {"image": "postgres:17\n"}},
        r'verification.image: "postgres:17\n" is not an image reference',
    ),
    (
        "admin secret namespace trailing newline",
        {"postgres": {"adminSecretNamespace": "data\n"}},
        r'postgres.adminSecretNamespace: "data\n" is not a DNS-1123 label',
    ),
    (
        "admin secret name trailing newline",
        {"postgres": {"adminSecretName": "pg\n"}},
        r'postgres.adminSecretName: "pg\n" is not a Kubernetes object name',
    ),
    (
        "admin secret key trailing newline",
        {"postgres": {"adminSecretKey": "password\n"}},
        r'postgres.adminSecretKey: "password\n" is not a Secret key',
    ),
    (
        "retired trailing newline",
        {"retired": ["old-app\n"]},
        r'retired[0]: "old-app\n" is not an app name',
    ),
    (
        "admin user with a newline",
        {"postgres": {"adminUser": "postgres\n"}},
        r'postgres.adminUser: "postgres\n" is not a role name',
    ),
    (
        "host with a port",
        {"postgres": {"host": "pg.local:5432"}},
        'postgres.host: "pg.local:5432" is not a host name or IP address',
    ),
    (
        "bracketed IPv4 address",
        {"postgres": {"adminHost": "[10.0.0.1]"}},
        'postgres.adminHost: "[10.0.0.1]" is not a host name',
    ),
    # -- system and foreign namespaces ---------------------------------------------------------
    (
        "app namespace kube-system",
        {"apps": [{"name": "x1", "namespace": "kube-system"}]},
        'postgres-apps:apps[0].namespace: "kube-system" is a Kubernetes system namespace (kube-*)',
    ),
    (
        "app namespace kube-public",
        {"apps": [{"name": "x1", "namespace": "kube-public"}]},
        'apps[0].namespace: "kube-public" is a Kubernetes system namespace',
    ),
    (
        "app namespace kube-node-lease",
        {"apps": [{"name": "x1", "namespace": "kube-node-lease"}]},
        'apps[0].namespace: "kube-node-lease" is a Kubernetes system namespace',
    ),
    (
        "app namespace default",
        {"apps": [{"name": "x1", "namespace": "default"}]},
        'apps[0].namespace: "default" is Kubernetes\' default namespace',
    ),
    (
        "app namespace of the admin Secret",
        {"apps": [{"name": "x1", "namespace": "data"}]},
        'apps[0].namespace: "data" holds the admin Secret '
        "(postgres-apps:postgres.adminSecretNamespace): a pod there could mount the admin password",
    ),
    (
        "app namespace of a moved admin Secret",
        {"postgres": {"adminSecretNamespace": "db"}, "apps": [{"name": "x1", "namespace": "db"}]},
        'apps[0].namespace: "db" holds the admin Secret',
    ),
    (
        "apps namespace kube-system",
        {"appsNamespace": "kube-system"},
        'postgres-apps:appsNamespace: "kube-system" is a Kubernetes system namespace',
    ),
    (
        "apps namespace default",
        {"appsNamespace": "default"},
        'postgres-apps:appsNamespace: "default" is Kubernetes\' default namespace',
    ),
    (
        "apps namespace of the admin Secret",
        {"appsNamespace": "data"},
        'postgres-apps:appsNamespace: "data" holds the admin Secret',
    ),
    (
        "default apps namespace holds the admin Secret",
        {"postgres": {"adminSecretNamespace": "apps"}},
        'postgres-apps:appsNamespace: not set, so it is the default; "apps" holds the admin Secret',
    ),
    (
        "namespace per app: app named default",
        {"namespacePerApp": True, "apps": ["default"]},
        "postgres-apps:apps[0].name: with postgres-apps:namespacePerApp the app gets the namespace "
        '"default", which is refused: "default" is Kubernetes\' default namespace',
    ),
    (
        "namespace per app: app named kube-x",
        {"namespacePerApp": True, "apps": ["kube-x"]},
        'apps[0].name: with postgres-apps:namespacePerApp the app gets the namespace "kube-x"',
    ),
    (
        "namespace per app: app named like the admin namespace",
        {"namespacePerApp": True, "apps": ["data"]},
        'apps[0].name: with postgres-apps:namespacePerApp the app gets the namespace "data", '
        'which is refused: "data" holds the admin Secret',
    ),
    (
        "namespacePerApp not boolean",
        {"namespacePerApp": "yes"},
        "postgres-apps:namespacePerApp: must be true or false, got a string",
    ),
    # -- extensions: trusted only, unless allowed --------------------------------------------
    (
        "untrusted plpython3u",
        {"apps": [{"name": "x1", "extensions": ["plpython3u"]}]},
        'postgres-apps:apps[0].extensions[0]: "plpython3u" is not a trusted extension: an '
        "untrusted language: its functions run any code as the server's OS user; to allow it "
        "anyway, add it to postgres-apps:allowedExtensions",
    ),
    (
        "untrusted dblink",
        {"apps": [{"name": "x1", "extensions": ["pgcrypto", "dblink"]}]},
        'apps[0].extensions[1]: "dblink" is not a trusted extension: it opens connections',
    ),
    (
        "untrusted postgres_fdw",
        {"apps": [{"name": "x1", "extensions": ["postgres_fdw"]}]},
        'apps[0].extensions[0]: "postgres_fdw" is not a trusted extension',
    ),
    (
        "untrusted adminpack",
        {"apps": [{"name": "x1", "extensions": ["adminpack"]}]},
        'apps[0].extensions[0]: "adminpack" is not a trusted extension: its functions read and '
        "write files",
    ),
    (
        "untrusted file_fdw",
        {"apps": [{"name": "x1", "extensions": ["file_fdw"]}]},
        'apps[0].extensions[0]: "file_fdw" is not a trusted extension: it reads files',
    ),
    (
        "unknown extension",
        {"apps": [{"name": "x1", "extensions": ["timescaledb"]}]},
        'apps[0].extensions[0]: "timescaledb" is not an extension PostgreSQL marks trusted; to '
        "allow it anyway, add it to postgres-apps:allowedExtensions",
    ),
    (
        "misspelt extension",
        {"apps": [{"name": "x1", "extensions": ["pgcrpyto"]}]},
        'apps[0].extensions[0]: "pgcrpyto" is not an extension PostgreSQL marks trusted (did you '
        'mean "pgcrypto"?)',
    ),
    (
        "allowed extension does not allow another",
        {"allowedExtensions": ["dblink"], "apps": [{"name": "x1", "extensions": ["file_fdw"]}]},
        'apps[0].extensions[0]: "file_fdw" is not a trusted extension',
    ),
    (
        "allowedExtensions not a list",
        {"allowedExtensions": "dblink"},
        "postgres-apps:allowedExtensions: must be a list of extension names, got a string",
    ),
    (
        "allowedExtensions bad name",
        {"allowedExtensions": ["dblink\n"]},
        r'postgres-apps:allowedExtensions[0]: "dblink\n" is not an extension name',
    ),
    (
        "allowedExtensions duplicate",
        {"allowedExtensions": ["dblink", "dblink"]},
        'postgres-apps:allowedExtensions[1]: duplicate extension "dblink"',
    ),
    # -- the admin connection in clear ---------------------------------------------------------
    (
        "admin sslmode disable to a remote host",
        {"postgres": {"adminHost": "10.0.0.5"}},
        'postgres-apps:postgres.adminSslmode: "disable" with postgres-apps:postgres.adminHost '
        '"10.0.0.5", which is not a loopback address: the admin password would cross the network '
        "in clear",
    ),
    (
        "admin sslmode disable to a host name",
        {"postgres": {"adminHost": "pg.example.internal", "adminSslmode": "disable"}},
        "set postgres-apps:postgres.allowInsecureAdmin: true",
    ),
    (
        "admin sslmode disable to a remote IPv6",
        {"postgres": {"adminHost": "fd00::5"}},
        'postgres.adminSslmode: "disable" with postgres-apps:postgres.adminHost "fd00::5"',
    ),
    (
        "allowInsecureAdmin not boolean",
        {"postgres": {"adminHost": "10.0.0.5", "allowInsecureAdmin": "yes"}},
        "postgres-apps:postgres.allowInsecureAdmin: must be true or false, got a string",
    ),
    # -- the admin password only as a secret -------------------------------------------------
    (
        "admin password in plain text",
        {"adminPassword": "s3cret-value"},
        "postgres-apps:adminPassword: is set in plain text (without --secret), so it is stored "
        "unencrypted in the stack config; set it as a secret: "
        "`pulumi config set --secret postgres-apps:adminPassword <value>`",
    ),
    # -- hardenDatabases / allowedDatabases ----------------------------------------------------
    (
        "hardenDatabases not a list",
        {"postgres": {"hardenDatabases": "postgres"}},
        "postgres-apps:postgres.hardenDatabases: must be a list of database names, got a string",
    ),
    (
        "hardenDatabases template0",
        {"postgres": {"hardenDatabases": ["postgres", "template0"]}},
        'postgres.hardenDatabases[1]: "template0" accepts no connections (datallowconn = false)',
    ),
    (
        "hardenDatabases duplicate",
        {"postgres": {"hardenDatabases": ["postgres", "postgres"]}},
        'postgres.hardenDatabases[1]: duplicate database "postgres"',
    ),
    (
        "hardenDatabases bad name",
        {"postgres": {"hardenDatabases": ["Postgres"]}},
        'postgres.hardenDatabases[0]: "Postgres" is not a database name',
    ),
    (
        "hardenDatabases trailing newline",
        {"postgres": {"hardenDatabases": ["postgres\n"]}},
        r'postgres.hardenDatabases[0]: "postgres\n" is not a database name',
    ),
    (
        "hardenDatabases an app's database",
        {"apps": ["x1", "my-app"], "postgres": {"hardenDatabases": ["postgres", "my_app"]}},
        'postgres-apps:postgres.hardenDatabases[1]: "my_app" is the database of '
        "postgres-apps:apps[1]",
    ),
    (
        "allowedDatabases not a list",
        {"verification": {"allowedDatabases": "postgres"}},
        "postgres-apps:verification.allowedDatabases: must be a list of database names",
    ),
    (
        "allowedDatabases bad name",
        {"verification": {"allowedDatabases": ["my-db"]}},
        'verification.allowedDatabases[0]: "my-db" is not a database name',
    ),
    (
        "allowedDatabases duplicate",
        {"verification": {"allowedDatabases": ["postgres", "postgres"]}},
        'verification.allowedDatabases[1]: duplicate database "postgres"',
    ),
    (
        "allowedDatabases an app's database",
        {"apps": ["n8n"], "verification": {"allowedDatabases": ["n8n"]}},
        'postgres-apps:verification.allowedDatabases[0]: "n8n" is the database of '
        "postgres-apps:apps[0]",
    ),
    (
        "secret key that is built in",
        {"apps": [{"name": "a", "secret": {"keys": {"uri": "${uri}"}}}]},
        'postgres-apps:apps[0].secret.keys.uri: "uri" is a built-in key of the app\'s Secret',
    ),
    (
        "secret key that is no Secret key",
        {"apps": [{"name": "a", "secret": {"keys": {"DB URL": "${uri}"}}}]},
        'postgres-apps:apps[0].secret.keys.DB URL: "DB URL" is not a Secret key',
    ),
    (
        "unknown placeholder, with its near miss",
        {"apps": [{"name": "a", "secret": {"keys": {"DB_PASS": "${pasword}"}}}]},
        "postgres-apps:apps[0].secret.keys.DB_PASS: unknown placeholder ${pasword} "
        "(did you mean ${password}?); known: ${host}, ${port}",
    ),
    (
        "a lone dollar in a template",
        {"apps": [{"name": "a", "secret": {"keys": {"PRICE": "5$"}}}]},
        'postgres-apps:apps[0].secret.keys.PRICE: "5$" is not a valid template',
    ),
    (
        "a template that is no string",
        {"apps": [{"name": "a", "secret": {"keys": {"PORT2": 5432}}}]},
        "postgres-apps:apps[0].secret.keys.PORT2: must be a string, got a number 5432",
    ),
    (
        "app key taken by its profile",
        {"apps": [{"name": "n8n", "profile": "n8n", "secret": {"keys": {"DB_TYPE": "x"}}}]},
        'postgres-apps:apps[0].secret.keys.DB_TYPE: "DB_TYPE" is a key of the profile "n8n"',
    ),
    (
        "stack-wide key taken by an app's profile",
        {
            "apps": ["plain", {"name": "docs", "profile": "paperless"}],
            "secret": {"keys": {"PAPERLESS_DBHOST": "${host}"}},
        },
        'postgres-apps:secret.keys.PAPERLESS_DBHOST: "PAPERLESS_DBHOST" is a key of the profile '
        '"paperless" of apps[1] (docs)',
    ),
    (
        "a label postgres-apps sets",
        {"apps": [{"name": "a", "secret": {"labels": {"app.kubernetes.io/part-of": "x"}}}]},
        "postgres-apps:apps[0].secret.labels.app.kubernetes.io/part-of: "
        '"app.kubernetes.io/part-of" is set by postgres-apps',
    ),
    (
        "a label value Kubernetes refuses",
        {"secret": {"labels": {"team": "a team"}}},
        'postgres-apps:secret.labels.team: "a team" is not a label value',
    ),
    (
        "a label key Kubernetes refuses",
        {"secret": {"labels": {"-team": "a"}}},
        'postgres-apps:secret.labels.-team: "-team" is not a Kubernetes qualified name',
    ),
    (
        "an annotation the Kubernetes provider reads",
        {"apps": [{"name": "a", "secret": {"annotations": {"pulumi.com/skipAwait": "true"}}}]},
        "postgres-apps:apps[0].secret.annotations.pulumi.com/skipAwait: "
        '"pulumi.com/skipAwait" is an instruction to the Pulumi Kubernetes provider',
    ),
    (
        "a connection key that is no templated key",
        {"apps": [{"name": "a", "secret": {"keys": {"A": "${uri}"}, "connectionKeys": ["uri"]}}]},
        'postgres-apps:apps[0].secret.connectionKeys[0]: "uri" is not a key of '
        "postgres-apps:apps[0].secret.keys or postgres-apps:secret.keys",
    ),
    (
        "a stack-wide connection key of an app's key",
        {
            "apps": [{"name": "a", "secret": {"keys": {"A": "${uri}"}}}],
            "secret": {"connectionKeys": ["A"]},
        },
        'postgres-apps:secret.connectionKeys[0]: "A" is not a key of postgres-apps:secret.keys',
    ),
    (
        "an annotation that copies the Secret into other namespaces",
        {"secret": {"annotations": {"reflector.v1.k8s.emberstack.com/reflection-allowed": "true"}}},
        "postgres-apps:secret.annotations.reflector.v1.k8s.emberstack.com/reflection-allowed: "
        '"reflector.v1.k8s.emberstack.com/reflection-allowed" makes a controller copy the Secret '
        "into other namespaces",
    ),
    (
        "unknown secret key",
        {"secret": {"key": {}}},
        'postgres-apps:secret.key: unknown key (did you mean "keys"?)',
    ),
]


PROBLEM_COUNT = {"duplicate after - to _": 2}  # "my_app" is also not a DNS-1123 label


@pytest.mark.parametrize(("case", "raw", "expected"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_config_fails_with_its_message(case: str, raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_settings(raw)
    problems = excinfo.value.problems
    assert any(expected in p for p in problems), problems
    assert len(problems) == PROBLEM_COUNT.get(case, 1), problems
    assert all(p.startswith("postgres-apps:") for p in problems)


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_settings(
            {
                "postgres": {"port": "x", "sslmode": "on"},
                "apps": ["Bad_Name", "postgres", "ok", "ok", {"name": "z", "profile": "wp"}],
                "verification": {"mode": "pods", "latencyBudgetMs": -5},
                "typo": 1,
            }
        )
    problems = excinfo.value.problems
    keys = [p.split(": ", 1)[0] for p in problems]
    assert keys == [
        "postgres-apps:typo",
        "postgres-apps:postgres.port",
        "postgres-apps:postgres.sslmode",
        "postgres-apps:apps[0].name",
        "postgres-apps:apps[1].name",
        "postgres-apps:apps[3].name",
        "postgres-apps:apps[4].profile",
        "postgres-apps:verification.mode",
        "postgres-apps:verification.latencyBudgetMs",
    ]
    message = str(excinfo.value)
    assert message.startswith("invalid stack config (9 problems):")
    assert all(p in message for p in problems)


def test_load_settings_reads_stack_config() -> None:
    """`load_settings` reads `postgres-apps:*` (JSON for structured values, plain strings for
    scalars) and `kubernetes:context` the way the language host hands them over."""
    seen: list[Any] = []
    run_under_mocks(
        lambda: seen.append(load_settings()),
        ProgramMocks(),
        {
            "kubernetes:context": "home-k3s",
            "appsNamespace": "workloads",
            "apps": [{"name": "app-test"}, {"name": "n8n", "profile": "n8n"}],
            "postgres": {"adminPort": 15432, "sslmode": "disable"},
            "verification": {"mode": "direct"},
        },
    )
    s = seen[0]
    assert s.kube_context == "home-k3s"
    assert s.apps_namespace == "workloads"
    assert [a.name for a in s.apps] == ["app-test", "n8n"]
    assert s.apps[1].profile == "n8n"
    assert s.apps[1].namespace == "workloads"
    assert s.postgres.admin_port == 15432
    assert s.postgres.sslmode == "disable"
    assert s.verification.mode == "direct"


def test_load_settings_ignores_admin_password_but_rejects_typos() -> None:
    with pytest.raises(ConfigError) as excinfo:
        run_under_mocks(
            load_settings,
            ProgramMocks(),
            {"adminPassword": "s3cret", "adminPasword": "typo", "apps": []},
            secret_keys=["postgres-apps:adminPassword"],
        )
    assert excinfo.value.problems == [
        'postgres-apps:adminPasword: unknown key (did you mean "adminPassword"?); known keys: '
        "adminPassword, allowedExtensions, apps, appsNamespace, namespacePerApp, "
        "podSecurityEnforce, postgres, retired, retirement, secret, unmanaged, verification"
    ]


def test_invalid_config_registers_nothing() -> None:
    """The program fails before any resource is registered (and says why)."""
    mocks = ProgramMocks()
    monitor = RecordingMonitor(mocks)
    with pytest.raises(ConfigError, match=r"apps\[1\]\.name: duplicate app"):
        run_program({"apps": ["ok", "ok"]}, mocks, monitor=monitor)
    assert monitor.registrations == []
    # the same harness does record a valid program's registrations
    valid = RecordingMonitor(mocks)
    run_program({"apps": ["ok"]}, mocks, monitor=valid)
    assert len(valid.registrations) > 5


def _stack_file(stack: str) -> tuple[dict[str, Any], str | None]:
    doc = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = doc["config"]
    prefix = "postgres-apps:"
    raw = {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}
    assert set(config) - {f"{prefix}{k}" for k in raw} <= {"kubernetes:context"}
    return raw, config.get("kubernetes:context")


def test_stack_file_dev() -> None:
    raw, context = _stack_file("dev")
    s = parse_settings(raw, kube_context=context)
    assert s.kube_context == "default"
    assert (s.postgres.admin_host, s.postgres.admin_port) == ("127.0.0.1", 5432)
    assert s.postgres.host == "postgres-postgresql.data.svc.cluster.local"
    assert s.verification.mode == "pod"
    assert s.verification.image == "docker.io/library/postgres:17-alpine"
    assert [a.name for a in s.apps] == ["app-test"]


def test_stack_file_local() -> None:
    raw, context = _stack_file("local")
    s = parse_settings(raw, kube_context=context)
    assert s.kube_context == "postgres-apps-local"
    assert (s.postgres.admin_host, s.postgres.admin_port) == ("127.0.0.1", 15432)
    assert s.postgres.sslmode == "disable"
    assert s.postgres.admin_sslmode == "disable"
    assert [(a.name, a.profile) for a in s.apps] == [
        ("app-test", None),
        ("n8n", "n8n"),
        ("paperless", "paperless"),
    ]
    assert s.verification.mode == "pod"
    assert s.verification.image == "docker.io/postgres-apps/psql-client:15-bookworm"
    assert s.verification.image_pull_policy == "Never"


def test_raw_config_also_reads_the_pulumi_config_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Older hosts hand config over in PULUMI_CONFIG; explicit config wins over it."""
    from postgres_apps.config import raw_config  # noqa: PLC0415

    monkeypatch.setenv(
        "PULUMI_CONFIG",
        json.dumps(
            {
                "postgres-apps:apps": json.dumps(["from-env"]),
                "postgres-apps:appsNamespace": "env-ns",
                "postgres-apps:adminPassword": "never-parsed",
                "other:key": "ignored",
            }
        ),
    )
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["postgres-apps:adminPassword"]))
    seen: list[dict[str, object]] = []
    run_under_mocks(
        lambda: seen.append(raw_config()), ProgramMocks(), {"appsNamespace": "explicit"}
    )
    assert seen == [{"apps": ["from-env"], "appsNamespace": "explicit"}]
    # the same key without the secret marking: only that fact is passed on, never the value
    monkeypatch.delenv("PULUMI_CONFIG_SECRET_KEYS")
    seen.clear()
    run_under_mocks(lambda: seen.append(raw_config()), ProgramMocks(), {})
    assert seen == [
        {"apps": ["from-env"], "appsNamespace": "env-ns", "adminPassword": PLAINTEXT_SECRET}
    ]


# --------------------------------------------------------------------------------------------
# issue 11: what the refusals above must still let through, and the new settings' defaults


def test_new_settings_defaults() -> None:
    s = parse_settings({"apps": ["app-test"]})
    assert s.allowed_extensions == ()
    assert s.namespace_per_app is False
    assert s.postgres.allow_insecure_admin is False
    assert s.postgres.harden_databases == ("postgres", "template1")
    assert s.verification.allowed_databases == ()
    assert s.apps[0].namespace == "apps"


def test_new_settings_parse() -> None:
    s = parse_settings(
        {
            "postgres": {
                "adminHost": "10.0.0.5",
                "allowInsecureAdmin": True,
                "hardenDatabases": [],
            },
            "allowedExtensions": ["dblink", "postgis"],
            "namespacePerApp": True,
            "apps": [
                "app-test",
                {"name": "n8n", "namespace": "automation", "extensions": ["dblink", "pgcrypto"]},
                {"name": "geo", "extensions": ["postgis"]},
            ],
            "verification": {"allowedDatabases": ["postgres", "shared_ro"]},
        }
    )
    assert s.postgres.admin_host == "10.0.0.5"
    assert s.postgres.admin_sslmode == "disable"
    assert s.postgres.allow_insecure_admin is True
    assert s.postgres.harden_databases == ()
    assert s.allowed_extensions == ("dblink", "postgis")
    assert s.namespace_per_app is True
    assert [(a.name, a.namespace) for a in s.apps] == [
        ("app-test", "app-test"),
        ("n8n", "automation"),
        ("geo", "geo"),
    ]
    assert s.apps[1].extensions == ("dblink", "pgcrypto")
    assert s.verification.allowed_databases == ("postgres", "shared_ro")
    assert s.namespaces == ("apps", "app-test", "automation", "geo")


def test_harden_databases_may_name_other_existing_databases() -> None:
    s = parse_settings({"postgres": {"hardenDatabases": ["postgres", "legacy_db", "_x1"]}})
    assert s.postgres.harden_databases == ("postgres", "legacy_db", "_x1")


@pytest.mark.parametrize("extension", sorted(TRUSTED_EXTENSIONS))
def test_every_trusted_extension_is_accepted(extension: str) -> None:
    app = parse_settings({"apps": [{"name": "x1", "extensions": [extension]}]}).apps[0]
    assert app.extensions == (extension,)


def test_untrusted_extensions_are_not_in_the_trusted_list() -> None:
    for name in ("plpython3u", "dblink", "postgres_fdw", "adminpack", "file_fdw", "plperlu"):
        assert name not in TRUSTED_EXTENSIONS


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.10.20.30", "localhost", "LOCALHOST", "::1", "[::1]"]
)
def test_admin_sslmode_disable_is_fine_on_loopback(host: str) -> None:
    s = parse_settings({"postgres": {"adminHost": host, "adminSslmode": "disable"}})
    assert s.postgres.admin_sslmode == "disable"
    assert s.postgres.admin_host == host.strip("[]")


def test_admin_sslmode_require_is_fine_anywhere() -> None:
    s = parse_settings({"postgres": {"adminHost": "10.0.0.5", "adminSslmode": "require"}})
    assert s.postgres.admin_host == "10.0.0.5"


@pytest.mark.parametrize(
    ("written", "used"),
    [
        ("[fd00::1]", "fd00::1"),
        ("fd00::1", "fd00::1"),
        ("10.1.2.3", "10.1.2.3"),
        ("PG.lan", "PG.lan"),
    ],
)
def test_hosts_are_kept_as_libpq_takes_them(written: str, used: str) -> None:
    """An IPv6 literal loses its URI brackets: the Secret's `host` key goes to libpq as is."""
    s = parse_settings({"postgres": {"host": written, "sslmode": "require"}})
    assert s.postgres.host == used


def test_insecure_admin_message_names_both_keys_and_why() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_settings({"postgres": {"adminHost": "pg.example.internal"}})
    (problem,) = excinfo.value.problems
    assert problem.startswith("postgres-apps:postgres.adminSslmode: ")
    assert "postgres-apps:postgres.adminHost" in problem
    assert "postgres-apps:postgres.allowInsecureAdmin: true" in problem
    assert "admin password would cross the network in clear" in problem


def test_admin_password_secure_yaml_value_is_accepted() -> None:
    """The stack file's own form (`secure: ...`) is a secret; a plain string is not."""
    assert parse_settings({"adminPassword": {"secure": "v1:abc"}}) == StackSettings()


def test_plain_admin_password_is_refused_without_showing_it() -> None:
    """Through the harness as the language host hands it over: not in the secret keys."""
    with pytest.raises(ConfigError) as excinfo:
        run_under_mocks(
            load_settings, ProgramMocks(), {"adminPassword": "plain-Pa55word", "apps": []}
        )
    assert excinfo.value.problems == [
        "postgres-apps:adminPassword: is set in plain text (without --secret), so it is stored "
        "unencrypted in the stack config; set it as a secret: "
        "`pulumi config set --secret postgres-apps:adminPassword <value>`"
    ]
    assert "plain-Pa55word" not in str(excinfo.value)


def test_secret_admin_password_is_accepted() -> None:
    """The control for the test above: the same value, marked secret, passes."""
    seen: list[StackSettings] = []
    run_under_mocks(
        lambda: seen.append(load_settings()),
        ProgramMocks(),
        {"adminPassword": "plain-Pa55word", "apps": ["app-test"]},
        secret_keys=["postgres-apps:adminPassword"],
    )
    assert [a.name for a in seen[0].apps] == ["app-test"]


def test_plain_admin_password_registers_nothing() -> None:
    """The real program: a plain admin password stops it before any resource is registered."""
    mocks = ProgramMocks()
    monitor = RecordingMonitor(mocks)
    with pytest.raises(ConfigError, match=r"postgres-apps:adminPassword: is set in plain text"):
        run_program({"apps": ["ok"], "adminPassword": "plain-Pa55word"}, mocks, monitor=monitor)
    assert monitor.registrations == []


def test_namespace_per_app_with_explicit_namespace_in_a_refused_one() -> None:
    """An explicit namespace is checked as such (one problem, at `namespace`)."""
    with pytest.raises(ConfigError) as excinfo:
        parse_settings({"namespacePerApp": True, "apps": [{"name": "x1", "namespace": "default"}]})
    assert [p.split(": ", 1)[0] for p in excinfo.value.problems] == [
        "postgres-apps:apps[0].namespace"
    ]


@pytest.mark.parametrize(
    ("verification", "refused"),
    [({}, True), ({"mode": "pod"}, True), ({"mode": "direct"}, False), ({"enabled": False}, False)],
)
def test_connection_limit_one_refused_with_the_pod_gate(
    verification: dict[str, object], refused: bool
) -> None:
    raw = {"apps": [{"name": "solo", "connectionLimit": 1}], "verification": verification}
    if not refused:
        assert parse_settings(raw).apps[0].connection_limit == 1
        return
    with pytest.raises(ConfigError) as err:
        parse_settings(raw)
    assert err.value.problems == [
        "postgres-apps:apps[0].connectionLimit: 1 leaves the verification gate no room: in pod "
        "mode it logs in as the app with a second session while the first is still open; use "
        "at least 2, or postgres-apps:verification.mode: direct, or "
        "postgres-apps:verification.enabled: false"
    ]


def test_secret_extras_merge_stack_wide_entries_under_each_apps_own() -> None:
    settings = parse_settings(
        {
            "apps": [
                {
                    "name": "one",
                    "secret": {
                        "keys": {"URL": "${uri}"},
                        "labels": {"team": "b"},
                        "annotations": {"note": "own"},
                    },
                },
                "two",
            ],
            "secret": {
                "keys": {"URL": "${jdbc_uri}", "HOSTPORT": "${host_port}"},
                "labels": {"team": "a", "tier": "db"},
                "annotations": {"reloader.stakater.com/match": "true"},
            },
        }
    )
    one, two = settings.apps
    assert dict(one.secret.keys) == {"URL": "${uri}", "HOSTPORT": "${host_port}"}
    assert dict(one.secret.labels) == {"team": "b", "tier": "db"}
    assert dict(one.secret.annotations) == {
        "reloader.stakater.com/match": "true",
        "note": "own",
    }
    assert dict(two.secret.keys) == {"URL": "${jdbc_uri}", "HOSTPORT": "${host_port}"}
    assert dict(two.secret.labels) == {"team": "a", "tier": "db"}
    assert one.secret.connection_keys == two.secret.connection_keys == ()
    marked = parse_settings(
        {
            "apps": [{"name": "one", "secret": {"keys": {"A": "${uri}"}, "connectionKeys": ["A"]}}],
            "secret": {"keys": {"S": "${uri}"}, "connectionKeys": ["S"]},
        }
    )
    assert marked.apps[0].secret.connection_keys == ("S", "A")  # stack-wide first
    # nothing asked for: nothing extra (an existing stack's Secrets stay as they are)
    (plain,) = parse_settings({"apps": ["three"]}).apps
    assert plain.secret == SecretExtras()


def test_secret_problems_are_all_reported_at_once() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_settings(
            {
                "apps": [
                    {
                        "name": "a",
                        "secret": {
                            "keys": {"host": "x", "B": "${hots}"},
                            "labels": {"bad key": "v"},
                        },
                    }
                ]
            }
        )
    assert [p.split(":")[1] for p in excinfo.value.problems] == [
        "apps[0].secret.keys.host",
        "apps[0].secret.keys.B",
        "apps[0].secret.labels.bad key",
    ]
