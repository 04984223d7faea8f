"""Bad input is refused before anything is touched, with a message that names the field.

One shared stack (`rel-badinput`, one deployed app) so that "nothing changed" is a real claim: for
every case the state (`pulumi stack export`), PostgreSQL (roles with their password hashes,
databases with owner and ACL) and the API server (namespaces, Secrets with resourceVersion) are
compared before and after the failed `pulumi up`.

Config cases fail in the program before any resource is registered (`postgres_apps/config.py`); each
is also checked against `parse_settings` so the message logic is pinned without the engine.
Environment cases (admin Secret, endpoint, kube context) run `pulumi up --refresh` so the providers
really connect without adding a resource. Wrong admin credentials (user, password, a non-superuser
admin) are refused by a plain `pulumi up` with no change at all: the admin pre-flight
(`postgres_apps/preflight.py`) logs in on every `up` before the postgresql provider is configured.
So is a stack whose apps' connection limits add up to more than the server allows roles that are
not superusers (the connection budget, read by the same pre-flight).
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pulumi import automation as auto

from postgres_apps.admin import AdminPasswordError, decode_secret_value
from postgres_apps.config import MAX_CONNECTION_LIMIT, ConfigError, parse_settings
from postgres_apps.inventory import NOT_CHECKED_PREFIX
from postgres_apps.preflight import BUDGET_RUNBOOK_SECTION
from postgres_apps.preflight import RUNBOOK_SECTION as PREFLIGHT_RUNBOOK
from tests.e2e.harness import (
    ProjectStack,
    assert_lines_in,
    kubectl,
    new_stack,
    preflight_refusal,
    query,
)
from tests.e2e.harness import admin_password as harness_admin_password
from tests.e2e.reliability_support import (
    World,
    admin_exec,
    database_exists,
    delete_namespaces,
    login_error,
    purge_leftovers,
    rel_config,
    role_exists,
    state_resources,
    world,
)

NAMESPACE = "rel-bi-ns"
GOOD_APP: dict[str, Any] = {"name": "rel-bi-one", "deletion": "drop"}

Mutator = Callable[[dict[str, Any]], None]


def good_config() -> dict[str, Any]:
    return rel_config([dict(GOOD_APP)], NAMESPACE)


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Mutator
    expect: tuple[str, ...]
    """Substrings of the error, the first one naming the config key."""
    provider_config_may_change: bool = False
    """The engine may record the new (bad) provider configuration before failing (kube context):
    the world is then compared without the provider resources, and a plain `up` restores them."""


def _apps(*apps: Any) -> Mutator:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["postgres-apps:apps"] = [dict(GOOD_APP), *apps]

    return mutate


def _set(key: str, value: Any) -> Mutator:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg[key] = value

    return mutate


def _sub(key: str, field: str, value: Any) -> Mutator:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg[key] = {**cfg[key], field: value}

    return mutate


def _many(*mutators: Mutator) -> Mutator:
    def mutate(cfg: dict[str, Any]) -> None:
        for m in mutators:
            m(cfg)

    return mutate


CONFIG_CASES: list[Case] = [
    Case("uppercase-name", _apps({"name": "rel-Bad"}), ("apps[1].name", "DNS-1123 label")),
    Case(
        "name-starts-with-digit",
        _apps({"name": "1rel"}),
        ("apps[1].name", "starting with a letter"),
    ),
    Case("name-ends-with-dash", _apps({"name": "rel-"}), ("apps[1].name", "DNS-1123")),
    Case("name-with-underscore", _apps({"name": "rel_x"}), ("apps[1].name", "DNS-1123")),
    Case("empty-name", _apps({"name": ""}), ("apps[1].name", "must not be empty")),
    Case("missing-name", _apps({"profile": "n8n"}), ("apps[1].name", "is required")),
    Case(
        "duplicate-name",
        _apps({"name": "rel-bi-one"}),
        ("apps[1].name", 'duplicate app "rel-bi-one" (also apps[0])'),
    ),
    Case(
        "collides-after-dash-to-underscore",
        _apps({"name": "rel_bi_one"}),
        ("apps[1].name", "collides with apps[0]", "rel_bi_one"),
    ),
    Case("reserved-postgres", _apps({"name": "postgres"}), ("apps[1].name", "reserved")),
    Case("reserved-template1", _apps({"name": "template1"}), ("apps[1].name", "reserved")),
    Case("reserved-public", _apps({"name": "public"}), ("apps[1].name", "reserved")),
    Case("reserved-pg-prefix", _apps({"name": "pg-rel"}), ("apps[1].name", "pg_")),
    Case(
        "over-long-name",
        _apps({"name": "rel-" + "x" * 45}),
        ("apps[1].name", "at most 48"),
    ),
    Case(
        "unknown-profile",
        _apps({"name": "rel-p", "profile": "wordpress"}),
        ("apps[1].profile", '"n8n"'),
    ),
    Case("unknown-app-key", _apps({"name": "rel-k", "profil": "n8n"}), ("apps[1]", "profil")),
    Case(
        "bad-deletion",
        _apps({"name": "rel-d", "deletion": "delete"}),
        ("apps[1].deletion", '"drop"'),
    ),
    Case(
        "connection-limit-zero",
        _apps({"name": "rel-c", "connectionLimit": 0}),
        ("apps[1].connectionLimit", "1..10000"),
    ),
    Case(
        "connection-limit-string",
        _apps({"name": "rel-c", "connectionLimit": "ten"}),
        ("apps[1].connectionLimit", "must be an integer"),
    ),
    Case(
        "bad-app-namespace",
        _apps({"name": "rel-n", "namespace": "Rel_NS"}),
        ("apps[1].namespace", "DNS-1123"),
    ),
    Case(
        "extensions-not-a-list",
        _apps({"name": "rel-e", "extensions": "pgcrypto"}),
        ("apps[1].extensions", "must be a list"),
    ),
    Case(
        "password-version-negative",
        _apps({"name": "rel-v", "passwordVersion": -1}),
        ("apps[1].passwordVersion", "0..1000000"),
    ),
    Case(
        "apps-not-a-list", _set("postgres-apps:apps", {"name": "rel-x"}), ("apps", "must be a list")
    ),
    Case("apps-a-string", _set("postgres-apps:apps", "rel-x"), ("apps", "must be a list")),
    Case("app-entry-a-number", _apps(42), ("apps[1]", "must be a mapping")),
    Case(
        "port-out-of-range",
        _sub("postgres-apps:postgres", "port", 70000),
        ("postgres.port", "TCP port"),
    ),
    Case(
        "admin-port-zero",
        _sub("postgres-apps:postgres", "adminPort", 0),
        ("postgres.adminPort", "TCP port"),
    ),
    Case(
        "port-a-string",
        _sub("postgres-apps:postgres", "port", "5432"),
        ("postgres.port", "must be an integer, got a string"),
    ),
    Case(
        "bad-sslmode",
        _sub("postgres-apps:postgres", "sslmode", "yes"),
        ("postgres.sslmode", '"require"'),
    ),
    Case(
        "admin-sslmode-prefer",
        _sub("postgres-apps:postgres", "adminSslmode", "prefer"),
        ("postgres.adminSslmode", '"disable"'),
    ),
    Case(
        "bad-admin-host",
        _sub("postgres-apps:postgres", "adminHost", "bad host!"),
        ("postgres.adminHost", "host name"),
    ),
    Case(
        "postgres-not-a-mapping",
        _set("postgres-apps:postgres", "127.0.0.1:5432"),
        ("postgres", "must be a mapping"),
    ),
    Case(
        "unknown-postgres-key",
        _sub("postgres-apps:postgres", "adminPasword", "x"),
        ("postgres", "adminPasword"),
    ),
    Case(
        "bad-apps-namespace",
        _set("postgres-apps:appsNamespace", "Rel_Apps"),
        ("appsNamespace", "DNS-1123"),
    ),
    Case(
        "bad-verification-mode",
        _sub("postgres-apps:verification", "mode", "ssh"),
        ("verification.mode", '"pod"'),
    ),
    Case(
        "bad-verification-timeout",
        _sub("postgres-apps:verification", "timeoutSeconds", -1),
        ("verification.timeoutSeconds", "5..3600"),
    ),
    Case(
        "verification-enabled-a-string",
        _sub("postgres-apps:verification", "enabled", "yes"),
        ("verification.enabled", "true or false"),
    ),
    Case("unknown-top-level-key", _set("postgres-apps:app", [{"name": "rel-x"}]), ("app",)),
    Case(
        "retired-still-present",
        _set("postgres-apps:retired", ["rel-bi-one"]),
        ("retired[0]", "still in postgres-apps:apps"),
    ),
    # issue 11: inputs that must be refused
    Case(
        "name-trailing-newline",
        _apps({"name": "rel-nl\n"}),
        ("apps[1].name", '"rel-nl\\n" is not a DNS-1123 label'),
    ),
    Case(
        "namespace-kube-system",
        _apps({"name": "rel-ks", "namespace": "kube-system"}),
        ("apps[1].namespace", '"kube-system" is a Kubernetes system namespace'),
    ),
    Case(
        "apps-namespace-of-the-admin-secret",
        _set("postgres-apps:appsNamespace", "data"),
        ("appsNamespace", '"data" holds the admin Secret'),
    ),
    Case(
        "untrusted-extension",
        _apps({"name": "rel-px", "extensions": ["plpython3u"]}),
        ("apps[1].extensions[0]", "not a trusted extension", "postgres-apps:allowedExtensions"),
    ),
    Case(
        "plain-admin-password",
        _set("postgres-apps:adminPassword", "rel-plain-admin-pw"),
        ("adminPassword", "pulumi config set --secret postgres-apps:adminPassword <value>"),
    ),
    Case(
        "admin-in-clear-to-a-remote-host",
        _sub("postgres-apps:postgres", "adminHost", "10.0.0.5"),
        ("postgres.adminSslmode", "cross the network in clear", "allowInsecureAdmin"),
    ),
    Case(
        "harden-template0",
        _sub("postgres-apps:postgres", "hardenDatabases", ["template0"]),
        ("postgres.hardenDatabases[0]", "template0"),
    ),
    Case(
        "every-problem-at-once",
        _many(
            _apps({"name": "postgres"}, {"name": "rel-q", "profile": "nope"}),
            _sub("postgres-apps:postgres", "port", "x"),
            _sub("postgres-apps:verification", "mode", "ssh"),
        ),
        ("4 problems", "apps[1].name", "apps[2].profile", "postgres.port", "verification.mode"),
    ),
]


def raw_of(cfg: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The `postgres-apps:` part of a stack config as `parse_settings` receives it."""
    raw = {
        k.removeprefix("postgres-apps:"): v
        for k, v in cfg.items()
        if k.startswith("postgres-apps:")
    }
    return raw, cfg.get("kubernetes:context")


