"""Helpers for the reliability and security suite (tests/e2e/test_reliability_*.py).

Built on tests/e2e/harness.py (temporary project copies, private local backend, Automation API).
What is added here:
- `World`: a before/after picture of everything a run could touch (the stack's state, the
  PostgreSQL roles and databases, the namespaces and Secrets of the API server), restricted to the
  suite's own names (`rel…`) plus the objects every stack shares (`postgres` role, template and
  `postgres` databases, namespace `data`), because other suites run on the same server and cluster.
- running the real `pulumi` CLI as a child process (to kill it, or to capture `--debug` output);
- fault injection through the project's own scripts: restart PostgreSQL (host server or in-cluster
  StatefulSet, whichever serves the admin endpoint), stop and restart the API server;
- probe pods, Secrets and passwords of the suite's apps.

Every name created by the suite starts with `rel` (roles/databases `rel_…`, namespaces `rel-…`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pulumi import automation as auto

from tests.e2e.harness import (
    ADMIN_HOST,
    ADMIN_PORT,
    REPO,
    ProjectStack,
    admin_connection,
    admin_password,
    base_config,
    kubectl,
    query,
)

PREFIX = "rel"
PROBE_COMPONENT_SELECTOR = "app.kubernetes.io/part-of=postgres-apps,app.kubernetes.io/component"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
"""The key Pulumi marks a secret value with in state and in the Automation API's JSON."""
SHARED_ROLES = ("postgres",)
SHARED_DATABASES = ("postgres", "template0", "template1")
SHARED_NAMESPACES = ("data",)


def admin_exec(sql: str, *params: object, dbname: str = "postgres") -> None:
    """Run a statement that returns no rows (DDL, GRANT, ALTER) as the admin."""
    with admin_connection(dbname) as conn:
        conn.execute(sql, params or None)


def role_of(app: str) -> str:
    return app.replace("-", "_")


def rel_config(
    apps: list[dict[str, Any]], namespace: str, *, mode: str = "direct", **verification: Any
) -> dict[str, Any]:
    """The harness's stack config for the local cluster, with the suite's apps namespace.

    The latency budget is wide (10 s): these tests are about correctness under faults on a shared
    2-core machine, not about latency (the gate's latency check has its own tests)."""
    cfg = base_config(apps, mode=mode, **{"latencyBudgetMs": 10_000, **verification})
    cfg["postgres-apps:appsNamespace"] = namespace
    return cfg


# --------------------------------------------------------------------------------------------
# State


