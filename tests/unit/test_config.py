"""Stack config → settings: valid configs parse to the right values; each bad one fails with a
message naming its config key; every problem is reported at once."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from components.config import (
    AppSpec,
    ConfigError,
    PostgresSettings,
    StackSettings,
    VerificationSettings,
    load_settings,
    parse_settings,
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
        'postgres-apps:apps[0].profile: "wordpress" is not one of "n8n", "paperless"',
    ),
    (
        "unknown top-level key",
        {"aps": []},
        'postgres-apps:aps: unknown key (did you mean "apps"?)',
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
        "adminPassword, apps, appsNamespace, postgres, retired, verification"
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
    from components.config import raw_config  # noqa: PLC0415

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
    seen: list[dict[str, object]] = []
    run_under_mocks(
        lambda: seen.append(raw_config()), ProgramMocks(), {"appsNamespace": "explicit"}
    )
    assert seen == [{"apps": ["from-env"], "appsNamespace": "explicit"}]