def case_config(case: Case) -> dict[str, Any]:
    cfg = copy.deepcopy(good_config())
    case.mutate(cfg)
    return cfg


# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectStack]:
    purge_leftovers("rel_bi_", NAMESPACE, "rel-bi-fresh")
    stack = new_stack(tmp_path_factory.mktemp("badinput"), "rel-badinput")
    stack.write_config(good_config())
    stack.up()
    yield stack
    try:
        stack.write_config(good_config())
        stack.stack.destroy(on_output=print, color="never")
        stack.stack.workspace.remove_stack(stack.name)
    finally:
        delete_namespaces(NAMESPACE, "rel-bi-fresh")
        for role in ("rel_bi_squat", "rel_bi_dbsquat", "rel_bi_notsuper"):
            admin_exec(f"DROP DATABASE IF EXISTS {role}")
            admin_exec(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture(scope="module")
def baseline(shared: ProjectStack) -> World:
    """The world right after the shared stack's first `up`: every refused case must leave it so."""
    return world(shared, "rel-bi")


def refused_without_change(
    stack: ProjectStack, cfg: dict[str, Any], before: World, *, refresh: bool = False
) -> tuple[str, World, World]:
    """Write `cfg`, run `pulumi up` (expected to fail), restore; return error text and worlds."""
    stack.write_config(cfg)
    try:
        with pytest.raises(auto.CommandError) as err:
            stack.stack.up(on_output=print, color="never", refresh=refresh)
    finally:
        stack.write_config(good_config())
    return str(err.value), before, world(stack, "rel-bi")


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c.id for c in CONFIG_CASES])
def test_bad_config_is_refused_naming_the_field(
    shared: ProjectStack, baseline: World, case: Case
) -> None:
    cfg = case_config(case)
    raw, context = raw_of(cfg)
    with pytest.raises(ConfigError) as parsed:
        parse_settings(raw, kube_context=context)
    for fragment in case.expect:
        assert fragment in str(parsed.value), (fragment, parsed.value.problems)

    text, before, after = refused_without_change(shared, cfg, baseline)
    # the program's whole message (`ConfigError`: header with the count, one line per problem)
    assert_lines_in(str(parsed.value).splitlines(), text)
    assert before.differences(after) == []


