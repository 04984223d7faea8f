"""The package from a Pulumi YAML program: `pulumi package add <clone>/provider`, a program that
declares `postgres-apps:PostgresApps`, `pulumi preview` and `pulumi up` on the local cluster.

The YAML language host (pulumi-language-yaml 1.25.0, localenv/toolchain.sh) asks the engine for
the package's schema; the engine runs `provider/__main__.py` through the Python language host
(Pulumi's component provider host, in the clone's .venv) and calls Construct on it, which runs
`postgres_apps.hosted.PostgresApps` → `postgres_apps.apps.PostgresApps`. The gate's dynamic
resource is registered from inside that provider; the engine runs it with `PULUMI_PYTHON_CMD`
(a YAML project has no virtualenv option to pass on), the clone's .venv python here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from tests.e2e.harness import (
    ADMIN_PORT,
    KUBE_CONTEXT,
    LOCAL_LATENCY_BUDGET_MS,
    REPO,
    drop_leftovers,
    engine_env,
    query,
    remove_namespace,
    secret_data,
)

NAMESPACE = "e2e-yaml"
APPS = ("e2e-yaml-one", "e2e-yaml-two")
PROGRAM: dict[str, Any] = {
    "name": "yaml-platform",
    "runtime": "yaml",
    "resources": {
        "platform": {
            "type": "postgres-apps:PostgresApps",
            "properties": {
                "apps": [{"name": n, "deletion": "drop"} for n in APPS],
                "appsNamespace": NAMESPACE,
                "postgres": {"adminPort": ADMIN_PORT, "sslmode": "disable"},
                "verification": {
                    "image": "docker.io/postgres-apps/psql-client:15-bookworm",
                    "imagePullPolicy": "Never",
                    "latencyBudgetMs": LOCAL_LATENCY_BUDGET_MS,
                },
            },
        }
    },
    "outputs": {
        "apps": "${platform.apps}",
        "managedApps": "${platform.managedApps}",
        "verificationMode": "${platform.verificationMode}",
    },
}


@pytest.fixture(scope="module")
def consumer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("yaml")
    work = tmp / "yaml-platform"
    work.mkdir()
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(PROGRAM, sort_keys=False))
    env = engine_env(tmp / "state")
    env["PULUMI_PYTHON_CMD"] = str(REPO / ".venv/bin/python")
    added = subprocess.run(
        ["pulumi", "package", "add", str(REPO / "provider")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    opts = auto.LocalWorkspaceOptions(work_dir=str(work), env_vars=env)
    remove_namespace(NAMESPACE)
    drop_leftovers(list(APPS))
    stack = auto.create_stack("local", work_dir=str(work), opts=opts)
    stack.set_config("kubernetes:context", auto.ConfigValue(KUBE_CONTEXT))
    try:
        preview = stack.preview(on_output=print, color="never")
        up = stack.up(on_output=print, color="never")
        resources = (stack.export_stack().deployment or {})["resources"]
        yield {"work": work, "added": added, "preview": preview, "up": up, "resources": resources}
    finally:
        stack.destroy(on_output=print, color="never")
        remove_namespace(NAMESPACE)


def test_package_add_records_the_local_plugin(consumer: dict[str, Any]) -> None:
    project = yaml.safe_load((consumer["work"] / "Pulumi.yaml").read_text())
    assert project["packages"] == {"postgres-apps": str(REPO / "provider")}
    assert "Added package postgres-apps" in consumer["added"].stderr


def test_preview_plans_the_two_apps(consumer: dict[str, Any]) -> None:
    changes = consumer["preview"].change_summary
    assert changes.get("create", 0) >= 20, changes  # 2 apps x (password, role, db, grant, …)


def test_up_creates_verified_apps(consumer: dict[str, Any]) -> None:
    outputs = consumer["up"].outputs
    assert outputs["verificationMode"].value == "pod"
    apps = outputs["apps"].value
    assert set(apps) == set(APPS)
    for name in APPS:
        gate = apps[name]["verification"]
        assert gate["mode"] == "pod"
        assert {"login", "crud", "isolation", "latency"} <= set(gate["checksPassed"])
        data = secret_data(NAMESPACE, f"{name}-db-credentials")
        assert data["dbname"] == name.replace("-", "_")
    assert set(outputs["managedApps"].value) == set(APPS)
    roles = query(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [a.replace("-", "_") for a in APPS]
    )
    assert len(roles) == len(APPS)


def test_resource_tree_nests_the_real_component(consumer: dict[str, Any]) -> None:
    """The hosted type wraps `postgres-apps:apps:PostgresApps`; the gate runs under it."""
    types = {r["type"] for r in consumer["resources"]}
    assert {
        "postgres-apps:index:PostgresApps",
        "postgres-apps:apps:PostgresApps",
        "pulumi-python:dynamic/verification:ConnectivityCheck",
    } <= types, types
