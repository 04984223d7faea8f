"""Hand-made changes (drift): seen by `pulumi preview --refresh`, repaired by `pulumi up --refresh`.

One shared stack (`rel-drift`, two apps, direct mode, `rerun: always`). For each drift:
1. the change is made by hand (as an operator with psql or kubectl would);
2. a plain `pulumi up` (no refresh: the engine compares the program with its own state only) —
   does the verification gate catch it? Recorded per case;
3. `pulumi preview --refresh` shows the resource that drifted;
4. `pulumi up --refresh` repairs it, and the gate passes on that `up`;
5. the real server / cluster is checked to be as declared again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from tests.e2e.harness import (
    ProjectStack,
    kubectl,
    login_refused,
    new_stack,
    query,
    secret_data,
)
from tests.e2e.reliability_support import (
    admin_exec,
    delete_namespaces,
    login_error,
    purge_leftovers,
    rel_config,
    role_exists,
)

NAMESPACE = "rel-drift"
APPS: list[dict[str, Any]] = [
    {"name": "rel-dr-a"},  # protected (the default)
    {"name": "rel-dr-b", "profile": "n8n"},
]
ROLE_A = "rel_dr_a"
ROLE_B = "rel_dr_b"


def config(apps: list[dict[str, Any]] = APPS) -> dict[str, Any]:
    return rel_config(apps, NAMESPACE, rerun="always")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectStack]:
    purge_leftovers("rel_dr_", NAMESPACE)
    s = new_stack(tmp_path_factory.mktemp("drift"), "rel-drift")
    s.write_config(config())
    s.up()
    yield s
    try:
        s.write_config(config([{**a, "deletion": "drop"} for a in APPS]))
        s.stack.up(on_output=print, color="never", refresh=True)
        s.stack.destroy(on_output=print, color="never")
        s.stack.workspace.remove_stack(s.name)
    finally:
        delete_namespaces(NAMESPACE)


def refresh_drift(text: str) -> set[str]:
    """URNs that `preview --refresh --diff` shows as changed or gone by its refresh steps:
    a `~ <type>: (refresh)` (or `- …`) header, its `[urn=…]`, then `old => new` lines."""
    drifted: set[str] = set()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        header = line.strip()
        if not header.endswith(("(refresh)", "(refresh) 🔒")) or header[:1] not in "~-":
            continue
        urn = next(
            (ln.strip()[5:-1] for ln in lines[i + 1 : i + 4] if ln.strip().startswith("[urn=")),
            None,
        )
        if urn is None:
            continue
        body = []
        for ln in lines[i + 1 :]:
            stripped = ln.strip()
            if stripped.endswith(")") and ": (" in stripped and stripped[:1] in "~-+ ":
                break
            body.append(stripped)
        if header.startswith("-") or any("=>" in b or b.startswith("- ") for b in body):
            drifted.add(urn)
    return drifted


def preview_ops(stack: ProjectStack) -> dict[str, set[str]]:
    """URN → operations of `pulumi preview --refresh --diff`, leaving out the checks (always
    re-run). A resource whose refresh found it changed or gone by hand gets `drift` (the engine
    shows that in the refresh step's diff, not as a planned operation)."""
    ops: dict[str, set[str]] = {}

    def on_event(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is None or "ConnectivityCheck" in pre.metadata.urn:
            return
        op = pre.metadata.op.value
        if op not in ("same", "read", "refresh"):
            ops.setdefault(pre.metadata.urn, set()).add(op)

    result = stack.stack.preview(
        on_event=on_event, color="never", refresh=True, diff=True, on_output=print
    )
    for urn in refresh_drift(result.stdout):
        ops.setdefault(urn, set()).add("drift")
    return ops


def ops_for(ops: dict[str, set[str]], type_fragment: str, name: str) -> set[str]:
    found: set[str] = set()
    for urn, urn_ops in ops.items():
        if type_fragment in urn and urn.endswith(f"::{name}"):
            found |= urn_ops
    return found


def detected(ops: dict[str, set[str]], type_fragment: str, name: str) -> bool:
    """The preview shows the drift: as the refresh step's diff, or as the operation that would
    repair it (the postgresql plugin carries a refreshed difference into the plan)."""
    return bool(ops_for(ops, type_fragment, name) & {"drift", "update", "create", "replace"})


def gate_on_plain_up(stack: ProjectStack) -> str | None:
    """Plain `pulumi up` (no refresh): None if it passed, else the error text."""
    try:
        stack.up()
    except auto.CommandError as exc:
        return str(exc)
    return None


def repaired(stack: ProjectStack) -> dict[str, Any]:
    """`pulumi up --refresh`; the gate must pass: return the apps output."""
    stack.stack.up(on_output=print, color="never", refresh=True)
    apps: dict[str, Any] = stack.outputs()["apps"]
    for app in APPS:
        assert "login" in apps[app["name"]]["verification"]["checksPassed"]
    return apps


def role_flags(role: str) -> tuple[Any, ...]:
    rows = query(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles WHERE rolname = %s",
        role,
    )
    assert rows, f"role {role} missing"
    return rows[0]


def secret_logs_in(app: str) -> None:
    data = secret_data(NAMESPACE, f"{app}-db-credentials")
    assert login_error(data["user"], data["password"], data["dbname"]) is None


def test_role_made_superuser_by_hand(stack: ProjectStack) -> None:
    admin_exec(f"ALTER ROLE {ROLE_A} SUPERUSER CREATEDB")
    caught = gate_on_plain_up(stack)
    assert caught is not None, "the gate must refuse a superuser app role"
    superuser = 'app "rel-dr-a": check "privileges" failed: the app role has SUPERUSER, CREATEDB'
    assert superuser in caught, caught[-2000:]
    ops = preview_ops(stack)
    assert detected(ops, "postgresql:index/role:Role", "rel-dr-a-role"), ops
    repaired(stack)
    assert role_flags(ROLE_A) == (False, False, False, True)


def test_connect_granted_back_to_public_by_hand(stack: ProjectStack) -> None:
    admin_exec(f"GRANT CONNECT, TEMPORARY ON DATABASE {ROLE_A} TO PUBLIC")
    caught = gate_on_plain_up(stack)
    assert caught is not None, "app B can connect to A's database: the isolation check must fail"
    reaches_a = (
        'app "rel-dr-b": check "isolation" failed: '
        f'the app can connect to databases other than its own: "{ROLE_A}"'
    )
    assert reaches_a in caught, caught[-2000:]
    ops = preview_ops(stack)
    assert detected(ops, "postgresql:index/grant:Grant", "rel-dr-a-revoke-public"), ops
    repaired(stack)
    assert query("SELECT has_database_privilege('public', %s, 'CONNECT')", ROLE_A) == [(False,)]
    assert query("SELECT has_database_privilege(%s, %s, 'CONNECT')", ROLE_B, ROLE_A) == [(False,)]


def test_app_secret_deleted_by_hand(stack: ProjectStack) -> None:
    kubectl("delete", "secret", "-n", NAMESPACE, "rel-dr-b-db-credentials")
    caught = gate_on_plain_up(stack)
    # Direct mode checks the credentials from the program, not the Secret: a plain `up` does not
    # notice (pod mode reads the Secret and fails; see docs/reliability.md).
    assert caught is None, caught
    assert kubectl(
        "get", "secret", "-n", NAMESPACE, "rel-dr-b-db-credentials", check=False
    ).returncode
    ops = preview_ops(stack)
    assert detected(ops, "kubernetes:core/v1:Secret", "rel-dr-b-secret"), ops
    repaired(stack)
    secret_logs_in("rel-dr-b")
    assert secret_data(NAMESPACE, "rel-dr-b-db-credentials")["DB_TYPE"] == "postgresdb"


def test_password_changed_by_hand(stack: ProjectStack) -> None:
    admin_exec(f"ALTER ROLE {ROLE_A} PASSWORD 'rel-changed-by-hand-1234567890'")
    caught = gate_on_plain_up(stack)
    assert caught is not None
    assert login_refused("rel-dr-a", ROLE_A).search(caught), caught[-2000:]
    assert "rel-changed-by-hand" not in caught
    ops = preview_ops(stack)
    assert detected(ops, "postgresql:index/role:Role", "rel-dr-a-role"), ops
    repaired(stack)
    secret_logs_in("rel-dr-a")
    assert login_error(ROLE_A, "rel-changed-by-hand-1234567890", ROLE_A) is not None


def test_role_dropped_by_hand(stack: ProjectStack) -> None:
    # A role that owns a database cannot be dropped: the operator hands the database over first.
    admin_exec(f"ALTER DATABASE {ROLE_B} OWNER TO postgres")
    admin_exec(f"REASSIGN OWNED BY {ROLE_B} TO postgres", dbname=ROLE_B)
    admin_exec(f"DROP OWNED BY {ROLE_B}", dbname=ROLE_B)
    admin_exec(f"DROP ROLE {ROLE_B}")
    assert not role_exists(ROLE_B)
    caught = gate_on_plain_up(stack)
    assert caught is not None
    # PostgreSQL does not say the role is gone: the same refusal as a wrong password
    assert login_refused("rel-dr-b", ROLE_B).search(caught), caught[-2000:]
    ops = preview_ops(stack)
    assert detected(ops, "postgresql:index/role:Role", "rel-dr-b-role"), ops
    assert detected(ops, "postgresql:index/database:Database", "rel-dr-b-database"), ops
    repaired(stack)
    assert role_flags(ROLE_B) == (False, False, False, True)
    owner = query("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", ROLE_B)
    assert owner == [(ROLE_B,)]
    secret_logs_in("rel-dr-b")


def urn_of(stack: ProjectStack, type_fragment: str, name: str) -> str:
    deployment = stack.stack.export_stack().deployment or {}
    urns = [
        r["urn"]
        for r in deployment.get("resources") or []
        if type_fragment in r["urn"] and r["urn"].endswith(f"::{name}")
    ]
    assert len(urns) == 1, urns
    return str(urns[0])


def test_database_acl_reset_to_the_default_by_hand(stack: ProjectStack) -> None:
    """A NULL `datacl` means PostgreSQL's default ACL, which gives PUBLIC CONNECT and TEMPORARY.
    Upstream's grant refresh reads `aclexplode(datacl)` without `acldefault` (terraform-provider-
    postgresql, `resource_postgresql_grant.go`, `readDatabaseRolePriviges`): it sees no privilege,
    so `preview --refresh` shows nothing and `up --refresh` does not repair it. The gate catches
    it; the documented repair is `pulumi up --replace <urn of <app>-revoke-public>`."""
    admin_exec("UPDATE pg_database SET datacl = NULL WHERE datname = %s", ROLE_A)
    assert query("SELECT has_database_privilege('public', %s, 'CONNECT')", ROLE_A) == [(True,)]
    caught = gate_on_plain_up(stack)
    assert caught is not None, "PUBLIC can connect to A's database: the gate must fail"
    assert f'PUBLIC holds CONNECT on this app\'s database "{ROLE_A}"' in caught, caught[-2000:]
    ops = preview_ops(stack)
    assert not detected(ops, "postgresql:index/grant:Grant", "rel-dr-a-revoke-public"), (
        "upstream does not see a NULL ACL as drift: the local plugin must not either"
    )
    grant = urn_of(stack, "postgresql:index/grant:Grant", "rel-dr-a-revoke-public")
    stack.stack.up(on_output=print, color="never", replace=[grant])
    assert query("SELECT has_database_privilege('public', %s, 'CONNECT')", ROLE_A) == [(False,)]
    assert query("SELECT has_database_privilege(%s, %s, 'CONNECT')", ROLE_B, ROLE_A) == [(False,)]
    apps: dict[str, Any] = stack.outputs()["apps"]
    assert "isolation" in apps["rel-dr-a"]["verification"]["checksPassed"]


def test_password_expiry_set_by_hand(stack: ProjectStack) -> None:
    """`VALID UNTIL` in the past: the password no longer logs in. Upstream reads
    `rolvaliduntil` back (`resource_postgresql_role.go`, `resourcePostgreSQLRoleReadImpl`), so the
    refresh sees it and `up --refresh` sets it back to `infinity`."""
    admin_exec(f"ALTER ROLE {ROLE_A} VALID UNTIL '2001-01-01'")
    caught = gate_on_plain_up(stack)
    assert caught is not None
    assert 'app "rel-dr-a": check "login" failed' in caught, caught[-2000:]
    ops = preview_ops(stack)
    assert detected(ops, "postgresql:index/role:Role", "rel-dr-a-role"), ops
    repaired(stack)
    valid_until = (
        "SELECT coalesce(rolvaliduntil = 'infinity', true) FROM pg_roles WHERE rolname = %s"
    )
    assert query(valid_until, ROLE_A) == [(True,)]
    secret_logs_in("rel-dr-a")