def test_config_case_count() -> None:
    """The issue asks for at least 20 bad inputs; config and environment cases together."""
    assert len(CONFIG_CASES) + len(ENVIRONMENT_CASES) >= 20


# --------------------------------------------------------------------------------------------
# Environment: the config is valid but the world is not as it says.


def _admin(field: str, value: Any) -> Mutator:
    return _sub("postgres-apps:postgres", field, value)


def _missing_key_message(key: str) -> str:
    """The program's message (`admin.decode_secret_value`) for the admin Secret's one key."""
    with pytest.raises(AdminPasswordError) as err:
        decode_secret_value({"postgres-password": ""}, key, "data/postgres-postgresql")
    return str(err.value)


ENVIRONMENT_CASES: list[Case] = [
    Case(
        "missing-admin-secret",
        _admin("adminSecretName", "rel-no-such-secret"),
        # the engine's ReadStep (Pulumi 3.274.1, pkg/resource/deploy/step.go) for `Secret.get`
        ("resource 'data/rel-no-such-secret' does not exist",),
    ),
    Case(
        "missing-admin-secret-namespace",
        _admin("adminSecretNamespace", "rel-no-such-ns"),
        ("resource 'rel-no-such-ns/postgres-postgresql' does not exist",),
    ),
    Case(
        "admin-secret-without-the-key",
        _admin("adminSecretKey", "rel-no-such-key"),
        (_missing_key_message("rel-no-such-key"),),
    ),
    Case(
        "unreachable-admin-endpoint",
        _admin("adminPort", 1),
        (
            "admin pre-flight failed for PostgreSQL at 127.0.0.1:1",
            "Connection refused",
            "postgres-apps:postgres.adminPort",
            "port-forward",
            PREFLIGHT_RUNBOOK,
        ),
    ),
    Case(
        "no-such-kube-context",
        _set("kubernetes:context", "rel-no-such-context"),
        ("rel-no-such-context",),
        provider_config_may_change=True,
    ),
]


