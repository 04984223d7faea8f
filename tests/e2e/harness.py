"""Drives the real Pulumi engine against the local cluster for the end-to-end tier.

Each stack runs on a temporary copy of the project (so the repo's Pulumi.<stack>.yaml files and the
operator's stacks are never touched), on the local file backend, with the toolchain from
localenv/env.sh. Nothing here is mocked, but not every plugin is upstream's: the Pulumi CLI 3.274.1
(engine) and pulumi-kubernetes 4.25.0 are built from Pulumi's own Go modules; the postgresql 3.16.2
and random 4.19.1 plugins and the Python language host are the project's own stand-ins under
localenv/toolchain/ (README "What is built here, and what is a stand-in"). The API server,
PostgreSQL and (in pod mode) the node are real.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml
from pulumi import automation as auto

REPO = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("__main__.py", "components")
ADMIN_HOST = "127.0.0.1"
ADMIN_PORT = int(os.environ.get("POSTGRES_APPS_ADMIN_PORT", "15432"))
KUBECONFIG = Path(os.environ.get("KUBECONFIG", str(REPO / ".state/kube/admin.kubeconfig")))
KUBE_CONTEXT = "postgres-apps-local"
LOCAL_LATENCY_BUDGET_MS = 250


class EnvironmentNotReadyError(RuntimeError):
    """The real tier cannot run: said loudly, never skipped."""


def engine_env(state_dir: Path) -> dict[str, str]:
    """Environment for the CLI: the project's toolchain, a private backend and passphrase."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("PULUMI_", "PATH", "HOME"))}
    backend = state_dir / "backend"
    backend.mkdir(parents=True, exist_ok=True)
    env.update(
        # no `.attrs` sidecars: a SIGKILLed CLI cannot leave an empty one (localenv/env.sh)
        PULUMI_BACKEND_URL=f"file://{backend}?metadata=skip",
        PULUMI_CONFIG_PASSPHRASE=secrets.token_urlsafe(24),
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
        PULUMI_SKIP_UPDATE_CHECK="true",
        KUBECONFIG=str(KUBECONFIG),
    )
    return env


def check_environment() -> None:
    """Fail with what is missing, instead of letting every test fail on its own."""
    problems: list[str] = []
    if shutil.which("pulumi") is None:
        problems.append(
            "`pulumi` is not on PATH: run ./localenv/toolchain.sh and source localenv/env.sh"
        )
    if not KUBECONFIG.exists():
        problems.append(f"no kubeconfig at {KUBECONFIG}: run ./localenv/cluster.sh up")
    else:
        ready = subprocess.run(
            ["kubectl", "--kubeconfig", str(KUBECONFIG), "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            check=False,
        )
        if ready.returncode != 0:
            problems.append(f"the local API server is not ready: {ready.stderr.strip()}")
    if not problems:
        try:
            with admin_connection():
                pass
        except Exception as exc:
            problems.append(f"PostgreSQL admin endpoint {ADMIN_HOST}:{ADMIN_PORT}: {exc}")
    if problems:
        raise EnvironmentNotReadyError("; ".join(problems))


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), *args],
        capture_output=True,
        text=True,
        check=check,
    )


def remove_namespace(name: str) -> None:
    """Delete a test namespace and wait until it is gone.

    The program retains app namespaces on destroy (they may hold apps), so tests clean up their own.
    """
    kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", "--timeout=180s")


def drop_leftovers(app_names: list[str]) -> None:
    """Drop databases and roles of these apps left by an interrupted earlier run (never others)."""
    with admin_connection() as conn:
        for name in app_names:
            ident = name.replace("-", "_")
            conn.execute(f'DROP DATABASE IF EXISTS "{ident}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{ident}"')


SUITE_PREFIXES = ("rel_", "e2e_")
"""Every role and database the e2e tier creates starts with one of these, every namespace with
`rel-`/`e2e-` (the modules' app names `rel-…`/`e2e-…`); nothing else on the local cluster does."""


