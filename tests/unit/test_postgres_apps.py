"""`PostgresApps` as a consumer uses it (under mocks): args, validation, providers, URN aliases."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_postgresql as postgresql
import pytest

import postgres_apps
from postgres_apps.apps import (
    PostgresApps,
    PostgresAppsArgs,
    SecretArgs,
    args_from_config,
    config_from_args,
    settings_from_args,
)
from postgres_apps.config import ConfigError
from tests.unit.conftest import (
    CHECK_TYPE,
    THREE_APPS,
    ProgramMocks,
    RecordingMonitor,
    is_secret,
    run_program,
    run_under_mocks,
    unwrap,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs/examples/python-program/__main__.py"
T_APPS = "postgres-apps:apps:PostgresApps"
T_PROVIDER = "pulumi:providers:postgresql"
MOVED_TYPES = {
    "postgres-apps:namespace:AppsNamespace",
    "postgres-apps:server_hardening:ServerHardening",
    "postgres-apps:app_database:AppDatabase",
}
NEW_CHILD_TYPES = {
    "pulumi-python:dynamic/verification:AppsReady",
    "pulumi-python:dynamic/verification:NamespaceProbe",
}
"""Children 0.1.x never had: nothing to alias."""


def build(args: PostgresAppsArgs, opts: pulumi.ResourceOptions | None = None) -> Any:
    built: list[PostgresApps] = []
    run = run_under_mocks(
        lambda: built.append(PostgresApps("postgres-apps", args, opts)),
        ProgramMocks(),
    )
    return run, built[0]


def test_config_and_args_are_the_same_shape() -> None:
    raw = {k: v for k, v in THREE_APPS.items() if ":" not in k}
    args = args_from_config(raw)
    assert args["postgres"]["admin_port"] == 15432
    assert args["apps"][1]["connection_limit"] == 10  # type: ignore[index]
    assert config_from_args(args) == raw


def test_secret_keys_labels_and_annotations_pass_through_as_written() -> None:
    """`_rekey` turns snake_case into camelCase and back, but never inside `secret.*`: those keys
    are the operator's (`DB_URL` would become `dBURL`, a label key would be split)."""
    secret: SecretArgs = {
        "keys": {"DB_URL": "${uri}", "appUrl": "${uri}"},
        "labels": {"app.example.com/owner_team": "a"},
        "annotations": {"reloader.stakater.com/match": "true"},
    }
    args: PostgresAppsArgs = {"apps": [{"name": "a", "secret": secret}], "secret": secret}
    raw = config_from_args(args)
    assert raw["secret"] == secret
    assert raw["apps"] == [{"name": "a", "secret": secret}]
    assert args_from_config(raw) == args
    (app,) = settings_from_args(args).apps
    assert dict(app.secret.keys) == secret["keys"]


def test_bad_args_refused_before_anything_is_registered() -> None:
    monitor = RecordingMonitor(ProgramMocks())
    with pytest.raises(ConfigError) as refused:
        run_under_mocks(
            lambda: PostgresApps(
                "x",
                {"apps": ["ok", "Bad_Name"], "verification": {"mode": "podd"}},  # type: ignore[typeddict-item]
            ),
            ProgramMocks(),
            monitor=monitor,
        )
    text = str(refused.value)
    assert "apps[1]" in text
    assert "verification.mode" in text  # every problem at once
    assert monitor.registrations == []


def test_unknown_arg_named_with_a_hint() -> None:
    with pytest.raises(ConfigError) as refused:
        run_under_mocks(
            lambda: PostgresApps("x", {"apps": ["ok"], "apps_namespce": "apps"}),  # type: ignore[typeddict-unknown-key]
            ProgramMocks(),
        )
    assert "appsNamespce" in str(refused.value)
    assert "appsNamespace" in str(refused.value)


def test_without_a_provider_it_makes_the_admin_provider_as_its_child() -> None:
    run, apps = build({"apps": ["app-test"]})
    component = run.monitor.one(T_APPS, "postgres-apps")
    provider = run.monitor.one(T_PROVIDER, "postgres-admin")
    assert provider.parent == component.urn
    assert apps.unmanaged is not None
    roles = run.monitor.of_type("postgresql:index/role:Role")
    assert [r.provider.split("::")[-2] for r in roles] == [provider.urn.split("::")[-1]]