@pytest.mark.parametrize("case", ENVIRONMENT_CASES, ids=[c.id for c in ENVIRONMENT_CASES])
def test_bad_environment_is_refused_naming_it(
    shared: ProjectStack, baseline: World, case: Case
) -> None:
    cfg = case_config(case)
    parse_settings(*raw_of(cfg)[:1], kube_context=raw_of(cfg)[1])  # valid config
    text, before, after = refused_without_change(shared, cfg, baseline, refresh=True)
    for fragment in case.expect:
        assert fragment in text, (fragment, text[-3000:])
    if case.id == "unreachable-admin-endpoint":  # the whole pre-flight message, not fragments
        expected = preflight_refusal(cfg, harness_admin_password(), password_in_config=False)
        assert_lines_in(expected, text)
    if not case.provider_config_may_change:
        # the failing read or pre-flight keeps the provider unregistered: state untouched too
        assert before.differences(after) == []
        return
    # Nothing changed in PostgreSQL, the cluster or the managed resources; the engine may have
    # recorded the new (bad) provider configuration before failing: a plain `up` with the
    # corrected config puts it back (docs/reliability.md).
    assert before.differences(after, ignore_providers=True) == []
    shared.up()
    assert before.differences(world(shared, "rel-bi")) == []


def _refused_by_a_plain_up(
    stack: ProjectStack, before: World, cfg: dict[str, Any], admin_password: str | None = None
) -> str:
    """A plain `pulumi up` that would change nothing (same apps, no refresh) with bad admin
    credentials: refused by the admin pre-flight; state, PostgreSQL and cluster exactly as before
    (the postgresql provider is not even re-registered with the bad configuration)."""
    try:
        stack.write_config(cfg)  # replaces the whole config: the secret goes in after it
        if admin_password is not None:
            stack.stack.set_config(
                "postgres-apps:adminPassword", auto.ConfigValue(value=admin_password, secret=True)
            )
        with pytest.raises(auto.CommandError) as err:
            stack.stack.up(on_output=print, color="never")
    finally:
        stack.stack.remove_config("postgres-apps:adminPassword")
        stack.write_config(good_config())
    text = str(err.value)
    # the program's whole message for this endpoint and password (`postgres_apps.preflight`)
    expected = preflight_refusal(
        cfg,
        admin_password if admin_password is not None else harness_admin_password(),
        password_in_config=admin_password is not None,
    )
    assert expected[0].startswith("admin pre-flight failed for PostgreSQL at"), expected
    assert PREFLIGHT_RUNBOOK in expected[-1], expected
    assert_lines_in(expected, text)
    assert before.differences(world(stack, "rel-bi")) == []
    return text


