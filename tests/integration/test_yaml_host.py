"""The package through Pulumi's component provider host, from a Pulumi YAML program, without a
cluster: the real CLI, YAML and Python language hosts and plugins (localenv/toolchain.sh), the
test PostgreSQL, and a kubeconfig whose API server does not answer.

- `pulumi package get-schema provider` serves the schema `postgres_apps.hosted` infers;
- `pulumi package add <clone>/provider` records the plugin in a YAML project;
- `pulumi up` with bad input fails with the validator's message and creates nothing;
- `pulumi preview` plans the whole tree, down to the gate's dynamic resource, with the unmanaged
  report's query run against the test PostgreSQL. The `up` that needs the cluster is
  tests/e2e/test_yaml_consumer.py.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from postgres_apps import hosted
from postgres_apps.apps import settings_from_args
from postgres_apps.config import ConfigError
from postgres_apps.inventory import NONE_MESSAGE

from .pg_server import PgServer

REPO = Path(__file__).resolve().parents[2]
PROVIDER = REPO / "provider"
UNREACHABLE_KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
    "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
    "current-context": "nowhere",
    "users": [{"name": "nobody", "user": {"token": "none"}}],
}


def toolchain_env(tmp: Path) -> dict[str, str]:
    """localenv/env.sh's environment (the built CLI, PULUMI_HOME with the plugins and the YAML
    host), with a private backend, passphrase and kubeconfig."""
    dump = subprocess.run(
        ["bash", "-c", f"source {REPO}/localenv/env.sh && env -0"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    env = dict(line.split("=", 1) for line in dump.split("\0") if "=" in line)
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    (tmp / "backend").mkdir(parents=True, exist_ok=True)
    (tmp / "kubeconfig").write_text(yaml.safe_dump(UNREACHABLE_KUBECONFIG))
    env.update(
        PULUMI_BACKEND_URL=f"file://{tmp / 'backend'}?metadata=skip",
        PULUMI_CONFIG_PASSPHRASE=secrets.token_urlsafe(16),
        PULUMI_PYTHON_CMD=str(REPO / ".venv/bin/python"),
        KUBECONFIG=str(tmp / "kubeconfig"),
    )
    pulumi = shutil.which("pulumi", path=env["PATH"])
    plugin = f"language-yaml-v{env['PULUMI_YAML_VERSION']}/pulumi-language-yaml"
    if pulumi is None or not (Path(env["PULUMI_HOME"]) / "plugins" / plugin).exists():
        pytest.fail(
            "the Pulumi CLI or the YAML language host is missing: run ./localenv/toolchain.sh",
            pytrace=False,
        )
    return env


def pulumi(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pulumi", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def yaml_project(tmp: Path, env: dict[str, str], properties: dict[str, Any], stack: str) -> Path:
    """A YAML program declaring `postgres-apps:PostgresApps`, the package added, a stack made."""
    work = tmp / f"yaml-{stack}"
    work.mkdir()
    program = {
        "name": "yaml-platform",
        "runtime": "yaml",
        "resources": {"platform": {"type": "postgres-apps:PostgresApps", "properties": properties}},
        "outputs": {"apps": "${platform.apps}", "managedApps": "${platform.managedApps}"},
    }
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(program, sort_keys=False))
    added = pulumi(env, work, "package", "add", str(PROVIDER))
    assert added.returncode == 0, added.stdout + added.stderr
    assert "Added package postgres-apps" in added.stderr, added.stderr
    made = pulumi(env, work, "stack", "init", stack)
    assert made.returncode == 0, made.stdout + made.stderr
    return work


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return toolchain_env(tmp_path_factory.mktemp("yaml-state"))


def test_get_schema_is_the_hosted_schema(env: dict[str, str], tmp_path: Path) -> None:
    got = pulumi(env, tmp_path, "package", "get-schema", str(PROVIDER))
    assert got.returncode == 0, got.stderr
    served = json.loads(got.stdout)
    expected = hosted.schema()
    assert served["name"] == "postgres-apps"
    assert served["version"] == hosted.package_version()
    # The CLI re-serializes the schema (key order, `plain` on items): compare names, not bytes.
    assert set(served["resources"]) == set(expected["resources"]) == {hosted.RESOURCE_TYPE}
    for part in ("inputProperties", "properties"):
        got = served["resources"][hosted.RESOURCE_TYPE][part]
        assert set(got) == set(expected["resources"][hosted.RESOURCE_TYPE][part]), part
    assert {t: set(d["properties"]) for t, d in served["types"].items()} == {
        t: set(d["properties"]) for t, d in expected["types"].items()
    }


def test_package_add_records_the_local_plugin(env: dict[str, str], tmp_path: Path) -> None:
    work = yaml_project(tmp_path, env, {"apps": [{"name": "yaml-one"}]}, "add")
    project = yaml.safe_load((work / "Pulumi.yaml").read_text())
    assert project["packages"] == {"postgres-apps": str(PROVIDER)}


def test_bad_input_fails_with_the_validator_message(env: dict[str, str], tmp_path: Path) -> None:
    bad = {"apps": [{"name": "Bad_Name"}, {"name": "ok-app", "deletion": "nope"}]}
    work = yaml_project(tmp_path, env, bad, "bad")
    up = pulumi(env, work, "up", "--yes", "--skip-preview", "--color", "never")
    assert up.returncode != 0
    assert f"{hosted.RESOURCE_TYPE} resource 'platform' has a problem" in up.stdout, up.stdout
    with pytest.raises(ConfigError) as expected:
        settings_from_args(bad)  # type: ignore[arg-type]  # the wire form, as YAML sends it
    for line in str(expected.value).splitlines():
        assert line.strip().rstrip(":") in up.stdout, (line, up.stdout[-3000:])
    state = json.loads(pulumi(env, work, "stack", "export").stdout)
    types = {r["type"] for r in state["deployment"].get("resources") or []}
    assert types <= {"pulumi:pulumi:Stack", "pulumi:providers:postgres-apps"}, types


def test_preview_plans_the_tree_down_to_the_gate(
    env: dict[str, str], tmp_path: Path, pg: PgServer
) -> None:
    props = {
        "apps": [{"name": "yaml-one", "deletion": "drop", "connectionLimit": 5}],
        "postgres": {"adminHost": pg.host, "adminPort": pg.port, "sslmode": "disable"},
    }
    work = yaml_project(tmp_path, env, props, "preview")
    for key, value, secret in (
        ("kubernetes:context", "nowhere", False),
        ("postgres-apps:adminPassword", pg.admin_password, True),
    ):
        flags = ["--secret"] if secret else []
        assert pulumi(env, work, "config", "set", *flags, key, value).returncode == 0
    preview = pulumi(env, work, "preview", "--json")
    assert preview.returncode == 0, preview.stdout[-3000:] + preview.stderr[-3000:]
    assert "using pulumi-language-python from $PATH" not in preview.stderr, preview.stderr
    plan = json.loads(preview.stdout)
    planned = {step["newState"]["type"] for step in plan["steps"] if step["op"] == "create"}
    assert {
        hosted.RESOURCE_TYPE,
        "postgres-apps:apps:PostgresApps",
        "kubernetes:core/v1:Namespace",
        "postgresql:index/role:Role",
        "postgresql:index/database:Database",
        "postgresql:index/grant:Grant",
        "kubernetes:core/v1:Secret",
        "pulumi-python:dynamic/verification:ConnectivityCheck",
    } <= planned, planned
    # The unmanaged report's query ran inside the provider, against the test PostgreSQL.
    messages = [d.get("message", "") for d in plan.get("diagnostics", [])]
    assert any(NONE_MESSAGE in m for m in messages), messages
    role = next(
        s["newState"]["inputs"]
        for s in plan["steps"]
        if s["newState"]["type"] == "postgresql:index/role:Role"
    )
    assert role["connectionLimit"] == 5, role  # a YAML integer arrives as an int


DEMO_MODULE = '''
import os
from typing import Any, TypedDict

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class Shout(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("shout-1", {"out": props["msg"].upper()})


class ShoutResource(Resource):
    out: pulumi.Output[str]

    def __init__(self, name: str, msg: str, opts: pulumi.ResourceOptions) -> None:
        super().__init__(Shout(), name, {"msg": msg, "out": None}, opts)


class DemoArgs(TypedDict, total=False):
    msg: str
    """What to shout."""


class Demo(pulumi.ComponentResource):
    """A component with a dynamic resource inside."""

    shout: pulumi.Output[str]

    def __init__(self, name: str, args: DemoArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(os.environ["DEMO_TYPE"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.shout = ShoutResource(f"{name}-shout", args["msg"], child).out
        self.register_outputs({"shout": self.shout})
'''

DEMO_MAIN = """
from pulumi.provider.experimental import component_provider_host

