"""The whole program (`__main__.py`) under mocks, driven by stack config."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from postgres_apps.admin import AdminPasswordError
from postgres_apps.config import ConfigError
from postgres_apps.credentials import BASE_KEYS, PROFILE_KEYS
from postgres_apps.namespace import NamespaceAdoptionRefused
from postgres_apps.retention import (
    RemovalRefused,
    managed_apps,
    refused_removals,
    retire_message,
)
from postgres_apps.scram import role_verifier
from postgres_apps.settings import AppSpec
from tests.unit.conftest import (
    ADMIN_PASSWORD,
    AWKWARD_PASSWORD,
    CHECK_TYPE,
    COPY_TYPE,
    THREE_APPS,
    FakeNamespaces,
    ProgramMocks,
    RecordingMonitor,
    Registration,
    Run,
    contains_secret,
    is_secret,
    run_program,
    unwrap,
)

T_NAMESPACE = "kubernetes:core/v1:Namespace"
T_SECRET = "kubernetes:core/v1:Secret"
T_ROLE = "postgresql:index/role:Role"
T_DATABASE = "postgresql:index/database:Database"
T_GRANT = "postgresql:index/grant:Grant"
T_EXTENSION = "postgresql:index/extension:Extension"
T_PASSWORD = "random:index/randomPassword:RandomPassword"
T_PROVIDER = "pulumi:providers:postgresql"
T_STACKREF = "pulumi:pulumi:StackReference"
T_COMPONENT = "postgres-apps:app_database:AppDatabase"
T_NS_COMPONENT = "postgres-apps:namespace:AppsNamespace"
T_HARDENING = "postgres-apps:server_hardening:ServerHardening"
T_APPS = "postgres-apps:apps:PostgresApps"
PASSWORDS = {"app-test": "AppTest0Generated1Pw", "n8n": AWKWARD_PASSWORD, "paperless": "x:y@z/%"}
APPS = ("app-test", "n8n", "paperless")
DBS = {"app-test": "app_test", "n8n": "n8n", "paperless": "paperless"}


@pytest.fixture(scope="module")
def three() -> Run:
    return run_program(THREE_APPS, ProgramMocks(passwords=PASSWORDS))


def regs(run: Run, type_: str) -> dict[str, Registration]:
    return {r.name: r for r in run.monitor.of_type(type_)}


def test_resource_inventory(three: Run) -> None:
    counts: dict[str, int] = {}
    for r in three.monitor.registrations:
        counts[r.type] = counts.get(r.type, 0) + 1
    assert counts == {
        T_NS_COMPONENT: 2,  # apps, docs (paperless lives in its own namespace)
        T_NAMESPACE: 2,
        T_SECRET: 4,  # 3 app Secrets + the admin Secret read
        T_PROVIDER: 1,
        T_COMPONENT: 3,
        T_PASSWORD: 3,
        T_ROLE: 3,
        T_DATABASE: 3,
        T_GRANT: 5,  # one per app database + postgres and template1 (server hardening)
        T_EXTENSION: 3,
        CHECK_TYPE: 3,
        "pulumi-python:dynamic/verification:AppsReady": 1,  # the gate's one barrier
        T_STACKREF: 1,
        T_HARDENING: 1,
        T_APPS: 1,
    }


def test_server_hardening_revokes_public_on_postgres_and_template1(three: Run) -> None:
    component = three.monitor.one(T_HARDENING, "server-hardening")
    provider = three.monitor.one(T_PROVIDER, "postgres-admin")
    grants = {
        r.plain["database"]: r
        for r in three.monitor.of_type(T_GRANT)
        if r.name.startswith("server-hardening-")
    }
    assert set(grants) == {"postgres", "template1"}
    for database, grant in grants.items():
        assert grant.name == f"server-hardening-{database}"
        assert grant.plain["role"] == "public"
        assert grant.plain["objectType"] == "database"
        assert grant.plain["privileges"] == []
        assert grant.parent == component.urn
        assert grant.provider.startswith(provider.urn)  # through opts.providers of the component
    # every app's gate judges isolation on the hardened server
    for check in three.monitor.of_type(CHECK_TYPE):
        for grant in grants.values():
            assert grant.urn in three.monitor.upstream(check.urn)
    assert three.outputs["serverHardening"] == ["postgres", "template1"]


def test_server_hardening_opt_out() -> None:
    config = {**THREE_APPS, "postgres": {**THREE_APPS["postgres"], "hardenDatabases": []}}  # type: ignore[dict-item]
    run = run_program(config, ProgramMocks(passwords=PASSWORDS))
    assert not [r for r in run.monitor.of_type(T_GRANT) if r.name.startswith("server-hardening")]
    assert run.outputs["serverHardening"] == []


def test_namespaces(three: Run) -> None:
    namespaces = regs(three, T_NAMESPACE)
    assert set(namespaces) == {"namespace-apps", "namespace-docs"}
    for reg in namespaces.values():
        meta = reg.plain["metadata"]
        assert meta["name"] == reg.name.removeprefix("namespace-")
        labels = meta["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "pulumi"
        assert labels["app.kubernetes.io/part-of"] == "postgres-apps"
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
            assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest"
        assert reg.retain_on_delete is True  # deleting a namespace would delete the apps in it
        assert reg.parent.endswith(f"::{reg.name}")  # child of its AppsNamespace component


def test_admin_provider_and_password(three: Run) -> None:
    read = [r for r in three.monitor.of_type(T_SECRET) if r.read_id is not None]
    assert [r.read_id for r in read] == ["data/postgres-postgresql"]
    provider = three.monitor.one(T_PROVIDER, "postgres-admin")
    props = provider.plain
    assert props["host"] == "127.0.0.1"
    assert json.loads(str(props["port"])) == 15432
    assert props["username"] == "postgres"
    assert props["sslmode"] == "disable"
    assert json.loads(str(props["superuser"])) is True
    assert 0 < json.loads(str(props["connectTimeout"])) <= 30
    assert props["password"] == ADMIN_PASSWORD
    assert is_secret(provider.inputs["password"])


def test_admin_password_from_config_secret_skips_the_secret_read() -> None:
    config = {**THREE_APPS, "adminPassword": "from-config"}
    run = run_program(config, ProgramMocks(), secret_keys=["postgres-apps:adminPassword"])
    assert not [r for r in run.monitor.of_type(T_SECRET) if r.read_id is not None]
    provider = run.monitor.one(T_PROVIDER, "postgres-admin")
    assert is_secret(provider.inputs["password"])
    assert unwrap(provider.inputs["password"]) == "from-config"


def test_admin_secret_without_the_key_fails_clearly() -> None:
    other = {"password": base64.b64encode(b"x").decode()}
    with pytest.raises(AdminPasswordError, match="has no key 'postgres-password'"):
        run_program(THREE_APPS, ProgramMocks(admin_secret_data=other))


@pytest.mark.parametrize("app", APPS)
def test_role(three: Run, app: str) -> None:
    role = three.monitor.one(T_ROLE, f"{app}-role")
    props = role.plain
    assert props["name"] == DBS[app]
    assert props["login"] is True
    for flag in (
        "superuser",
        "createDatabase",
        "createRole",
        "replication",
        "bypassRowLevelSecurity",
    ):
        assert props[flag] is False
    assert props["connectionLimit"] == (10 if app == "n8n" else 20)
    assert is_secret(role.inputs["password"])
    assert props["password"] == role_verifier(DBS[app], PASSWORDS[app])  # never the plaintext


@pytest.mark.parametrize("app", APPS)
def test_database_and_grant_edges(three: Run, app: str) -> None:
    role = three.monitor.one(T_ROLE, f"{app}-role")
    db = three.monitor.one(T_DATABASE, f"{app}-database")
    grant = three.monitor.one(T_GRANT, f"{app}-revoke-public")
    assert db.plain["owner"] == role.plain["name"] == DBS[app]
    assert grant.plain == {
        "database": DBS[app],
        "role": "public",
        "objectType": "database",
        "privileges": [],
    }
    # grants → database → role
    assert db.urn in grant.dependencies
    assert role.urn in db.dependencies
    provider = three.monitor.one(T_PROVIDER, "postgres-admin")
    for r in (role, db, grant):
        assert r.provider.startswith(provider.urn + "::")


@pytest.mark.parametrize(
    ("app", "protect", "retain"),
    [("app-test", True, False), ("n8n", True, False), ("paperless", False, False)],
)
def test_protection(three: Run, app: str, protect: bool, retain: bool) -> None:
    for type_, suffix in ((T_ROLE, "role"), (T_DATABASE, "database")):
        r = three.monitor.one(type_, f"{app}-{suffix}")
        assert r.protect is protect
        assert bool(r.retain_on_delete) is retain
        assert r.delete_before_replace is False  # replacement refused (no allowReplace)


@pytest.mark.parametrize("app", APPS)
def test_app_secret(three: Run, app: str) -> None:
    secret = three.monitor.one(T_SECRET, f"{app}-secret")
    meta = secret.plain["metadata"]
    assert meta["name"] == f"{app}-db-credentials"
    assert meta["namespace"] == ("docs" if app == "paperless" else "apps")
    assert meta["labels"] == {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/part-of": "postgres-apps",
    }
    assert secret.plain["type"] == "Opaque"
    assert is_secret(secret.inputs["stringData"])
    data = unwrap(secret.inputs["stringData"])
    profile = {"n8n": "n8n", "paperless": "paperless"}.get(app)
    assert set(data) == set(BASE_KEYS) | set(PROFILE_KEYS.get(profile or "", ()))
    password = PASSWORDS[app]
    assert data["password"] == password
    for key in ("uri", "DATABASE_URL"):
        parts = urlsplit(data[key])
        assert (parts.scheme, parts.hostname, parts.port) == (
            "postgresql",
            "postgres-postgresql.data.svc.cluster.local",
            5432,
        )
        assert unquote(parts.username or "") == DBS[app]
        assert unquote(parts.password or "") == password
        assert parts.path == f"/{DBS[app]}"
        assert parse_qs(parts.query) == {"sslmode": ["require"]}
    jdbc = urlsplit(data["jdbc-uri"].removeprefix("jdbc:"))
    assert (jdbc.scheme, jdbc.hostname, jdbc.port, jdbc.path) == (
        "postgresql",
        "postgres-postgresql.data.svc.cluster.local",
        5432,
        f"/{DBS[app]}",
    )
    assert parse_qs(jdbc.query) == {
        "user": [DBS[app]],
        "password": [password],
        "sslmode": ["require"],
    }
    if app == "n8n":
        # the awkward password is percent-encoded, never raw, in the URIs
        assert "p%40ss%3Aw%2Frd%25%3F%23" in data["uri"]
        assert AWKWARD_PASSWORD not in data["uri"]
        assert data["DB_POSTGRESDB_PASSWORD"] == AWKWARD_PASSWORD
        assert data["pgpass"] == (
            "postgres-postgresql.data.svc.cluster.local:5432:n8n:n8n:p@ss\\:w/rd%?#&=+ \\\\x\n"
        )


@pytest.mark.parametrize("app", APPS)
def test_check_wiring(three: Run, app: str) -> None:
    check = three.monitor.one(CHECK_TYPE, f"{app}-check")
    waits_for = three.monitor.upstream(check.urn)
    for type_, suffix in (
        (T_SECRET, "secret"),
        (T_ROLE, "role"),
        (T_DATABASE, "database"),
        (T_GRANT, "revoke-public"),
    ):
        assert three.monitor.one(type_, f"{app}-{suffix}").urn in waits_for, suffix
    for ext in regs(three, T_EXTENSION).values():
        if ext.name.startswith(f"{app}-"):
            assert ext.urn in waits_for
    props = check.plain
    assert props["app_name"] == app
    assert props["namespace"] == ("docs" if app == "paperless" else "apps")
    assert props["secret_name"] == f"{app}-db-credentials"
    assert props["database"] == props["username"] == DBS[app]
    assert props["host"] == "postgres-postgresql.data.svc.cluster.local"
    assert props["port"] == 5432
    assert props["sslmode"] == "require"
    assert (props["direct_host"], props["direct_port"]) == ("127.0.0.1", 15432)
    peers = sorted((p["database"], p["role"]) for p in props["peers"])
    assert peers == sorted((d, d) for a, d in DBS.items() if a != app)
    # the peers are plain names; the check waits for their Database and Role through
    # `AppsReady`, without an edge of its own to them (the state stays linear in the apps)
    for other in (a for a in APPS if a != app):
        for type_, suffix in ((T_DATABASE, "database"), (T_ROLE, "role")):
            urn = three.monitor.one(type_, f"{other}-{suffix}").urn
            assert urn in waits_for, (other, suffix)
            assert urn not in check.dependencies, (other, suffix)
    assert props["verification_mode"] == "direct"
    assert props["latency_budget_ms"] == 50
    assert props["kube_context"] == "unit-context"
    assert is_secret(check.inputs["password"])
    assert props["password"] == PASSWORDS[app]
    assert is_secret(check.inputs["uri"])
    secret_data = unwrap(three.monitor.one(T_SECRET, f"{app}-secret").inputs["stringData"])
    assert props["uri"] == secret_data["uri"]
    component = three.monitor.one(T_COMPONENT, app)
    assert check.parent == component.urn


def test_stack_outputs_have_no_secrets(three: Run) -> None:
    assert three.secret_outputs == set()
    assert not contains_secret(three.outputs)
    text = json.dumps(three.outputs)
    for pw in (*PASSWORDS.values(), ADMIN_PASSWORD):
        assert pw not in text
    apps = three.outputs["apps"]
    assert set(apps) == set(APPS)
    assert apps["n8n"] == {
        "namespace": "apps",
        "secretName": "n8n-db-credentials",
        "database": "n8n",
        "role": "n8n",
        "deletion": "protect",
        "verification": {
            "checksPassed": ["tcp", "login", "crud", "isolation", "latency"],
            "connectMs": 3.5,
            "roundtripP50Ms": 0.4,
            "roundtripP95Ms": 0.9,
            "serverVersion": "15.8",
            "checkedAt": "2026-11-27T00:00:00Z",
            "mode": "direct",
        },
    }
    assert three.outputs["managedApps"]["paperless"] == {
        "namespace": "docs",
        "role": "paperless",
        "database": "paperless",
        "secret": "paperless-db-credentials",
        "deletion": "drop",
    }


def test_verification_disabled_registers_no_check() -> None:
    config: dict[str, Any] = {**THREE_APPS, "verification": {"enabled": False}}
    run = run_program(config)
    assert run.monitor.of_type(CHECK_TYPE) == []
    assert "verification" not in run.outputs["apps"]["app-test"]
    assert run.outputs["verificationMode"] == "off"


def _urns(config: dict[str, Any]) -> set[str]:
    return run_program(config).monitor.urns


def test_adding_one_app_adds_exactly_its_resources() -> None:
    base: dict[str, Any] = json.loads(json.dumps(THREE_APPS))
    before = _urns(base)
    base["apps"].append({"name": "new-app"})
    after = _urns(base)
    assert before < after
    added = after - before
    names = sorted(urn.rsplit("::", 1)[1] for urn in added)
    assert names == [
        "new-app",
        "new-app-check",
        "new-app-database",
        "new-app-password",
        "new-app-revoke-public",
        "new-app-role",
        "new-app-secret",
    ]


def test_stack_reference_reads_this_stack(three: Run) -> None:
    ref = three.monitor.one(T_STACKREF, "previous-deployment")
    assert ref.read_id == "organization/postgres-apps/unit"


def _previous(**policies: str) -> dict[str, Any]:
    return managed_apps(
        [AppSpec(name=n, namespace="apps", deletion=p) for n, p in policies.items()]  # type: ignore[arg-type]
    )


def test_removing_a_protected_app_is_refused_with_the_retire_procedure() -> None:
    previous = _previous(
        **{"app-test": "protect", "n8n": "protect", "paperless": "drop", "old-app": "protect"}
    )
    mocks = ProgramMocks(previous_managed_apps=previous)
    monitor = RecordingMonitor(mocks)
    with pytest.raises(RemovalRefused) as excinfo:
        run_program(THREE_APPS, mocks, monitor=monitor)
    message = str(excinfo.value)
    assert message.startswith('refusing to remove "old-app" from postgres-apps:apps')
    assert "Nothing was changed, created or dropped." in message
    assert "a verified pg_dump is taken into postgres-apps:retirement.directory" in message
    assert "`deletion: drop`" in message and "`deletion: retain`" in message
    assert "docs/runbooks/postgres-connectivity.md#retiring-an-app" in message
    # what is registered stays; the program failing means the engine deletes nothing
    assert not [r for r in monitor.registrations if "old-app" in r.name]


def test_refused_removal_registers_nothing_even_with_an_added_app() -> None:
    """Removing a protected app and adding another in one change: the refusal comes before any
    resource is registered (only the read of the previous outputs and the admin Secret, the
    admin provider — a configuration, nothing on the server — and the component that waits)."""
    previous = _previous(**{"app-test": "protect", "n8n": "protect", "old-app": "protect"})
    mocks = ProgramMocks(previous_managed_apps=previous)
    monitor = RecordingMonitor(mocks)
    with pytest.raises(RemovalRefused):
        run_program(THREE_APPS, mocks, monitor=monitor)  # adds paperless, removes old-app
    registered = {(r.type, r.name) for r in monitor.registrations if r.read_id is None}
    assert registered == {(T_PROVIDER, "postgres-admin"), (T_APPS, "postgres-apps")}, registered


@pytest.mark.parametrize("policy", ["drop", "retain"])
def test_removing_an_opted_out_app_is_allowed(policy: str) -> None:
    previous = _previous(
        **{"app-test": "protect", "n8n": "protect", "paperless": "drop", "old-app": policy}
    )
    run = run_program(THREE_APPS, ProgramMocks(previous_managed_apps=previous))
    assert "old-app" not in run.outputs["managedApps"]


def test_removing_a_drop_app_takes_its_copy_first_and_keeps_earlier_records() -> None:
    """The copy is registered only for the `drop` app that left the config; its record joins
    the earlier runs' records in `retirementCopies` (what the next run reads back)."""
    previous = _previous(
        **{"app-test": "protect", "n8n": "protect", "gone-drop": "drop", "gone-retain": "retain"}
    )
    earlier = {"older": {"database": "older", "sha256": "cd" * 32}}
    mocks = ProgramMocks(previous_managed_apps=previous, previous_retirement_copies=earlier)
    run = run_program(THREE_APPS, mocks)
    copies = [r for r in run.monitor.registrations if r.type == COPY_TYPE]
    assert [r.name for r in copies] == ["gone-drop-retirement-copy"]
    inputs = copies[0].plain
    assert inputs["database"] == "gone_drop"
    assert (inputs["host"], inputs["port"], inputs["user"]) == ("127.0.0.1", 15432, "postgres")
    assert Path(inputs["directory"]).is_absolute()
    assert inputs["directory"].endswith("/retired-copies")
    assert is_secret(copies[0].inputs["password"]), "the admin password is a secret input"
    assert unwrap(copies[0].inputs["password"]) == ADMIN_PASSWORD
    assert run.outputs["retirementCopies"] == {
        "older": earlier["older"],
        "gone-drop": {
            "database": "gone_drop",
            "file": f"{inputs['directory']}/gone_drop-20261202T000000Z.dump",
            "bytes": 4096,
            "sha256": "ab" * 32,
            "tocEntries": 7,
            "tableData": 1,
            "takenAt": "20261202T000000Z",
            "dumpMs": 42,
        },
    }