def test_wrong_admin_user_is_refused(shared: ProjectStack, baseline: World) -> None:
    bad = good_config()
    bad["postgres-apps:postgres"]["adminUser"] = "rel_nobody"
    text = _refused_by_a_plain_up(shared, baseline, bad)
    assert 'password authentication failed for user "rel_nobody"' in text, text[-3000:]
    assert "postgres-apps:postgres.adminUser" in text


def test_wrong_admin_password_is_refused(shared: ProjectStack, baseline: World) -> None:
    wrong = "rel-wrong-Adm1n-pw-" + secrets.token_hex(6)
    text = _refused_by_a_plain_up(shared, baseline, good_config(), wrong)
    assert 'password authentication failed for user "postgres"' in text
    assert "the config secret postgres-apps:adminPassword" in text  # where the password came from
    assert wrong not in text and wrong[-12:] not in text


def test_wrong_admin_password_does_not_fail_a_preview(
    shared: ProjectStack, baseline: World
) -> None:
    """By design: `pulumi preview` (the pull-request workflow) may run where the admin endpoint
    is not reachable, so it runs no pre-flight; its one read for the unmanaged report says "not
    checked" (postgres_apps/inventory.py) instead of failing; the `up` then refuses (test above)."""
    shared.write_config(good_config())
    shared.stack.set_config(
        "postgres-apps:adminPassword",
        auto.ConfigValue(value="rel-wrong-" + secrets.token_hex(8), secret=True),
    )
    try:
        result = shared.stack.preview(on_output=print, color="never")
    finally:
        shared.stack.remove_config("postgres-apps:adminPassword")
    # the engine's diagnostics go to stdout or stderr depending on the display (pulumi/pulumi#20632)
    shown = f"{result.stdout}\n{result.stderr}"
    assert "admin pre-flight" not in shown
    assert f"{NOT_CHECKED_PREFIX} (the preview could not read " in shown, shown[-3000:]
    risky = {auto.OpType.CREATE, auto.OpType.DELETE, auto.OpType.REPLACE}
    assert not risky & set(result.change_summary), result.change_summary
    assert baseline.differences(world(shared, "rel-bi")) == []


def test_non_superuser_admin_is_refused(shared: ProjectStack) -> None:
    password = "rel-Plain-" + secrets.token_hex(8)
    admin_exec(f"CREATE ROLE rel_bi_notsuper LOGIN CREATEDB CREATEROLE PASSWORD '{password}'")
    # The server hardening leaves PUBLIC no CONNECT on `postgres`: an admin role made for
    # Pulumi gets it explicitly (without it the pre-flight stops earlier, at the login).
    admin_exec("GRANT CONNECT ON DATABASE postgres TO rel_bi_notsuper")
    try:
        before = world(shared, "rel-bi")
        bad = good_config()
        bad["postgres-apps:postgres"]["adminUser"] = "rel_bi_notsuper"
        text = _refused_by_a_plain_up(shared, before, bad, password)
        assert 'user "rel_bi_notsuper" is not a superuser' in text, text[-3000:]
        assert "postgres-apps:postgres.adminUser" in text
        assert password not in text
    finally:
        admin_exec("DROP OWNED BY rel_bi_notsuper")  # also revokes its CONNECT on postgres
        admin_exec("DROP ROLE IF EXISTS rel_bi_notsuper")