from yamldemo import Demo

if __name__ == "__main__":
    component_provider_host(components=[Demo], name="demo")
"""


@pytest.mark.parametrize("registered", ["demo:index:Demo", "demo:apps:Demo"])
def test_dynamic_resource_inside_a_component_provider(
    env: dict[str, str], tmp_path: Path, registered: str
) -> None:
    """What the gate needs from the engine, on a throw-away component (no cluster): a dynamic
    resource registered from inside a component provider is created. `registered` also shows what
    a type other than the host's `<package>:index:<Class>` does: the engine keeps the registered
    one in the URN. The dynamic provider process imports the provider class by module
    (PYTHONPATH here; `postgres_apps` is installed in the venv)."""
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    runtime = {"name": "python", "options": {"virtualenv": str(REPO / ".venv")}}
    (plugin / "PulumiPlugin.yaml").write_text(yaml.safe_dump({"runtime": runtime}))
    (plugin / "yamldemo.py").write_text(DEMO_MODULE)
    (plugin / "__main__.py").write_text(DEMO_MAIN)
    work = tmp_path / "proj"
    work.mkdir()
    program = {
        "name": "yaml-demo",
        "runtime": "yaml",
        "resources": {"d": {"type": "demo:Demo", "properties": {"msg": "hello"}}},
        "outputs": {"shout": "${d.shout}"},
    }
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(program))
    run_env = {**env, "DEMO_TYPE": registered, "PYTHONPATH": str(plugin)}
    assert pulumi(run_env, work, "package", "add", str(plugin)).returncode == 0
    stack = registered.replace(":", "-")  # one backend for the module: one stack per case
    assert pulumi(run_env, work, "stack", "init", stack).returncode == 0
    up = pulumi(run_env, work, "up", "--yes", "--skip-preview", "--color", "never")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    out = pulumi(run_env, work, "stack", "output", "shout")
    assert out.stdout.strip() == "HELLO"
    state = json.loads(pulumi(run_env, work, "stack", "export").stdout)
    urns = [r["urn"] for r in state["deployment"]["resources"]]
    assert any(u.endswith(f"::{registered}::d") for u in urns), urns
    assert any(u.endswith(f"::{registered}$pulumi-python:dynamic:Resource::d-shout") for u in urns)