def purge_suite_leftovers() -> list[str]:
    """Drop the databases, roles and namespaces an aborted earlier session left on the local
    server and cluster, before any module runs: the gate checks that no database but an app's
    own is reachable, so one leftover database (created with PostgreSQL's default ACL) would fail
    every module's gate, and a leftover app Secret blocks the next create of that app."""
    dropped: list[str] = []
    with admin_connection() as conn:
        for prefix in SUITE_PREFIXES:
            like = prefix.replace("_", "\\_") + "%"
            for (db,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)
            ).fetchall():
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                dropped.append(f"database {db}")
            for (role,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (like,)
            ).fetchall():
                conn.execute(f'DROP OWNED BY "{role}"')  # also its grants on shared objects
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')
                dropped.append(f"role {role}")
    names = kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    for ns in names:
        if ns.startswith(tuple(p.replace("_", "-") for p in SUITE_PREFIXES)):
            remove_namespace(ns)  # with the app Secrets an aborted run left in it
            dropped.append(f"namespace {ns}")
    return dropped


def secret_data(namespace: str, name: str) -> dict[str, str]:
    """A Secret's values, decoded (what an app would see in its environment)."""
    out = kubectl("get", "secret", "-n", namespace, name, "-o", "json")
    raw: dict[str, str] = yaml.safe_load(out.stdout)["data"]
    return {k: base64.b64decode(v).decode() for k, v in raw.items()}


def admin_password() -> str:
    return secret_data("data", "postgres-postgresql")["postgres-password"]


@contextmanager
def admin_connection(dbname: str = "postgres") -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(
        host=ADMIN_HOST,
        port=ADMIN_PORT,
        user="postgres",
        password=admin_password(),
        dbname=dbname,
        connect_timeout=5,
        autocommit=True,
    )
    try:
        yield conn
    finally:
        conn.close()


def query(sql: str, *params: object, dbname: str = "postgres") -> list[tuple[Any, ...]]:
    with admin_connection(dbname) as conn:
        return conn.execute(sql, params or None).fetchall()


@dataclass
class ProjectStack:
    """A stack of a temporary copy of the project, driven through the Automation API."""

    stack: auto.Stack
    work_dir: Path
    name: str

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Replace the stack config (keys as in Pulumi.<stack>.yaml), keep its salt."""
        path = self.work_dir / f"Pulumi.{self.name}.yaml"
        current = yaml.safe_load(path.read_text()) if path.exists() else {}
        current = current or {}
        current["config"] = dict(config)
        path.write_text(yaml.safe_dump(current, sort_keys=False))

    def up(self, on_event: auto.OnEvent | None = None) -> auto.UpResult:
        return self.stack.up(on_output=_log, on_event=on_event, color="never")

    def preview(self) -> auto.PreviewResult:
        return self.stack.preview(on_output=_log, color="never", diff=True)

    def outputs(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.stack.outputs().items()}


def _log(line: str) -> None:
    print(line, end="" if line.endswith("\n") else "\n")


def new_stack(tmp: Path, name: str, env: Mapping[str, str] | None = None) -> ProjectStack:
    """A fresh copy of the program in `tmp`, with a stack `name` on a private local backend
    (`env`: variables to set or override for the CLI)."""
    work = tmp / "project"
    work.mkdir(parents=True, exist_ok=True)
    for item in PROJECT_FILES:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, work / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / item)
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    project["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    env_vars = {**engine_env(tmp / "state"), **(env or {})}
    opts = auto.LocalWorkspaceOptions(work_dir=str(work), env_vars=env_vars)
    stack = auto.create_or_select_stack(name, work_dir=str(work), opts=opts)
    return ProjectStack(stack=stack, work_dir=work, name=name)


def base_config(
    apps: list[dict[str, Any]], *, mode: str = "direct", **verification: Any
) -> dict[str, Any]:
    """Stack config for the local cluster, as an operator would write it."""
    return {
        "kubernetes:context": KUBE_CONTEXT,
        "postgres-apps:postgres": {
            "host": "postgres-postgresql.data.svc.cluster.local",
            "port": 5432,
            "sslmode": "disable",
            "adminHost": ADMIN_HOST,
            "adminPort": ADMIN_PORT,
            "adminSslmode": "disable",
        },
        "postgres-apps:apps": apps,
        "postgres-apps:verification": {
            "mode": mode,
            "image": "docker.io/postgres-apps/psql-client:15-bookworm",
            "imagePullPolicy": "Never",
            "rerun": "on-change",
            # Same budget as Pulumi.local.yaml: the local node shares 2 cores with everything else.
            "latencyBudgetMs": LOCAL_LATENCY_BUDGET_MS,
            **verification,
        },
    }


def preflight_refusal(
    cfg: Mapping[str, Any], password: str, *, password_in_config: bool
) -> list[str]:
    """The admin pre-flight's refusal for this stack config and admin password, line by line.

    Made by the program's own code (`postgres_apps.admin.admin_endpoint`,
    `postgres_apps.preflight.run_preflight`) against the same endpoint from this machine, so an e2e
    assertion compares the engine's output with the one source of the message, not a fragment."""
    from unittest import mock  # noqa: PLC0415

    from postgres_apps import admin  # noqa: PLC0415
    from postgres_apps.config import parse_settings  # noqa: PLC0415
    from postgres_apps.preflight import (  # noqa: PLC0415
        AdminPreflightError,
        connection_budget,
        run_preflight,
    )

    raw = {
        k.removeprefix("postgres-apps:"): v
        for k, v in cfg.items()
        if k.startswith("postgres-apps:")
    }
    stack = parse_settings(raw, kube_context=cfg.get("kubernetes:context"))
    with mock.patch.object(admin, "_password_in_config", return_value=password_in_config):
        endpoint = admin.admin_endpoint(stack.postgres)
    try:
        run_preflight(endpoint, password, connection_budget(stack))
    except AdminPreflightError as exc:
        return [line.strip() for line in str(exc).splitlines() if line.strip()]
    raise AssertionError(f"the admin pre-flight passed for {endpoint.address}")