def test_a_given_provider_is_used_for_every_postgresql_resource() -> None:
    holder: list[postgresql.Provider] = []

    def body() -> None:
        given = postgresql.Provider("platform-pg", host="db.example", username="admin")
        holder.append(given)
        PostgresApps(
            "postgres-apps",
            {"apps": ["app-test", "n8n"]},
            pulumi.ResourceOptions(providers=[given]),
        )

    run = run_under_mocks(body, ProgramMocks())
    given_urn = run.monitor.one(T_PROVIDER, "platform-pg").urn
    assert [r.name for r in run.monitor.of_type(T_PROVIDER)] == ["platform-pg"]
    pg_resources = [r for r in run.monitor.registrations if r.type.startswith("postgresql:")]
    assert len(pg_resources) >= 8  # 2 roles, 2 databases, 2 revokes, 2 hardening grants
    for r in pg_resources:
        assert r.provider.startswith(given_urn + "::"), r.name


def test_every_child_that_moved_from_the_stack_root_has_an_alias() -> None:
    """0.1.x registered these at the root; each child of PostgresApps must say where it was."""
    run = run_program(THREE_APPS)
    component = run.monitor.one(T_APPS, "postgres-apps")
    direct = [
        r
        for r in run.monitor.registrations
        if r.parent == component.urn and r.type not in NEW_CHILD_TYPES
    ]
    assert {r.type for r in direct} == MOVED_TYPES
    for r in direct:
        assert r.aliases, f"{r.type} {r.name} moved without an alias"
        assert all("noParent: true" in a for a in r.aliases), r.aliases
    # the admin provider and the reads stay at the root, where 0.1.x put them
    assert "::pulumi:pulumi:Stack::" in run.monitor.one(T_PROVIDER, "postgres-admin").parent
    for r in run.monitor.registrations:
        if r.type not in {*MOVED_TYPES, *NEW_CHILD_TYPES, T_APPS} and r.parent == component.urn:
            pytest.fail(f"{r.type} {r.name} is a new direct child without an alias")


def test_the_stack_program_is_the_component_and_exports() -> None:
    assert len((REPO / "__main__.py").read_text().splitlines()) < 32
    run = run_program(THREE_APPS)
    assert set(run.outputs) == {
        "apps",
        "postgres",
        "verificationMode",
        "serverHardening",
        "connectionBudget",
        "managedApps",
        "retirementCopies",
        "unmanaged",
    }


def test_readme_example_runs_and_registers_the_two_apps() -> None:
    run = run_under_mocks(lambda: runpy.run_path(str(EXAMPLE), run_name="__main__"), ProgramMocks())
    assert set(run.outputs["apps"]) == {"app-test", "n8n"}
    assert set(run.outputs["managedApps"]) == {"app-test", "n8n"}
    readme = (REPO / "README.md").read_text()
    assert EXAMPLE.read_text() in readme, "README must show the example exactly as tested"


def test_public_names_resolve() -> None:
    for name in postgres_apps.__all__:
        assert getattr(postgres_apps, name).__name__ == name
    with pytest.raises(AttributeError):
        _ = postgres_apps.NotAThing


def test_api_page_is_current() -> None:
    from tools import api_doc  # noqa: PLC0415

    assert api_doc.PAGE.read_text() == api_doc.render(), "run: .venv/bin/python -m tools.api_doc"


def test_a_given_kubeconfig_reaches_every_check_as_a_secret() -> None:
    run, _ = build(
        {"apps": ["app-test", "n8n"], "kubeconfig": pulumi.Output.secret("apiVersion: v1\n")}
    )
    checks = [r for r in run.monitor.registrations if r.name.endswith("-check")]
    assert len(checks) == 2
    for r in checks:
        assert is_secret(r.inputs["kubeconfig"]), r.name
        assert unwrap(r.inputs["kubeconfig"]) == "apiVersion: v1\n"


T_PROBE = "pulumi-python:dynamic/verification:NamespaceProbe"
T_READY = "pulumi-python:dynamic/verification:AppsReady"


def test_pod_mode_runs_one_namespace_probe_per_namespace_before_the_checks() -> None:
    run, _ = build({"apps": ["app-test", "n8n", {"name": "grafana", "namespace": "monitoring"}]})
    probes = {r.name: r for r in run.monitor.of_type(T_PROBE)}
    assert sorted(probes) == ["apps-probe", "monitoring-probe"]
    members = {
        name: [m["app_name"] for m in unwrap(r.inputs["members"])] for name, r in probes.items()
    }
    assert members == {"apps-probe": ["app-test", "n8n"], "monitoring-probe": ["grafana"]}
    apps_urn = run.monitor.of_type(T_APPS)[0].urn
    for name, r in probes.items():
        assert r.parent == apps_urn, name
        secrets = run.monitor.of_type("kubernetes:core/v1:Secret")
        mine = [s.urn for s in secrets if s.name.removesuffix("-secret") in members[name]]
        assert len(mine) == len(members[name]), name
        assert set(mine) <= run.monitor.upstream(r.urn), name
        # the credentials hash reaches it, never the password
        assert "password" not in json.dumps(unwrap(r.inputs))
        for m in unwrap(r.inputs["members"]):
            assert len(m["credentials_sha256"]) == 64
    check = run.monitor.one(CHECK_TYPE, "grafana-check")
    assert probes["monitoring-probe"].urn in check.dependencies