def test_no_copy_without_a_retiring_drop_app() -> None:
    previous = _previous(**{"app-test": "protect", "n8n": "drop", "gone": "retain"})
    run = run_program(THREE_APPS, ProgramMocks(previous_managed_apps=previous))
    assert not [r for r in run.monitor.registrations if r.type == COPY_TYPE]
    assert run.outputs["retirementCopies"] == {}


def test_an_app_retired_by_hand_gets_no_copy() -> None:
    previous = _previous(**{"app-test": "protect", "n8n": "protect", "by-hand": "drop"})
    config = {**THREE_APPS, "retired": ["by-hand"]}
    run = run_program(config, ProgramMocks(previous_managed_apps=previous))
    assert not [r for r in run.monitor.registrations if r.type == COPY_TYPE]


def test_removal_of_an_app_declared_retired_is_not_refused() -> None:
    previous = _previous(
        **{"app-test": "protect", "n8n": "protect", "paperless": "drop", "old-app": "protect"}
    )
    config = {**THREE_APPS, "retired": ["old-app"]}
    run = run_program(config, ProgramMocks(previous_managed_apps=previous))
    assert "old-app" not in run.outputs["managedApps"]


def test_first_run_has_no_previous_apps() -> None:
    run = run_program(THREE_APPS, ProgramMocks(previous_managed_apps=None))
    assert set(run.outputs["managedApps"]) == set(APPS)