def _normalize(value: Any) -> Any:
    """Secret values become a marker (their ciphertext may be re-encrypted on every checkpoint)."""
    if isinstance(value, Mapping):
        if SECRET_SIG in value:
            return "<secret>"
        return {k: _normalize(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def export_state(stack: ProjectStack) -> dict[str, Any]:
    """`pulumi stack export` (the Automation API's `export_stack`) as JSON."""
    deployment = stack.stack.export_stack()
    return dict(deployment.deployment or {})


def state_resources(stack: ProjectStack) -> dict[str, Any]:
    """URN → (type, id, inputs, outputs, protect, pending) of every resource in state."""
    deployment = export_state(stack)
    out: dict[str, Any] = {}
    for res in deployment.get("resources") or []:
        if res.get("external"):
            continue  # a read (`Secret.get`, StackReference): the engine's view, not a change
        out[res["urn"]] = _normalize(
            {
                "type": res.get("type"),
                "id": res.get("id"),
                "inputs": res.get("inputs"),
                "outputs": res.get("outputs"),
                "protect": res.get("protect", False),
            }
        )
    pending = deployment.get("pending_operations") or []
    out["<pending_operations>"] = _normalize(pending)
    return out


def pending_operations(stack: ProjectStack) -> list[dict[str, Any]]:
    return list(export_state(stack).get("pending_operations") or [])


# --------------------------------------------------------------------------------------------
# The world around the stack


def _like(prefix: str) -> str:
    return prefix.replace("_", "\\_") + "%"


def pg_roles(prefix: str = f"{PREFIX}_") -> dict[str, tuple[Any, ...]]:
    """Roles named `prefix…` and `postgres`: attributes and the stored password hash."""
    rows = query(
        "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
        "rolcanlogin, rolconnlimit, rolpassword, oid FROM pg_authid "
        "WHERE rolname LIKE %s OR rolname = ANY(%s) ORDER BY rolname",
        _like(prefix),
        list(SHARED_ROLES),
    )
    return {str(r[0]): tuple(r[1:]) for r in rows}


def pg_databases(prefix: str = f"{PREFIX}_") -> dict[str, tuple[Any, ...]]:
    """Databases named `prefix…` and the shared ones: owner, ACL and oid."""
    rows = query(
        "SELECT datname, pg_get_userbyid(datdba), datacl::text, oid, datconnlimit "
        "FROM pg_database WHERE datname LIKE %s OR datname = ANY(%s) ORDER BY datname",
        _like(prefix),
        list(SHARED_DATABASES),
    )
    return {str(r[0]): tuple(r[1:]) for r in rows}


def k8s_objects(namespace_prefix: str = f"{PREFIX}-") -> dict[str, Any]:
    """Namespaces named `namespace_prefix…` and `data`, and every Secret in them with its
    resourceVersion."""
    namespaces = json.loads(kubectl("get", "namespaces", "-o", "json").stdout)["items"]
    names = sorted(
        n["metadata"]["name"]
        for n in namespaces
        if n["metadata"]["name"].startswith(namespace_prefix)
        or n["metadata"]["name"] in SHARED_NAMESPACES
    )
    secrets: dict[str, str] = {}
    for ns in names:
        items = json.loads(kubectl("get", "secrets", "-n", ns, "-o", "json").stdout)["items"]
        for s in items:
            secrets[f"{ns}/{s['metadata']['name']}"] = s["metadata"]["resourceVersion"]
    return {"namespaces": names, "secrets": secrets}


@dataclass
class World:
    """Everything a run could have changed (see the module docstring for the scope)."""

    state: dict[str, Any]
    roles: dict[str, tuple[Any, ...]]
    databases: dict[str, tuple[Any, ...]]
    cluster: dict[str, Any]

    def differences(self, other: World, *, ignore_providers: bool = False) -> list[str]:
        """Human-readable list of what differs (empty when nothing changed). With
        `ignore_providers`, the recorded configuration of provider resources is left out."""
        diffs: list[str] = []
        for label, mine, theirs in (
            ("state", self.state, other.state),
            ("role", self.roles, other.roles),
            ("database", self.databases, other.databases),
        ):
            for key in sorted(set(mine) | set(theirs)):
                if ignore_providers and "::pulumi:providers:" in key:
                    continue
                if mine.get(key) != theirs.get(key):
                    diffs.append(f"{label} {key}: {mine.get(key)!r} -> {theirs.get(key)!r}")
        if self.cluster != other.cluster:
            diffs.append(f"cluster: {self.cluster!r} -> {other.cluster!r}")
        return diffs


def world(stack: ProjectStack, prefix: str = PREFIX) -> World:
    """The world of one module: `prefix` is its name prefix (`rel-bi` → roles and databases
    `rel_bi…`, namespaces `rel-bi…`), so that other modules running at the same time do not
    count as changes."""
    return World(
        state=state_resources(stack),
        roles=pg_roles(prefix.replace("-", "_")),
        databases=pg_databases(prefix.replace("-", "_")),
        cluster=k8s_objects(prefix.replace("_", "-")),
    )


# --------------------------------------------------------------------------------------------
# PostgreSQL as an app


def connect_as(
    user: str, password: str, dbname: str, *, timeout: int = 5
) -> psycopg.Connection[Any]:
    """A connection through the admin endpoint with an app's credentials (from this host)."""
    return psycopg.connect(
        host=ADMIN_HOST,
        port=ADMIN_PORT,
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=timeout,
        autocommit=True,
    )


def login_error(user: str, password: str, dbname: str) -> str | None:
    """None if the login works, else the server's message."""
    try:
        with connect_as(user, password, dbname) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc)
    return None


def wait_for_admin(timeout: float = 90.0) -> None:
    """Wait until the admin endpoint answers again (after a PostgreSQL restart)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            query("SELECT 1")
            return
        except Exception as exc:
            last = str(exc)
            time.sleep(0.5)
    raise AssertionError(f"PostgreSQL admin endpoint not back after {timeout:.0f} s: {last}")


# --------------------------------------------------------------------------------------------
# Faults, through the project's scripts


def _script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def host_postgres_running() -> bool:
    """Is the admin endpoint served by localenv/postgres-host.sh (else: the in-cluster one)?"""
    return _script("localenv/postgres-host.sh", "status").returncode == 0


def restart_postgres() -> str:
    """Restart the PostgreSQL behind the admin endpoint; return how it was done.

    Host server: `postgres-host.sh down` (pg_ctl fast stop) then `up`. In-cluster: the StatefulSet's
    pod is deleted and localenv/node/postgres.sh waits until it is ready again on 127.0.0.1:15432.
    """
    if host_postgres_running():
        down = _script("localenv/postgres-host.sh", "down")
        assert down.returncode == 0, down.stderr
        up = _script("localenv/postgres-host.sh", "up")
        assert up.returncode == 0, up.stderr
        how = "postgres-host.sh down/up"
    else:
        selector = "app.kubernetes.io/name=postgresql"
        before = kubectl("get", "pods", "-n", "data", "-l", selector, "-o", "name").stdout.split()
        assert before, "no in-cluster PostgreSQL pod found"
        kubectl("delete", "pod", "-n", "data", "-l", selector, "--wait=true", "--timeout=120s")
        up = _script("localenv/node/postgres.sh", "up")
        assert up.returncode == 0, up.stderr
        how = "in-cluster pod deleted, node/postgres.sh up"
    wait_for_admin()
    return how


APISERVER_PID = REPO / ".state/cluster/pids/kube-apiserver.pid"


def stop_apiserver() -> int:
    """Kill the kube-apiserver started by localenv/cluster.sh (SIGKILL: a crash, and no 60 s
    graceful shutdown); return its pid."""
    pid = int(APISERVER_PID.read_text().strip())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert "kube-apiserver" in cmdline, f"pid {pid} is not the kube-apiserver: {cmdline!r}"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{pid}/cmdline").exists():
        if not Path(f"/proc/{pid}/cmdline").read_bytes():  # a zombie until its parent reaps it
            break
        time.sleep(0.1)
    return pid


def start_apiserver() -> None:
    """`localenv/cluster.sh up` (control plane only: the node keeps running) starts what is not
    running and waits for /readyz."""
    env = {**os.environ, "POSTGRES_APPS_NODE": "0"}
    up = subprocess.run(
        [str(REPO / "localenv/cluster.sh"), "up"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env=env,
    )
    assert up.returncode == 0, up.stderr[-3000:]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if kubectl("get", "--raw", "/readyz", check=False).stdout.strip() == "ok":
            return
        time.sleep(0.5)
    raise AssertionError("the API server did not become ready again")


@contextlib.contextmanager
def apiserver_down() -> Iterator[None]:
    """The API server is stopped inside the block and always started again after it."""
    stop_apiserver()
    try:
        yield
    finally:
        start_apiserver()


# --------------------------------------------------------------------------------------------
# Pods and Secrets


def probe_pods(namespace: str) -> list[str]:
    out = kubectl(
        "get", "pods", "-n", namespace, "-l", PROBE_COMPONENT_SELECTOR, "-o", "name", check=False
    )
    return out.stdout.split()


def secret_raw(namespace: str, name: str) -> dict[str, str]:
    """A Secret's `data` exactly as stored (base64 values)."""
    out = kubectl("get", "secret", "-n", namespace, name, "-o", "json")
    data: dict[str, str] = json.loads(out.stdout).get("data") or {}
    return data


def secret_version(namespace: str, name: str) -> str | None:
    out = kubectl(
        "get",
        "secret",
        "-n",
        namespace,
        name,
        "-o",
        "jsonpath={.metadata.resourceVersion}",
        check=False,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def admin_secret_value() -> str:
    return admin_password()


def purge_leftovers(role_prefix: str, *namespaces: str) -> None:
    """Remove what an aborted earlier run of a module may have left: its databases and roles
    (names starting with `role_prefix`, always a `rel_…` prefix) and its namespaces."""
    assert role_prefix.startswith(f"{PREFIX}_"), role_prefix
    pattern = _like(role_prefix)
    for (db,) in query("SELECT datname FROM pg_database WHERE datname LIKE %s", pattern):
        admin_exec(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    for (role,) in query("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", pattern):
        admin_exec(f'DROP ROLE IF EXISTS "{role}"')
    for ns in namespaces:
        kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=true", "--timeout=120s")


def delete_namespaces(*names: str) -> None:
    for ns in names:
        kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)


# --------------------------------------------------------------------------------------------
# Running the CLI directly


@dataclass
class CliRun:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def cli_env(stack: ProjectStack) -> dict[str, str]:
    env = dict(os.environ)
    env.update(stack.stack.workspace.env_vars)
    return env


def cli(stack: ProjectStack, *args: str, timeout: float = 600) -> CliRun:
    """`pulumi <args> --stack <name> --non-interactive` in the stack's project copy."""
    cmd = ["pulumi", *args, "--stack", stack.name, "--non-interactive", "--color", "never"]
    proc = subprocess.run(
        cmd,
        cwd=stack.work_dir,
        env=cli_env(stack),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    return CliRun(cmd, proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Background:
    """A `pulumi` command running in its own process group (to be killed as a whole)."""

    proc: subprocess.Popen[str]
    log: Path
    started: float = field(default_factory=time.monotonic)

    def kill(self) -> None:
        """SIGKILL the CLI and everything it started (language host, providers, program)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait(self, timeout: float = 600) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def cli_background(stack: ProjectStack, log: Path, *args: str) -> Background:
    cmd = ["pulumi", *args, "--stack", stack.name, "--non-interactive", "--color", "never"]
    handle = log.open("w")
    proc = subprocess.Popen(
        cmd,
        cwd=stack.work_dir,
        env=cli_env(stack),
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    handle.close()
    return Background(proc=proc, log=log)


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = ""
) -> bool:
    """Poll `predicate` until true (True) or the timeout (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(interval)
    return False


def role_exists(role: str) -> bool:
    return bool(query("SELECT 1 FROM pg_roles WHERE rolname = %s", role))


def database_exists(db: str) -> bool:
    return bool(query("SELECT 1 FROM pg_database WHERE datname = %s", db))


class UpInThread:
    """`stack.up()` in a thread, recording engine events, for faults injected mid-`up`."""

    def __init__(self, stack: ProjectStack) -> None:
        self.stack = stack
        self.started_urns: list[str] = []
        self.error: BaseException | None = None
        self.result: auto.UpResult | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_event(self, event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.op.value != "same":
            self.started_urns.append(pre.metadata.urn)

    def _run(self) -> None:
        try:
            self.result = self.stack.stack.up(
                on_output=print, on_event=self._on_event, color="never"
            )
        except BaseException as exc:
            self.error = exc

    def start(self) -> UpInThread:
        self._thread.start()
        return self

    def join(self, timeout: float = 600) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "pulumi up did not finish"

    def saw(self, fragment: str) -> bool:
        return any(fragment in urn for urn in list(self.started_urns))