@pytest.mark.parametrize("mode", ["pod", "direct"])
def test_peers_are_plain_names_and_the_gate_waits_for_every_app_through_one_barrier(
    mode: Literal["pod", "direct"],
) -> None:
    """The state stays linear in the apps: no check has an edge to another app's resources (its
    peers are plain names); one `AppsReady` waits for every app of the stack and every check and
    namespace probe waits for it, so isolation is checked once every peer exists."""
    run, _ = build(
        {
            "apps": ["app-test", "n8n", {"name": "grafana", "namespace": "monitoring"}],
            "verification": {"mode": mode},
        }
    )
    names = ("app-test", "n8n", "grafana")
    [ready] = run.monitor.of_type(T_READY)
    assert unwrap(ready.inputs["apps"]) == sorted(names)
    assert ready.parent == run.monitor.of_type(T_APPS)[0].urn
    owned = [
        *run.monitor.of_type("postgresql:index/role:Role"),
        *run.monitor.of_type("postgresql:index/database:Database"),
        *run.monitor.of_type("kubernetes:core/v1:Secret"),
    ]
    owner = {r.urn: r.name.rsplit("-", 1)[0] for r in owned if not r.name.startswith("postgres-")}
    assert sorted(set(owner.values())) == sorted(names)
    assert set(owner) <= set(ready.dependencies)
    gated = [*run.monitor.of_type(CHECK_TYPE), *run.monitor.of_type(T_PROBE)]
    assert len(gated) == (5 if mode == "pod" else 3)
    for r in gated:
        assert ready.urn in run.monitor.upstream(r.urn), r.name
    for name in names:
        check = run.monitor.one(CHECK_TYPE, f"{name}-check")
        others = {u for u in check.dependencies if u in owner and owner[u] != name}
        assert others == set(), (name, others)  # (property dependencies are among these)
        assert set(owner) <= run.monitor.upstream(check.urn), name
        peers = unwrap(check.inputs["peers"])
        assert sorted(p["role"] for p in peers) == sorted(
            n.replace("-", "_") for n in names if n != name
        )


def test_direct_mode_has_no_namespace_probe() -> None:
    run, _ = build({"apps": ["app-test", "n8n"], "verification": {"mode": "direct"}})
    assert run.monitor.of_type(T_PROBE) == []
    assert len(run.monitor.of_type(CHECK_TYPE)) == 2


@pytest.mark.parametrize("mode", ["pod", "direct"])
def test_connection_keys_reach_the_gate_names_plain_values_secret(
    mode: Literal["pod", "direct"],
) -> None:
    """The check gets the marked keys' names (both modes) and, as a secret, their values (what
    direct mode logs in with); a pod-mode namespace probe gets the names only."""
    secret: SecretArgs = {
        "keys": {"APP_DSN": "${uri}", "OTHER": "x"},
        "connection_keys": ["APP_DSN"],
    }
    run, _ = build(
        {"apps": [{"name": "n8n", "secret": secret}, "plain"], "verification": {"mode": mode}}
    )
    checks = {r.name: r for r in run.monitor.registrations if r.type == CHECK_TYPE}
    n8n, plain = checks["n8n-check"], checks["plain-check"]
    assert n8n.inputs["connection_keys"] == ["APP_DSN"]
    assert is_secret(n8n.inputs["connection_strings"])
    (value,) = unwrap(n8n.inputs["connection_strings"]).values()
    assert value.startswith("postgresql://n8n:")
    assert plain.inputs["connection_keys"] == []
    if mode == "pod":
        (probe,) = [r for r in run.monitor.registrations if r.type == T_PROBE]
        members = {m["app_name"]: m for m in unwrap(probe.inputs["members"])}
        assert members["n8n"]["connection_keys"] == ["APP_DSN"]
        assert value not in repr(unwrap(probe.inputs))  # names only: no credentials
