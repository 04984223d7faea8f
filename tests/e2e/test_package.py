"""The package as another team installs it: `pip install <clone>` into a fresh venv, a program of
ten lines outside this repository, `pulumi preview` and `pulumi up` on the local cluster.

Outside the repository nothing but the installed package can be imported: the gate's dynamic
provider is loaded from site-packages, not from a project directory.
"""

from __future__ import annotations

import subprocess
import venv
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

NAMESPACE = "e2e-package"
APPS = ("e2e-pkg-one", "e2e-pkg-two")
PROGRAM = f'''\
import pulumi
from postgres_apps import PostgresApps

apps = PostgresApps("platform-databases", {{
    "apps": [{{"name": n, "deletion": "drop"}} for n in {list(APPS)!r}],
    "apps_namespace": "{NAMESPACE}",
    "postgres": {{"admin_port": {ADMIN_PORT}, "sslmode": "disable"}},
    "verification": {{"image": "docker.io/postgres-apps/psql-client:15-bookworm",
        "image_pull_policy": "Never", "latency_budget_ms": {LOCAL_LATENCY_BUDGET_MS}}}}})
pulumi.export("apps", apps.apps)
pulumi.export("managedApps", apps.managed_apps)
'''


def pinned_requirements() -> list[str]:
    """The exact SDK pins of requirements.txt (the engine needs plugins of exactly these)."""
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [ln for ln in lines if ln.strip() and not ln.startswith(("#", "-e"))]


@pytest.fixture(scope="module")
def consumer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("package")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin/python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *pinned_requirements()], check=True)
    subprocess.run([*pip, str(REPO)], check=True)  # not editable: what a consumer gets
    work = tmp / "my-platform"
    work.mkdir()
    (work / "__main__.py").write_text(PROGRAM)
    spec = {
        "name": "my-platform",
        "runtime": {"name": "python", "options": {"toolchain": "pip", "virtualenv": str(env_dir)}},
    }
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(spec))
    opts = auto.LocalWorkspaceOptions(work_dir=str(work), env_vars=engine_env(tmp / "state"))
    remove_namespace(NAMESPACE)
    drop_leftovers(list(APPS))
    stack = auto.create_stack("local", work_dir=str(work), opts=opts)
    stack.set_config("kubernetes:context", auto.ConfigValue(KUBE_CONTEXT))
    try:
        preview = stack.preview(on_output=print, color="never")
        up = stack.up(on_output=print, color="never")
        yield {"env": env_dir, "work": work, "preview": preview, "up": up}
    finally:
        stack.destroy(on_output=print, color="never")
        remove_namespace(NAMESPACE)


def test_installed_not_linked(consumer: dict[str, Any]) -> None:
    where = subprocess.run(
        [
            str(consumer["env"] / "bin/python"),
            "-c",
            "import postgres_apps; print(postgres_apps.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=consumer["work"],
    ).stdout.strip()
    assert "site-packages" in where and not where.startswith(str(REPO)), where
    assert len(PROGRAM.splitlines()) <= 12


def test_preview_plans_the_two_apps(consumer: dict[str, Any]) -> None:
    changes = consumer["preview"].change_summary
    assert changes.get("create", 0) >= 20, (
        changes
    )  # 2 apps x (password, role, db, grant, Secret, check), …


def test_up_creates_verified_apps(consumer: dict[str, Any]) -> None:
    apps = consumer["up"].outputs["apps"].value
    assert set(apps) == set(APPS)
    for name in APPS:
        gate = apps[name]["verification"]
        assert gate["mode"] == "pod"
        assert {"login", "crud", "isolation", "latency"} <= set(gate["checksPassed"])
        data = secret_data(NAMESPACE, f"{name}-db-credentials")
        assert data["dbname"] == name.replace("-", "_")
    roles = query(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [a.replace("-", "_") for a in APPS]
    )
    assert len(roles) == len(APPS)
