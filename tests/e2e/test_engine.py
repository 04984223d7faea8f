"""The program on the real engine: up, idempotence, add, remove, destroy, bad admin access.

One stack for the whole module (an `up` costs tens of seconds); tests run in file order and each
states the situation it starts from. Assertions look at the real PostgreSQL and the real API server,
not at the program's own outputs only.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
import yaml
from pulumi import automation as auto

from postgres_apps.retention import OUTPUT_NAME, retire_message
from tests.e2e.harness import (
    ADMIN_HOST,
    ADMIN_PORT,
    KUBECONFIG,
    LOCAL_LATENCY_BUDGET_MS,
    REPO,
    ProjectStack,
    admin_password,
    assert_lines_in,
    base_config,
    drop_leftovers,
    kubectl,
    new_stack,
    preflight_refusal,
    query,
    remove_namespace,
    secret_data,
)

NAMESPACE = "e2e-apps"
APPS: list[dict[str, Any]] = [
    {"name": "e2e-alpha"},  # protected (the default)
    {"name": "e2e-beta", "profile": "n8n", "deletion": "drop"},
    {"name": "e2e-gamma", "profile": "paperless", "deletion": "drop"},
]
ALL_CHECKS_DIRECT = {"tcp", "login", "uri", "crud", "privileges", "isolation", "latency"}


def config(apps: list[dict[str, Any]]) -> dict[str, Any]:
    cfg = base_config(apps, mode="direct")
    cfg["postgres-apps:appsNamespace"] = NAMESPACE
    return cfg


def server_snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """This tier's roles and databases (the program names both after the apps: `e2e_*`).

    Only ours: other suites may share the server, and their objects are not this test's business.
    """
    roles = query("SELECT rolname FROM pg_roles WHERE rolname LIKE 'e2e\\_%' ORDER BY 1")
    dbs = query("SELECT datname FROM pg_database WHERE datname LIKE 'e2e\\_%' ORDER BY 1")
    return roles, dbs


@pytest.fixture(scope="module")
def before() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    drop_leftovers(
        [a["name"] for a in APPS] + ["e2e-delta", "e2e-epsilon", "e2e-omega", "e2e-adoptee"]
    )
    return server_snapshot()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, before: Any) -> Iterator[ProjectStack]:
    remove_namespace(NAMESPACE)
    stack = new_stack(tmp_path_factory.mktemp("engine"), "e2e")
    try:
        stack.write_config(config(APPS))
        stack.up()
        yield stack
        # Leave the server as it was: opt every app into drop, then destroy.
        stack.write_config(config([{**a, "deletion": "drop"} for a in APPS]))
        stack.up()
        stack.stack.destroy(on_output=print, color="never")
    finally:
        stack.stack.workspace.remove_stack(stack.name, force=True)
        drop_leftovers([a["name"] for a in APPS] + ["e2e-delta", "e2e-epsilon", "e2e-adoptee"])
        remove_namespace(NAMESPACE)
    assert server_snapshot() == before, "the module's stack left roles or databases behind"


def role_flags(role: str) -> dict[str, Any]:
    rows = query(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
        "rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname = %s",
        role,
    )
    assert rows, f"role {role} does not exist"
    keys = ("super", "createdb", "createrole", "replication", "bypassrls", "login", "connlimit")
    return dict(zip(keys, rows[0], strict=True))


def test_roles_are_least_privilege(deployed: ProjectStack) -> None:
    for app in APPS:
        flags = role_flags(app["name"].replace("-", "_"))
        assert flags == {
            "super": False,
            "createdb": False,
            "createrole": False,
            "replication": False,
            "bypassrls": False,
            "login": True,
            "connlimit": 20,
        }, app["name"]


def test_databases_are_owned_and_isolated(deployed: ProjectStack) -> None:
    names = [a["name"].replace("-", "_") for a in APPS]
    for db in names:
        owner = query("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", db)
        assert owner == [(db,)]
        assert query("SELECT has_database_privilege('public', %s, 'CONNECT')", db) == [(False,)]
        assert query("SELECT has_database_privilege('public', %s, 'TEMP')", db) == [(False,)]
        for other in names:
            can = query("SELECT has_database_privilege(%s, %s, 'CONNECT')", other, db)
            assert can == [(other == db,)], f"{other} → {db}"


def test_namespace_is_declared_restricted(deployed: ProjectStack) -> None:
    out = kubectl("get", "namespace", NAMESPACE, "-o", "jsonpath={.metadata.labels}")
    labels = out.stdout
    assert '"pod-security.kubernetes.io/enforce":"restricted"' in labels
    assert '"app.kubernetes.io/managed-by":"pulumi"' in labels


def test_each_secret_decodes_and_logs_in(deployed: ProjectStack) -> None:
    for app in APPS:
        data = secret_data(NAMESPACE, f"{app['name']}-db-credentials")
        role = app["name"].replace("-", "_")
        assert data["user"] == data["username"] == data["dbname"] == role
        assert data["host"] == "postgres-postgresql.data.svc.cluster.local"
        assert data["port"] == "5432"
        uri = urlsplit(data["uri"])
        assert (uri.hostname, uri.port, uri.path.lstrip("/")) == (data["host"], 5432, role)
        assert unquote(uri.password or "") == data["password"]
        assert data["DATABASE_URL"].split("?")[0] == data["uri"].split("?")[0]
        # The Secret's credentials log in for real (through the admin endpoint, from this host).
        with psycopg.connect(
            host=ADMIN_HOST,
            port=ADMIN_PORT,
            user=data["user"],
            password=data["password"],
            dbname=data["dbname"],
            connect_timeout=5,
        ) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
        if app.get("profile") == "n8n":
            assert data["DB_TYPE"] == "postgresdb"
            assert data["DB_POSTGRESDB_PASSWORD"] == data["password"]
        if app.get("profile") == "paperless":
            assert data["PAPERLESS_DBPASS"] == data["password"]


SECRET_TYPE = "kubernetes:core/v1:Secret"


def test_templated_keys_labels_and_annotations_reach_the_secret_in_place(
    deployed: ProjectStack,
) -> None:
    """`secret` in config (one app's keys and label, a stack-wide annotation) updates the Secrets
    in place — nothing created, deleted or replaced — the templated DSN logs in, and taking the
    config away gives the Secrets back as they were (no annotations left)."""
    dsn = "host=${host} port=${port} dbname=${dbname} user=${user} password=${password}"
    shaped = {
        **APPS[0],
        "secret": {
            "keys": {"APP_DSN": dsn, "APP_HOSTPORT": "${host_port}", "PRICE": "$$5"},
            "labels": {"team": "e2e"},
            "connectionKeys": ["APP_DSN"],  # the gate (direct) logs in with it too
        },
    }
    cfg = config([shaped, *APPS[1:]])
    cfg["postgres-apps:secret"] = {"annotations": {"example.com/reload": "true"}}
    name = f"{APPS[0]['name']}-db-credentials"

    def metadata(field: str) -> str:
        out = kubectl(
            "get", "secret", "-n", NAMESPACE, name, "-o", f"jsonpath={{.metadata.{field}}}"
        )
        return out.stdout

    ops: dict[str, str] = {}

    def on_event(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.op.value not in ("same", "read"):
            ops[pre.metadata.urn] = pre.metadata.op.value

    deployed.write_config(cfg)
    try:
        deployed.up(on_event=on_event)
        secrets = {u: op for u, op in ops.items() if f"${SECRET_TYPE}::" in u}
        assert sorted(secrets.values()) == ["update"] * len(APPS), secrets
        others = {u: op for u, op in ops.items() if u not in secrets}
        assert set(others.values()) <= {"update"}, others  # the checks (`rerun: always`)
        data = secret_data(NAMESPACE, name)
        assert data["APP_HOSTPORT"] == f"{data['host']}:{data['port']}"
        assert data["PRICE"] == "$5"
        parsed = psycopg.conninfo.conninfo_to_dict(data["APP_DSN"])
        assert (parsed["host"], parsed["dbname"], parsed["user"]) == (
            data["host"],
            data["dbname"],
            data["user"],
        )
        # the DSN as the app reads it logs in (host and port swapped for the admin endpoint)
        with psycopg.connect(
            data["APP_DSN"], host=ADMIN_HOST, port=ADMIN_PORT, connect_timeout=5
        ) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (data["user"],)
        # the gate logged in with the marked key too (direct mode: host/port swapped)
        state = deployed.stack.export_stack().deployment or {}
        (check,) = [
            r
            for r in state["resources"]
            if r["type"] == CHECK_TYPE and r["urn"].endswith(f"::{APPS[0]['name']}-check")
        ]
        (uri,) = [c for c in check["outputs"]["checks"] if c["name"] == "uri"]
        assert uri["status"] == "pass" and uri["message"].endswith("; so do APP_DSN"), uri
        assert '"team":"e2e"' in metadata("labels")
        assert '"app.kubernetes.io/part-of":"postgres-apps"' in metadata("labels")
        assert metadata("annotations") == '{"example.com/reload":"true"}'
        other = kubectl(
            "get",
            "secret",
            "-n",
            NAMESPACE,
            f"{APPS[1]['name']}-db-credentials",
            "-o",
            "jsonpath={.metadata.annotations}",
        )
        assert other.stdout == '{"example.com/reload":"true"}'  # stack-wide: every app
    finally:
        deployed.write_config(config(APPS))
    deployed.up()
    data = secret_data(NAMESPACE, name)
    assert not {"APP_DSN", "APP_HOSTPORT", "PRICE"} & set(data)
    assert metadata("annotations") == ""
    assert '"team"' not in metadata("labels")


ADOPTED = "e2e-adopt"


def namespace_labels(name: str) -> dict[str, str]:
    out = kubectl("get", "namespace", name, "-o", "jsonpath={.metadata.labels}")
    return cast("dict[str, str]", json.loads(out.stdout or "{}"))


def test_adopting_a_looser_namespace_is_refused_until_its_level_is_named(
    deployed: ProjectStack,
) -> None:
    """A namespace made by hand (no Pod Security labels: it enforces `privileged`) is not
    tightened to `restricted` behind the operator's back: `pulumi up` refuses before anything is
    created; naming its level in `podSecurityEnforce` adopts it at that level (audit and warn
    `restricted`), and the app's gate passes there."""
    adoptee = {"name": "e2e-adoptee", "namespace": ADOPTED, "deletion": "drop"}
    remove_namespace(ADOPTED)
    kubectl("create", "namespace", ADOPTED)
    kubectl("label", "namespace", ADOPTED, "team=e2e")
    try:
        deployed.write_config(config([*APPS, adoptee]))
        with pytest.raises(auto.CommandError) as refused:
            deployed.up()
        text = str(refused.value)
        assert (
            f'namespace "{ADOPTED}" exists and enforces Pod Security "privileged" '
            "(no enforce label)" in text
        ), text[-3000:]
        assert f'Set postgres-apps:podSecurityEnforce.{ADOPTED} to "restricted"' in text
        assert query("SELECT 1 FROM pg_roles WHERE rolname = 'e2e_adoptee'") == []
        assert namespace_labels(ADOPTED) == {"kubernetes.io/metadata.name": ADOPTED, "team": "e2e"}

        cfg = config([*APPS, adoptee])
        cfg["postgres-apps:podSecurityEnforce"] = {ADOPTED: "privileged"}
        deployed.write_config(cfg)
        deployed.up()
        labels = namespace_labels(ADOPTED)
        assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
        assert labels["pod-security.kubernetes.io/audit"] == "restricted"
        assert labels["pod-security.kubernetes.io/warn"] == "restricted"
        assert labels["app.kubernetes.io/part-of"] == "postgres-apps"
        assert labels["team"] == "e2e"  # adopted, not replaced
        result = deployed.outputs()["apps"]["e2e-adoptee"]["verification"]
        assert set(result["checksPassed"]) >= ALL_CHECKS_DIRECT, result
    finally:
        deployed.write_config(config(APPS))
        deployed.up()  # drops e2e-adoptee (`deletion: drop`, after its copy)
        deployed.up()  # … and forgets the copy's record, as the run after a drop does
        remove_namespace(ADOPTED)
    assert query("SELECT 1 FROM pg_roles WHERE rolname = 'e2e_adoptee'") == []


EXAMPLES = sorted((REPO / "docs" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_example_pod_is_admitted_by_a_restricted_namespace(
    deployed: ProjectStack, path: Path
) -> None:
    """The API server's Pod Security admission (a server-side dry run, nothing is created) takes
    each example's pod — a Deployment's pod template as the pod it would create — into the
    stack's namespace, which enforces `restricted`."""
    pods = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        if doc["kind"] == "Pod":
            pods.append(doc)
        elif "template" in doc.get("spec", {}):
            template = doc["spec"]["template"]
            name = f"{doc['metadata']['name']}-example"
            pods.append({"apiVersion": "v1", "kind": "Pod", **template, "metadata": {"name": name}})
    assert pods, f"{path.name} has no pod"
    for pod in pods:
        pod["metadata"] = {**pod.get("metadata", {}), "namespace": NAMESPACE}
        out = subprocess.run(
            ["kubectl", "--kubeconfig", str(KUBECONFIG), "create", "--dry-run=server", "-f", "-"],
            input=json.dumps(pod),
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "violate" not in out.stderr.lower(), out.stderr  # no Pod Security warning either


def test_verification_outputs(deployed: ProjectStack) -> None:
    apps = deployed.outputs()["apps"]
    for app in APPS:
        result = apps[app["name"]]["verification"]
        assert set(result["checksPassed"]) >= ALL_CHECKS_DIRECT, result
        assert result["mode"] == "direct"
        assert 0 < result["roundtripP95Ms"] <= LOCAL_LATENCY_BUDGET_MS
        assert result["serverVersion"].startswith(("15", "16", "17", "18"))


def test_no_secret_in_plain_outputs(deployed: ProjectStack) -> None:
    stack_outputs = deployed.stack.outputs()
    plain = repr({k: v.value for k, v in stack_outputs.items() if not v.secret})
    for app in APPS:
        password = secret_data(NAMESPACE, f"{app['name']}-db-credentials")["password"]
        assert password not in plain


def test_second_up_is_a_no_op(deployed: ProjectStack) -> None:
    result = deployed.up()
    # Reads (the admin Secret, the stack's own previous outputs) happen on every run by design.
    changes = result.summary.resource_changes or {}
    changed = {op: n for op, n in changes.items() if op not in ("same", "read")}
    assert changed == {}, changed


def changed_urns(stack: ProjectStack) -> dict[str, str]:
    """URN → operation for every resource the preview would touch."""
    ops: dict[str, str] = {}

    def on_event(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.op.value != "same":
            ops[pre.metadata.urn] = pre.metadata.op.value

    stack.stack.preview(on_event=on_event, color="never")
    return ops


CHECK_TYPE = "pulumi-python:dynamic/verification:ConnectivityCheck"
# The barrier every check waits on; its input is the set of app names, so adding an app updates it
# (a no-op for the database and the cluster: docs/verification.md "One barrier").
BARRIER_URN = (
    "urn:pulumi:e2e::postgres-apps::postgres-apps:apps:PostgresApps"
    "$pulumi-python:dynamic/verification:AppsReady::apps-ready"
)


def test_preview_of_one_added_app_lists_only_its_resources(deployed: ProjectStack) -> None:
    deployed.write_config(config([*APPS, {"name": "e2e-delta"}]))
    try:
        ops = changed_urns(deployed)
    finally:
        deployed.write_config(config(APPS))
    reads = {urn for urn, op in ops.items() if op == "read"}  # admin Secret, previous outputs
    creates = {urn for urn, op in ops.items() if op == "create"}
    others = {urn: op for urn, op in ops.items() if urn not in reads | creates}
    assert creates, "adding an app must show resources to create"
    for urn in creates:
        assert "e2e-delta" in urn, urn
    kinds = {urn.split("::")[2].split("$")[-1] for urn in creates}
    for kind in (
        "postgresql:index/role:Role",
        "postgresql:index/database:Database",
        "postgresql:index/grant:Grant",
        "kubernetes:core/v1:Secret",
        CHECK_TYPE,
    ):
        assert kind in kinds, kinds
    # Nothing of the other apps changes, not even their checks (`rerun: on-change`): the new app's
    # check proves isolation both ways against every existing app, so the provider's diff ignores
    # the peers list (docs/verification.md). The barrier records the new set of names.
    # (The engine may list the dynamic provider's default provider as updated: bookkeeping.)
    others.pop("urn:pulumi:e2e::postgres-apps::pulumi:providers:pulumi-python::default", None)
    assert others == {BARRIER_URN: "update"}


def test_with_rerun_always_the_preview_still_lists_only_the_added_app(
    deployed: ProjectStack,
) -> None:
    """`rerun: always` re-runs every check on `up`, but a preview shows no existing check: the
    resource sends `dry_run` and the provider's diff leaves the re-run out of a preview."""

    def always(apps: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = config(apps)
        cfg["postgres-apps:verification"]["rerun"] = "always"
        return cfg

    deployed.write_config(always(APPS))
    try:
        # Switching `rerun` to `always` is a change of every check's input: the first `up`
        # records it (and re-runs the checks). From then on the state holds `always`.
        deployed.up()
        ops = changed_urns(deployed)  # same apps: the preview shows nothing to change
        ops.pop("urn:pulumi:e2e::postgres-apps::pulumi:providers:pulumi-python::default", None)
        assert {u: op for u, op in ops.items() if op != "read"} == {}
        deployed.write_config(always([*APPS, {"name": "e2e-delta"}]))
        ops = changed_urns(deployed)
        ops.pop("urn:pulumi:e2e::postgres-apps::pulumi:providers:pulumi-python::default", None)
        assert ops.pop(BARRIER_URN, None) == "update", ops
        touched = {u for u, op in ops.items() if op != "read"}
        assert touched, "adding an app must show resources to create"
        for urn in touched:
            assert "e2e-delta" in urn, urn
            assert ops[urn] == "create", (urn, ops[urn])
        # … and an `up` of the unchanged apps re-runs every check
        deployed.write_config(always(APPS))
        updated: list[str] = []

        def on_event(event: auto.EngineEvent) -> None:
            pre = event.resource_pre_event
            is_check = pre is not None and pre.metadata.type == CHECK_TYPE
            if is_check and pre is not None and pre.metadata.op.value == "update":
                updated.append(pre.metadata.urn)

        deployed.up(on_event=on_event)
        assert len(updated) == len(APPS), updated
    finally:
        deployed.write_config(config(APPS))
        deployed.up()  # back to `rerun: on-change` in the state, for the tests after this one


def test_removing_a_protected_app_is_refused(deployed: ProjectStack) -> None:
    managed = deployed.outputs()[OUTPUT_NAME]
    deployed.write_config(config(APPS[1:]))  # e2e-alpha gone, its policy is `protect`
    try:
        with pytest.raises(auto.CommandError) as err:
            deployed.up()
    finally:
        deployed.write_config(config(APPS))
    # the program's own message for exactly this removal (the record it read back)
    assert_lines_in(
        retire_message([("e2e-alpha", managed["e2e-alpha"])]).splitlines(), str(err.value)
    )
    # nothing was dropped
    assert query("SELECT 1 FROM pg_database WHERE datname = 'e2e_alpha'") == [(1,)]
    assert query("SELECT 1 FROM pg_roles WHERE rolname = 'e2e_alpha'") == [(1,)]
    assert kubectl("get", "secret", "-n", NAMESPACE, "e2e-alpha-db-credentials").returncode == 0


def test_removing_an_opted_in_app_drops_only_it(deployed: ProjectStack) -> None:
    others_sql = "SELECT datname FROM pg_database WHERE datname IN ('e2e_alpha','e2e_beta')"
    others_before = query(others_sql)
    deployed.write_config(config(APPS[:2]))  # e2e-gamma opted into `drop`
    try:
        deployed.up()
        assert query("SELECT 1 FROM pg_database WHERE datname = 'e2e_gamma'") == []
        assert query("SELECT 1 FROM pg_roles WHERE rolname = 'e2e_gamma'") == []
        gone = kubectl("get", "secret", "-n", NAMESPACE, "e2e-gamma-db-credentials", check=False)
        assert gone.returncode != 0
        assert query(others_sql) == others_before
    finally:
        deployed.write_config(config(APPS))
        deployed.up()  # gamma comes back for the tests below


def test_wrong_admin_password_fails_clearly_and_changes_nothing(deployed: ProjectStack) -> None:
    snapshot = server_snapshot()
    cfg = config([*APPS, {"name": "e2e-epsilon"}])
    deployed.write_config(cfg)
    deployed.stack.set_config(
        "postgres-apps:adminPassword", auto.ConfigValue(value="not-the-password", secret=True)
    )
    try:
        with pytest.raises(auto.CommandError) as err:
            deployed.up()
    finally:
        deployed.stack.remove_config("postgres-apps:adminPassword")
        deployed.write_config(config(APPS))
    expected = preflight_refusal(cfg, "not-the-password", password_in_config=True)
    assert 'FATAL: password authentication failed for user "postgres"' in expected[0], expected
    assert_lines_in(expected, str(err.value))
    assert server_snapshot() == snapshot


def test_unreachable_postgres_fails_clearly(deployed: ProjectStack) -> None:
    snapshot = server_snapshot()
    cfg = config([*APPS, {"name": "e2e-epsilon"}])
    cfg["postgres-apps:postgres"] = {**cfg["postgres-apps:postgres"], "adminPort": 1}
    deployed.write_config(cfg)
    try:
        with pytest.raises(auto.CommandError) as err:
            deployed.up()
    finally:
        deployed.write_config(config(APPS))
    expected = preflight_refusal(cfg, admin_password(), password_in_config=False)
    assert "port 1 failed: Connection refused" in expected[0], expected
    assert_lines_in(expected, str(err.value))
    assert server_snapshot() == snapshot


def test_destroy_leaves_the_server_as_before(
    tmp_path_factory: pytest.TempPathFactory, before: Any
) -> None:
    """A separate stack of opted-in apps: after destroy, roles and databases are as before."""
    own_before = server_snapshot()
    stack = new_stack(tmp_path_factory.mktemp("destroy"), "e2e-destroy")
    apps = [{"name": "e2e-omega", "deletion": "drop"}]
    cfg = copy.deepcopy(config(apps))
    cfg["postgres-apps:appsNamespace"] = "e2e-destroy"
    stack.write_config(cfg)
    stack.up()
    assert query("SELECT 1 FROM pg_database WHERE datname = 'e2e_omega'") == [(1,)]
    stack.stack.destroy(on_output=print, color="never")
    stack.stack.workspace.remove_stack(stack.name)
    assert server_snapshot() == own_before
    # the namespace is retained on destroy (it may hold apps): the Secret inside is gone
    gone = kubectl("get", "secret", "-n", "e2e-destroy", "e2e-omega-db-credentials", check=False)
    assert gone.returncode != 0
    remove_namespace("e2e-destroy")