def test_refused_removals_pure() -> None:
    apps = [AppSpec(name="a1", namespace="apps")]
    assert refused_removals(None, apps) == []
    assert refused_removals({"a1": {"deletion": "protect"}}, apps) == []
    assert refused_removals({"gone": {"deletion": "drop"}}, apps) == []
    assert refused_removals({"gone": {"deletion": "retain"}}, apps) == []
    assert refused_removals({"gone": {"deletion": "protect"}}, apps, retired=["gone"]) == []
    # unreadable records count as protected: refusing is the safe side
    assert refused_removals({"gone": "garbage"}, apps) == [("gone", {})]
    assert refused_removals({"b2": {"deletion": "protect"}, "a0": {}}, apps) == [
        ("a0", {}),
        ("b2", {"deletion": "protect"}),
    ]
    message = retire_message(
        [("b2", {"database": "b2", "namespace": "team", "secret": "b2-db-credentials"})]
    )
    assert "Secret team/b2-db-credentials" in message
    assert "kubectl -n team scale deploy/b2 --replicas=0" in message


# -- Pod Security of adopted namespaces ------------------------------------------------------------


def test_enforce_level_per_namespace_audit_and_warn_stay_restricted() -> None:
    run = run_program(
        {**THREE_APPS, "postgres-apps:podSecurityEnforce": json.dumps({"docs": "baseline"})}
    )
    labels = {r.name: r.plain["metadata"]["labels"] for r in regs(run, T_NAMESPACE).values()}
    assert labels["namespace-docs"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["namespace-apps"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for ns in labels.values():
        assert ns["pod-security.kubernetes.io/audit"] == "restricted"
        assert ns["pod-security.kubernetes.io/warn"] == "restricted"


def test_adopting_a_looser_namespace_unasked_is_refused_before_anything_is_registered(
    harness_namespaces: FakeNamespaces,
) -> None:
    """`docs` exists (made by hand, no Pod Security labels: it enforces `privileged`): adopting
    it would make it enforce `restricted` and break its pods at their next restart."""
    harness_namespaces.live = {"docs": {"team": "docs"}, "apps": {}}
    monitor = RecordingMonitor(ProgramMocks())
    try:
        with pytest.raises(NamespaceAdoptionRefused) as refused:
            run_program(THREE_APPS, ProgramMocks(), monitor=monitor)
    finally:
        harness_namespaces.live = {}
    message = str(refused.value)
    assert 'namespace "docs" exists and enforces Pod Security "privileged" (no enforce label)' in (
        message
    )
    assert 'Set postgres-apps:podSecurityEnforce.docs to "restricted" to tighten it' in message
    assert 'namespace "apps"' in message  # also empty of labels: every problem at once
    registered = {(r.type, r.name) for r in monitor.registrations if r.read_id is None}
    assert registered == {(T_PROVIDER, "postgres-admin"), (T_APPS, "postgres-apps")}, registered


@pytest.mark.parametrize(
    ("live", "config"),
    [
        ({"pod-security.kubernetes.io/enforce": "restricted"}, {}),  # as strict already
        (
            {
                "app.kubernetes.io/managed-by": "pulumi",
                "app.kubernetes.io/part-of": "postgres-apps",
            },
            {},
        ),
        ({}, {"docs": "restricted"}),  # tightening asked for
        ({"pod-security.kubernetes.io/enforce": "baseline"}, {"docs": "baseline"}),  # kept
    ],
    ids=["already-restricted", "already-ours", "tighten-on-purpose", "keep-baseline"],
)
def test_adoption_goes_ahead_when_nothing_is_tightened_unasked(
    harness_namespaces: FakeNamespaces, live: dict[str, str], config: dict[str, str]
) -> None:
    harness_namespaces.live = {"docs": live}
    try:
        run = run_program({**THREE_APPS, "postgres-apps:podSecurityEnforce": json.dumps(config)})
    finally:
        harness_namespaces.live = {}
    assert "namespace-docs" in regs(run, T_NAMESPACE)


def test_an_enforce_level_for_a_namespace_the_stack_does_not_have_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        run_program(
            {**THREE_APPS, "postgres-apps:podSecurityEnforce": json.dumps({"x": "baseline"})}
        )
    assert refused.value.problems == [
        'postgres-apps:podSecurityEnforce.x: "x" is not a namespace of this stack (apps, docs)'
    ]


def test_the_namespace_reader_reports_what_exists_and_gives_up_quietly_without_a_cluster(
    harness_namespaces: FakeNamespaces, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`live_namespace_labels` itself: 404 means absent; any failure to ask the cluster is no
    refusal (None, with a warning) — the Kubernetes provider then reports the cluster."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    from postgres_apps.verification import pod  # noqa: PLC0415

    class Api:
        def read_namespace(self, name: str, **_: Any) -> Any:
            if name == "absent":
                raise ApiException(status=404)
            meta = type("Meta", (), {"labels": {"team": "a"}})()
            return type("Namespace", (), {"metadata": meta})()

    monkeypatch.setattr(pod, "core_api", lambda context, kubeconfig: Api())
    assert harness_namespaces.real(["apps", "absent"], None, None) == {"apps": {"team": "a"}}

    def no_cluster(context: Any, kubeconfig: Any) -> Any:
        raise RuntimeError("no kubeconfig")

    warnings: list[str] = []
    monkeypatch.setattr(pod, "core_api", no_cluster)
    monkeypatch.setattr("pulumi.log.warn", lambda message, *a, **k: warnings.append(message))
    assert harness_namespaces.real(["apps"], None, None) is None
    assert warnings == ["could not read the apps' namespaces before adopting them: no kubeconfig"]