def _over_budget_config() -> dict[str, Any]:
    """The deployed app with a connection limit no local server allows (`localenv/images/build.sh`
    starts PostgreSQL with the default max_connections 100): the only change from the deployed
    config, an update of the role's CONNECTION LIMIT that the pre-flight refuses first."""
    cfg = good_config()
    cfg["postgres-apps:apps"] = [{**GOOD_APP, "connectionLimit": MAX_CONNECTION_LIMIT}]
    return cfg


def _server_allows() -> tuple[int, str]:
    """Non-superuser connections of the local server and the subtraction, from its settings."""
    (row,) = query(
        "SELECT current_setting('max_connections')::int, "
        "current_setting('superuser_reserved_connections')::int, "
        "current_setting('reserved_connections', true)::int"
    )
    max_conn, su_reserved, reserved = row
    text = f"max_connections {max_conn} - superuser_reserved_connections {su_reserved}"
    if reserved is not None:
        text += f" - reserved_connections {reserved}"
    return max_conn - su_reserved - (reserved or 0), text


def test_an_over_budget_stack_is_refused_by_a_plain_up(
    shared: ProjectStack, baseline: World
) -> None:
    """Issue 16: the apps' connection limits must all fit the server's `max_connections`."""
    available, subtraction = _server_allows()
    assert available < MAX_CONNECTION_LIMIT, available  # the case is over budget on this server
    text = _refused_by_a_plain_up(shared, baseline, _over_budget_config())
    assert (
        f"connection budget exceeded: the apps' connection limits add up to "
        f"{MAX_CONNECTION_LIMIT} (rel-bi-one {MAX_CONNECTION_LIMIT}) but PostgreSQL at "
    ) in text, text[-3000:]
    assert f"allows {available} non-superuser connections ({subtraction}" in text
    assert f"{MAX_CONNECTION_LIMIT - available} too many" in text
    assert "postgres-apps:apps[0].connectionLimit" in text
    assert BUDGET_RUNBOOK_SECTION in text
    # the role keeps its limit (`_refused_by_a_plain_up` compares state, roles with rolconnlimit,
    # databases and the cluster with the baseline)
    assert baseline.roles["rel_bi_one"] == world(shared, "rel-bi").roles["rel_bi_one"]


def test_an_over_budget_stack_previews_its_budget_without_the_preflight(
    shared: ProjectStack, baseline: World
) -> None:
    """A preview runs no pre-flight (its one connection is the unmanaged report's read): it shows
    the apps' side of the budget (an info line; the stack output `connectionBudget` is pinned by
    the unit tier) and leaves the refusal to `up`."""
    shared.write_config(_over_budget_config())
    try:
        result = shared.stack.preview(on_output=print, color="never")
    finally:
        shared.write_config(good_config())
    # the engine's diagnostics go to stdout or stderr depending on the display (pulumi/pulumi#20632)
    shown = f"{result.stdout}\n{result.stderr}"
    assert "connection budget exceeded" not in shown
    assert (
        f"connection budget: the apps' connection limits add up to {MAX_CONNECTION_LIMIT} "
        f"(rel-bi-one {MAX_CONNECTION_LIMIT}); the server's limit is checked by `pulumi up`"
    ) in shown, shown[-3000:]
    assert baseline.differences(world(shared, "rel-bi")) == []