def assert_lines_in(lines: list[str], text: str) -> None:
    """Every line of a multi-line product message appears whole in the engine's output (the
    engine indents the lines of a diagnostic, so lines are compared, not the whole block)."""
    missing = [line.strip() for line in lines if line.strip() not in text]
    assert not missing, (missing, text[-3000:])


def probe_pod_failure(reason: str, namespace: str, detail: str) -> re.Pattern[str]:
    """The gate's message when its probe pod could not run (`provider.run_check`), as a regex:
    any app and pod suffix, the reason's own hint (`pod.PodProbeError`) and the runbook link.
    `detail` is a regex for what follows `probe pod <namespace>/<pod>` (the API's or our text)."""
    from postgres_apps.verification.pod import PodProbeError  # noqa: PLC0415
    from postgres_apps.verification.runbook import RUNBOOK  # noqa: PLC0415

    hint = PodProbeError(reason, "").hint
    return re.compile(
        rf'app "(?P<app>[a-z0-9-]+)": the probe pod could not run \({re.escape(reason)}\): '
        # the app's own pod, or its namespace's batch pod (naming the app when the failure is
        # that app's alone)
        rf"probe pod {re.escape(namespace)}/"
        rf"(?:(?P=app)-dbcheck-[0-9a-f]{{6}}|dbcheck-[0-9a-f]{{6}})(?:, app (?P=app))?"
        rf"{detail} — "
        rf"{re.escape(hint)}, or see {re.escape(RUNBOOK)}#probe-pod"
    )


def login_refused(app: str, role: str) -> re.Pattern[str]:
    """The gate's message when PostgreSQL refuses the app's password (`Verdict.error_message`
    with `pg_errors.login_hint`): the app, the check, the server's words for this role, the hint."""
    from postgres_apps.verification.pg_errors import login_hint  # noqa: PLC0415

    refused = f'password authentication failed for user "{role}"'
    hint = login_hint(refused).format(secret=f"{app}-db-credentials")
    return re.compile(
        rf'app "{re.escape(app)}": check "login" failed: [^\n]*{re.escape(refused)}[^\n]* — '
        + re.escape(hint)
    )