def test_unmanaged_role_with_the_apps_name_is_not_adopted(shared: ProjectStack) -> None:
    """A role created by hand is reported, never taken over (password, attributes unchanged)."""
    admin_exec(
        "CREATE ROLE rel_bi_squat LOGIN PASSWORD 'rel-squatter-pw-1234567890' CONNECTION LIMIT 3"
    )
    # an unmanaged role that may log in somewhere (PUBLIC has no CONNECT on `postgres` here)
    admin_exec("GRANT CONNECT ON DATABASE postgres TO rel_bi_squat")
    squat_sql = "SELECT rolpassword, rolconnlimit, rolsuper FROM pg_authid WHERE rolname = %s"
    squat_before = query(squat_sql, "rel_bi_squat")
    before = world(shared, "rel-bi")
    cfg = good_config()
    cfg["postgres-apps:apps"] = [dict(GOOD_APP), {"name": "rel-bi-squat", "deletion": "drop"}]
    shared.write_config(cfg)
    try:
        with pytest.raises(auto.CommandError) as err:
            shared.up()
    finally:
        shared.write_config(good_config())
    text = str(err.value)
    # PostgreSQL's error as the (stand-in) postgresql plugin reports it
    assert 'ERROR: role "rel_bi_squat" already exists' in text, text[-3000:]
    after = world(shared, "rel-bi")
    # the role is exactly as it was; no database, no Secret for it
    assert query(squat_sql, "rel_bi_squat") == squat_before
    assert login_error("rel_bi_squat", "rel-squatter-pw-1234567890", "postgres") is None
    assert not database_exists("rel_bi_squat")
    assert (
        kubectl(
            "get", "secret", "-n", NAMESPACE, "rel-bi-squat-db-credentials", check=False
        ).returncode
        != 0
    )
    assert before.roles == after.roles and before.databases == after.databases
    assert before.cluster == after.cluster
    # state: at most the new app's generated password (and its component) were recorded
    new_urns = set(after.state) - set(before.state)
    assert all("rel-bi-squat" in urn for urn in new_urns), new_urns
    assert not any(
        t in urn for urn in new_urns for t in ("postgresql:index/role", "postgresql:index/database")
    ), new_urns
    # converges once the app is gone again
    shared.up()
    assert set(state_resources(shared)) == set(before.state)
    admin_exec("DROP OWNED BY rel_bi_squat")  # also revokes its CONNECT on postgres
    admin_exec("DROP ROLE rel_bi_squat")


def test_unmanaged_database_with_the_apps_name_is_not_adopted(shared: ProjectStack) -> None:
    admin_exec("CREATE ROLE rel_bi_dbsquat_owner")
    admin_exec("CREATE DATABASE rel_bi_dbsquat OWNER rel_bi_dbsquat_owner")
    try:
        cfg = good_config()
        cfg["postgres-apps:apps"] = [dict(GOOD_APP), {"name": "rel-bi-dbsquat", "deletion": "drop"}]
        shared.write_config(cfg)
        try:
            with pytest.raises(auto.CommandError) as err:
                shared.up()
        finally:
            shared.write_config(good_config())
        text = str(err.value)
        assert 'database "rel_bi_dbsquat" already exists' in text, text[-3000:]
        owner = query(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'rel_bi_dbsquat'"
        )
        assert owner == [("rel_bi_dbsquat_owner",)]
        shared.up()  # the app is gone again: its role (opted into drop) is dropped
        assert not role_exists("rel_bi_dbsquat")
    finally:
        admin_exec("DROP DATABASE IF EXISTS rel_bi_dbsquat")
        admin_exec("DROP ROLE IF EXISTS rel_bi_dbsquat_owner")
        admin_exec("DROP ROLE IF EXISTS rel_bi_dbsquat")


def test_a_namespace_that_does_not_exist_is_created_restricted(shared: ProjectStack) -> None:
    """Not an error by design: a per-app namespace is created (and labelled) by the program."""
    kubectl("delete", "namespace", "rel-bi-fresh", "--ignore-not-found", "--wait=true", check=False)
    assert kubectl("get", "namespace", "rel-bi-fresh", check=False).returncode != 0
    cfg = good_config()
    cfg["postgres-apps:apps"] = [
        dict(GOOD_APP),
        {"name": "rel-bi-fresh", "namespace": "rel-bi-fresh", "deletion": "drop"},
    ]
    shared.write_config(cfg)
    try:
        shared.up()
        labels = kubectl(
            "get", "namespace", "rel-bi-fresh", "-o", "jsonpath={.metadata.labels}"
        ).stdout
        assert '"pod-security.kubernetes.io/enforce":"restricted"' in labels
        assert (
            kubectl("get", "secret", "-n", "rel-bi-fresh", "rel-bi-fresh-db-credentials").returncode
            == 0
        )
    finally:
        shared.write_config(good_config())
        shared.up()
    assert not role_exists("rel_bi_fresh")
