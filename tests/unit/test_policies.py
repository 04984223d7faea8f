"""The policy pack: every validator with passing and failing resources, exact messages.

The args objects are the ones CrossGuard builds (props wrapped in its unknown-checking proxy, the
same sentinels the engine sends for values not known during preview). The last tests start the
pack itself (`policies/__main__.py`) and talk to it over the analyzer's gRPC interface, as the
engine does.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.protobuf import empty_pb2, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
sys.path.insert(0, str(ROOT))

from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (  # noqa: E402
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_STRING_VALUE,
    unknown_checking_proxy,
)

from policies import postgres_apps_policies as pol  # noqa: E402
from tests.unit.conftest import (  # noqa: E402
    ADMIN_PASSWORD,
    THREE_APPS,
    ProgramMocks,
    Run,
    run_program,
    unwrap,
)

STACK = "urn:pulumi:dev::postgres-apps::"

Violations = list[tuple[str, str | None]]


def urn_of(type_: str, name: str, parent: str | None = None) -> str:
    qualified = f"{parent}${type_}" if parent else type_
    return f"{STACK}{qualified}::{name}"


def options(
    *,
    protect: bool = False,
    delete_before_replace: bool | None = None,
    ignore: list[str] | None = None,
) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect, ignore or [], delete_before_replace, [], PolicyCustomTimeouts(0, 0, 0), [], None
    )


def resource_args(
    type_: str,
    props: Mapping[str, Any],
    *,
    name: str = "res",
    urn: str | None = None,
    config: Mapping[str, Any] | None = None,
    **opts: Any,
) -> ResourceValidationArgs:
    return ResourceValidationArgs(
        type_,
        unknown_checking_proxy(dict(props)),
        urn or urn_of(type_, name),
        name,
        options(**opts),
        None,
        config,
    )


def run(validator: Callable[[Any, Any], None], args: Any) -> Violations:
    found: Violations = []
    validator(args, lambda message, urn=None: found.append((message, urn)))
    return found


def messages(validator: Callable[[Any, Any], None], args: Any) -> list[str]:
    return [message for message, _ in run(validator, args)]


def stack_resource(
    type_: str,
    name: str,
    props: Mapping[str, Any],
    *,
    provider: PolicyProviderResource | None = None,
    property_dependencies: dict[str, list[PolicyResource]] | None = None,
    parent: str | None = None,
) -> PolicyResource:
    return PolicyResource(
        type_,
        unknown_checking_proxy(dict(props)),
        urn_of(type_, name, parent),
        name,
        options(),
        provider,
        None,
        [],
        property_dependencies or {},
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- app roles -----------------------------------------------------------------------------------

GOOD_ROLE: dict[str, Any] = {
    "name": "n8n",
    "login": True,
    "superuser": False,
    "createRole": False,
    "createDatabase": False,
    "replication": False,
    "bypassRowLevelSecurity": False,
    "connectionLimit": 20,
    "password": "app-password-not-the-admin-one",
}


def role(**changes: Any) -> dict[str, Any]:
    props = {**GOOD_ROLE, **changes}
    return {k: v for k, v in props.items() if v is not None}


def test_least_privilege_role_passes() -> None:
    assert messages(pol.validate_app_role, resource_args(pol.ROLE_TYPE, role())) == []


def test_attributes_left_at_provider_defaults_pass() -> None:
    # The provider's defaults are NOSUPERUSER … NOBYPASSRLS: absent means false.
    props = {"name": "n8n", "login": True, "connectionLimit": 5}
    assert messages(pol.validate_app_role, resource_args(pol.ROLE_TYPE, props)) == []


@pytest.mark.parametrize(
    ("prop", "keyword"),
    [
        ("superuser", "SUPERUSER"),
        ("createRole", "CREATEROLE"),
        ("createDatabase", "CREATEDB"),
        ("replication", "REPLICATION"),
        ("bypassRowLevelSecurity", "BYPASSRLS"),
    ],
)
def test_each_forbidden_attribute_is_a_violation(prop: str, keyword: str) -> None:
    args = resource_args(pol.ROLE_TYPE, role(**{prop: True}))
    assert messages(pol.validate_app_role, args) == [
        f"role 'n8n' has {keyword}; app roles must be NO{keyword}"
    ]


def test_all_violations_of_one_role_are_reported_together() -> None:
    args = resource_args(
        pol.ROLE_TYPE, role(superuser=True, createDatabase=True, connectionLimit=None)
    )
    assert messages(pol.validate_app_role, args) == [
        "role 'n8n' has SUPERUSER; app roles must be NOSUPERUSER",
        "role 'n8n' has CREATEDB; app roles must be NOCREATEDB",
        "role 'n8n' has no connection limit (connectionLimit unset or -1); set it to 1..100",
    ]


@pytest.mark.parametrize("limit", [None, -1])
def test_unlimited_connections_are_a_violation(limit: int | None) -> None:
    args = resource_args(pol.ROLE_TYPE, role(connectionLimit=limit))
    assert messages(pol.validate_app_role, args) == [
        "role 'n8n' has no connection limit (connectionLimit unset or -1); set it to 1..100"
    ]


def test_connection_limit_bounds_are_configurable() -> None:
    # Policy config arrives through protobuf Struct: numbers are floats.
    config = {"maxConnectionLimit": 50.0}
    at_max = resource_args(pol.ROLE_TYPE, role(connectionLimit=50.0), config=config)
    assert messages(pol.validate_app_role, at_max) == []
    over = resource_args(pol.ROLE_TYPE, role(connectionLimit=51.0), config=config)
    assert messages(pol.validate_app_role, over) == [
        "role 'n8n' has connectionLimit 51; it must be between 1 and 50"
    ]
    zero = resource_args(pol.ROLE_TYPE, role(connectionLimit=0))
    assert messages(pol.validate_app_role, zero) == [
        "role 'n8n' has connectionLimit 0; it must be between 1 and 100"
    ]


def test_role_memberships_are_a_violation() -> None:
    args = resource_args(pol.ROLE_TYPE, role(roles=["pg_write_all_data", "pg_read_all_data"]))
    assert messages(pol.validate_app_role, args) == [
        "role 'n8n' is a member of pg_read_all_data, pg_write_all_data; "
        "app roles must not be granted other roles"
    ]


def test_unknown_connection_limit_fails_closed() -> None:
    args = resource_args(pol.ROLE_TYPE, role(connectionLimit=UNKNOWN_NUMBER_VALUE))
    assert messages(pol.validate_app_role, args) == [
        "role 'n8n': connectionLimit is not known during preview; set it to 1..100"
    ]


def test_unknown_role_name_falls_back_to_the_resource_name() -> None:
    args = resource_args(
        pol.ROLE_TYPE, role(name=UNKNOWN_STRING_VALUE, superuser=True), name="n8n-role"
    )
    assert messages(pol.validate_app_role, args) == [
        "role 'n8n-role' has SUPERUSER; app roles must be NOSUPERUSER"
    ]


def test_exempt_roles_and_other_types_are_not_checked() -> None:
    exempt = resource_args(
        pol.ROLE_TYPE, role(name="migrator", createRole=True), config={"exemptRoles": ["migrator"]}
    )
    assert messages(pol.validate_app_role, exempt) == []
    other = resource_args(pol.DATABASE_TYPE, {"name": "n8n", "superuser": True})
    assert messages(pol.validate_app_role, other) == []


# --- databases -----------------------------------------------------------------------------------


def database_args(name: str = "n8n", **kwargs: Any) -> ResourceValidationArgs:
    return resource_args(
        pol.DATABASE_TYPE, {"name": name, "owner": name}, name=f"{name}-database", **kwargs
    )


def test_protected_database_passes() -> None:
    assert messages(pol.validate_database_protected, database_args(protect=True)) == []


def test_unprotected_database_is_a_violation() -> None:
    assert messages(pol.validate_database_protected, database_args(protect=False)) == [
        "database 'n8n' is not protected: removing its app would DROP DATABASE 'n8n'. "
        "Keep protect=True, or opt the app out (`deletion: drop` or `retain` in the stack config) "
        "and list it in this policy's unprotectedApps config"
    ]


def test_unprotected_apps_accepts_the_app_name_of_an_unprotected_database() -> None:
    config = {"unprotectedApps": ["scratch-app"]}
    allowed = database_args("scratch_app", protect=False, config=config)
    assert messages(pol.validate_database_protected, allowed) == []
    other = database_args("n8n", protect=False, config=config)
    assert len(messages(pol.validate_database_protected, other)) == 1


def test_delete_before_replace_on_an_unprotected_database_is_a_violation() -> None:
    args = database_args(protect=False, delete_before_replace=True)
    assert messages(pol.validate_database_no_destructive_replace, args) == [
        "database 'n8n' is unprotected and sets deleteBeforeReplace: a replacement would DROP it "
        "before creating the new one. Remove deleteBeforeReplace (the replacement then fails on "
        "the existing name), keep protect=True, or list the app in this policy's allowReplace "
        "config"
    ]
    allowed = database_args(
        protect=False, delete_before_replace=True, config={"allowReplace": ["n8n"]}
    )
    assert messages(pol.validate_database_no_destructive_replace, allowed) == []


def test_delete_before_replace_on_a_protected_database_passes() -> None:
    # The engine refuses to replace a protected resource at all.
    args = database_args(protect=True, delete_before_replace=True)
    assert messages(pol.validate_database_no_destructive_replace, args) == []


def test_ignoring_owner_changes_is_a_violation() -> None:
    args = database_args(protect=True, ignore=["owner", "template"])
    assert messages(pol.validate_database_no_destructive_replace, args) == [
        "database 'n8n' ignores changes to owner: ownership drift would go unnoticed"
    ]


def test_default_replace_options_pass() -> None:
    args = database_args(protect=False, delete_before_replace=None)
    assert messages(pol.validate_database_no_destructive_replace, args) == []


# --- PUBLIC revoke (stack) -----------------------------------------------------------------------


def database(name: str, owner: str | None = None) -> PolicyResource:
    return stack_resource(
        pol.DATABASE_TYPE,
        f"{name}-database",
        {"name": name, "owner": owner or name},
        parent=pol.APP_DATABASE_COMPONENT,
    )


def grant(
    name: str,
    role_name: str,
    db: str,
    privileges: list[str] | str,
    *,
    on: PolicyResource | None = None,
    object_type: str = "database",
) -> PolicyResource:
    return stack_resource(
        pol.GRANT_TYPE,
        name,
        {"role": role_name, "database": db, "objectType": object_type, "privileges": privileges},
        property_dependencies={"database": [on]} if on is not None else None,
        parent=pol.APP_DATABASE_COMPONENT,
    )


def stack_violations(
    validator: Callable[[Any, Any], None],
    resources: list[PolicyResource],
    config: Mapping[str, Any] | None = None,
) -> Violations:
    return run(validator, StackValidationArgs(resources, config))


def test_database_with_public_revoke_passes() -> None:
    db = database("n8n")
    resources = [db, grant("n8n-revoke-public", "public", "n8n", [])]
    assert stack_violations(pol.validate_public_connect_revoked, resources) == []


def test_database_without_public_revoke_is_a_violation() -> None:
    n8n, paperless = database("n8n"), database("paperless")
    resources = [n8n, paperless, grant("n8n-revoke-public", "public", "n8n", [])]
    assert stack_violations(pol.validate_public_connect_revoked, resources) == [
        (
            "database 'paperless' has no Grant revoking CONNECT and TEMPORARY from PUBLIC "
            '(role "public", objectType "database", privileges []): every role in the cluster '
            "can connect to it",
            paperless.urn,
        )
    ]


def test_public_grant_with_privileges_is_a_violation() -> None:
    db = database("n8n")
    bad = grant("n8n-public", "PUBLIC", "n8n", ["TEMPORARY", "CONNECT"])
    assert stack_violations(pol.validate_public_connect_revoked, [db, bad]) == [
        (
            "PUBLIC is granted CONNECT, TEMPORARY on database 'n8n': every role in the cluster "
            "could use it; PUBLIC's privileges must be []",
            bad.urn,
        ),
        (
            "database 'n8n' has no Grant revoking CONNECT and TEMPORARY from PUBLIC "
            '(role "public", objectType "database", privileges []): every role in the cluster '
            "can connect to it",
            db.urn,
        ),
    ]


def test_revoke_on_an_unknown_database_name_matches_by_property_dependency() -> None:
    # Preview of a new app: the Grant's `database` is the Database's output, not known yet.
    db = database("n8n")
    revoke = grant("n8n-revoke-public", "public", UNKNOWN_STRING_VALUE, [], on=db)
    assert stack_violations(pol.validate_public_connect_revoked, [db, revoke]) == []


def test_a_schema_grant_to_public_is_not_the_database_revoke() -> None:
    db = database("n8n")
    schema = grant("n8n-schema", "public", "n8n", [], object_type="schema")
    assert [m for m, _ in stack_violations(pol.validate_public_connect_revoked, [db, schema])] == [
        "database 'n8n' has no Grant revoking CONNECT and TEMPORARY from PUBLIC "
        '(role "public", objectType "database", privileges []): every role in the cluster '
        "can connect to it"
    ]


# --- cross-app grants (stack) --------------------------------------------------------------------


def app_role(name: str) -> PolicyResource:
    return stack_resource(pol.ROLE_TYPE, f"{name}-role", {"name": name, "connectionLimit": 20})


def test_grants_in_the_own_database_pass() -> None:
    resources = [
        app_role("n8n"),
        database("n8n"),
        grant("n8n-schema", "n8n", "n8n", ["CREATE", "USAGE"], object_type="schema"),
        grant("n8n-revoke-public", "public", "n8n", []),
    ]
    assert stack_violations(pol.validate_no_cross_app_grants, resources) == []


def test_grant_on_another_apps_database_is_a_violation() -> None:
    cross = grant("n8n-on-paperless", "n8n", "paperless", ["CONNECT"])
    unmanaged = grant("n8n-on-legacy", "n8n", "legacy", ["CONNECT"])
    resources = [
        app_role("n8n"),
        app_role("paperless"),
        database("n8n"),
        database("paperless"),
        cross,
        unmanaged,
    ]
    assert stack_violations(pol.validate_no_cross_app_grants, resources) == [
        (
            "role 'n8n' is granted privileges on database 'paperless', which belongs to "
            "'paperless': app roles get no grants on other apps' databases",
            cross.urn,
        ),
        (
            "role 'n8n' is granted privileges on database 'legacy', which no app of this stack "
            "owns: app roles get no grants on other databases",
            unmanaged.urn,
        ),
    ]


def test_role_membership_granted_to_an_app_role_is_a_violation() -> None:
    membership = stack_resource(
        pol.GRANT_ROLE_TYPE, "n8n-admin", {"role": "n8n", "grantRole": "pg_read_all_data"}
    )
    unrelated = stack_resource(
        pol.GRANT_ROLE_TYPE, "ops", {"role": "ops_team", "grantRole": "pg_monitor"}
    )
    resources = [app_role("n8n"), database("n8n"), membership, unrelated]
    assert stack_violations(pol.validate_no_cross_app_grants, resources) == [
        (
            "role 'n8n' is made a member of 'pg_read_all_data': app roles are not granted other "
            "roles",
            membership.urn,
        )
    ]


def test_privileges_in_an_app_database_go_only_to_its_owner() -> None:
    # An unmanaged role, another app's role (named, or known only by its dependency at preview)
    # and an ALL on a schema of n8n's database: each is a violation. The owner's own grant and a
    # revoke (privileges []) from anyone pass.
    n8n, paperless = app_role("n8n"), app_role("paperless")
    n8n_db = database("n8n")
    unmanaged = grant("ops-on-n8n", "ops_team", "n8n", ["CONNECT"])
    other_app = grant("paperless-on-n8n", "paperless", "n8n", ["ALL"], object_type="schema")
    by_dependency = stack_resource(
        pol.GRANT_TYPE,
        "pending-on-n8n",
        {
            "role": UNKNOWN_STRING_VALUE,
            "database": UNKNOWN_STRING_VALUE,
            "objectType": "database",
            "privileges": ["CONNECT"],
        },
        property_dependencies={"role": [paperless], "database": [n8n_db]},
    )
    own = grant("n8n-schema", "n8n", "n8n", ["USAGE"], object_type="schema")
    revoke = grant("ops-revoke", "ops_team", "n8n", [])
    resources = [n8n, paperless, n8n_db, unmanaged, other_app, by_dependency, own, revoke]
    assert stack_violations(pol.validate_no_cross_app_grants, resources) == [
        (
            "role 'ops_team' is granted privileges on app database 'n8n', which belongs to "
            "'n8n': only the app's own role may hold privileges in its database",
            unmanaged.urn,
        ),
        (
            "role 'paperless' is granted privileges on database 'n8n', which belongs to 'n8n': "
            "app roles get no grants on other apps' databases",
            other_app.urn,
        ),
        (
            "role 'paperless' is granted privileges on database 'n8n', which belongs to 'n8n': "
            "app roles get no grants on other apps' databases",
            by_dependency.urn,
        ),
    ]


def test_an_unresolvable_grantee_in_an_app_database_fails_closed() -> None:
    n8n_db = database("n8n")
    pending = grant("pending", UNKNOWN_STRING_VALUE, "n8n", ["CONNECT"])
    assert stack_violations(
        pol.validate_no_cross_app_grants, [app_role("n8n"), n8n_db, pending]
    ) == [
        (
            "pending: the role granted privileges on app database 'n8n' is not known during "
            "preview; only the database's own role may hold privileges there",
            pending.urn,
        )
    ]


def test_membership_in_an_app_role_is_a_violation() -> None:
    n8n = app_role("n8n")
    into_app = stack_resource(
        pol.GRANT_ROLE_TYPE, "ops-as-n8n", {"role": "ops_team", "grantRole": "n8n"}
    )
    by_dependency = stack_resource(
        pol.GRANT_ROLE_TYPE,
        "pending-as-n8n",
        {"role": "auditor", "grantRole": UNKNOWN_STRING_VALUE},
        property_dependencies={"grantRole": [n8n]},
    )
    unknown = stack_resource(
        pol.GRANT_ROLE_TYPE, "unknown", {"role": UNKNOWN_STRING_VALUE, "grantRole": "pg_monitor"}
    )
    resources = [n8n, database("n8n"), into_app, by_dependency, unknown]
    assert stack_violations(pol.validate_no_cross_app_grants, resources) == [
        (
            "role 'ops_team' is made a member of app role 'n8n': nobody may act as an app's role "
            "(or own its objects) through membership",
            into_app.urn,
        ),
        (
            "role 'auditor' is made a member of app role 'n8n': nobody may act as an app's role "
            "(or own its objects) through membership",
            by_dependency.urn,
        ),
        (
            "unknown: a role membership whose roles are not known during preview; app roles must "
            "not be part of any membership",
            unknown.urn,
        ),
    ]


def privilege_args(type_: str, props: Mapping[str, Any], name: str = "g") -> ResourceValidationArgs:
    return resource_args(type_, props, name=name)


def test_public_privileges_below_the_database_are_a_violation() -> None:
    schema = privilege_args(
        pol.GRANT_TYPE,
        {
            "role": "PUBLIC",
            "database": "n8n",
            "schema": "public",
            "objectType": "schema",
            "privileges": ["USAGE", "CREATE"],
        },
        "n8n-public-schema",
    )
    assert messages(pol.validate_no_public_privileges, schema) == [
        "Grant n8n-public-schema gives PUBLIC CREATE, USAGE on schema 'public' of database "
        "'n8n': every role in the cluster would hold them; grant to the app's own role, PUBLIC's "
        "privileges must be []"
    ]
    defaults = privilege_args(
        pol.DEFAULT_PRIVILEGES_TYPE,
        {
            "role": "public",
            "owner": "n8n",
            "database": "n8n",
            "schema": "public",
            "objectType": "table",
            "privileges": ["SELECT"],
        },
        "n8n-defaults",
    )
    assert messages(pol.validate_no_public_privileges, defaults) == [
        "default privileges n8n-defaults give PUBLIC SELECT on every future table in schema "
        "'public' of database 'n8n': every role in the cluster would hold them; grant to the "
        "app's own role, PUBLIC's privileges must be []"
    ]
    revoke = privilege_args(
        pol.GRANT_TYPE,
        {"role": "public", "database": "n8n", "objectType": "schema", "privileges": []},
    )
    database_level = privilege_args(
        pol.GRANT_TYPE,
        {"role": "public", "database": "n8n", "objectType": "database", "privileges": ["CONNECT"]},
    )
    own = privilege_args(
        pol.GRANT_TYPE,
        {"role": "n8n", "database": "n8n", "objectType": "schema", "privileges": ["USAGE"]},
    )
    tables = privilege_args(
        pol.GRANT_TYPE,
        {
            "role": "public",
            "database": "n8n",
            "schema": "public",
            "objectType": "table",
            "objects": [],
            "privileges": ["SELECT"],
        },
    )
    assert messages(pol.validate_no_public_privileges, tables) == [
        "Grant g gives PUBLIC SELECT on table objects in schema 'public' of database 'n8n': every "
        "role in the cluster would hold them; grant to the app's own role, PUBLIC's privileges "
        "must be []"
    ]
    for passing in (revoke, database_level, own):  # database level: the stack policy's
        assert messages(pol.validate_no_public_privileges, passing) == []


def server_hardening(db: str) -> PolicyResource:
    return stack_resource(
        pol.GRANT_TYPE,
        f"server-hardening-{db}",
        {"role": "public", "database": db, "objectType": "database", "privileges": []},
    )


def pack_violations(
    resources: list[PolicyResource], config: Mapping[str, Mapping[str, Any]] | None = None
) -> list[tuple[str, str]]:
    """Every policy of the pack over these resources (resource policies on each of them)."""
    found: list[tuple[str, str]] = []
    for policy in pol.build_policies():

        def report(message: str, urn: str | None = None, name: str = policy.name) -> None:
            found.append((name, message))

        policy_config = (config or {}).get(policy.name)
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(
                    r.resource_type, r.props, r.urn, r.name, r.opts, r.provider, policy_config
                )
                policy.validate(args, report)
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(resources, policy_config), report)
    return found


def test_revoking_from_public_on_the_system_databases_passes_the_pack() -> None:
    assert pack_violations([server_hardening(db) for db in pol.SYSTEM_DATABASES]) == []


def test_any_grant_in_a_system_database_is_a_violation_of_one_policy() -> None:
    to_app = grant("n8n-on-postgres", "n8n", "postgres", ["CONNECT"])
    to_public = grant("public-on-template1", "public", "template1", ["TEMPORARY", "CONNECT"])
    schema = grant("ops-in-postgres", "ops_team", "postgres", ["USAGE"], object_type="schema")
    resources = [app_role("n8n"), database("n8n"), grant("n8n-revoke-public", "public", "n8n", [])]
    found = pack_violations(
        [*resources, to_app, to_public, schema],
        {"database-protected": {"unprotectedApps": ["n8n"]}},  # the helper's databases are not
    )
    assert found == [
        (
            "system-databases-no-grants",
            "n8n-on-postgres grants 'n8n' CONNECT in database 'postgres': postgres, template0, "
            "template1 are the server's own databases; nobody is granted anything there (only "
            "revokes, privileges [])",
        ),
        (
            "system-databases-no-grants",
            "public-on-template1 grants 'public' CONNECT, TEMPORARY in database 'template1': "
            "postgres, template0, template1 are the server's own databases; nobody is granted "
            "anything there (only revokes, privileges [])",
        ),
        (
            "system-databases-no-grants",
            "ops-in-postgres grants 'ops_team' USAGE in database 'postgres': postgres, template0, "
            "template1 are the server's own databases; nobody is granted anything there (only "
            "revokes, privileges [])",
        ),
    ]


@pytest.mark.parametrize(
    ("object_type", "privileges", "expected"),
    [
        ("database", ["CONNECT", "TEMPORARY", "CREATE", "ALL"], []),
        (
            "table",
            ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"],
            [],
        ),
        ("column", ["SELECT", "REFERENCES"], []),
        (
            "database",
            ["CONNECT; DROP DATABASE n8n; --"],
            [
                "g: privilege 'CONNECT; DROP DATABASE n8n; --' is not a database privilege "
                "(allowed: ALL, CREATE, CONNECT, TEMPORARY)"
            ],
        ),
        (
            "schema",
            ["usage", "SELECT"],
            [
                "g: privilege 'SELECT' is not a schema privilege (allowed: ALL, CREATE, USAGE)",
                "g: privilege 'usage' is not a schema privilege (allowed: ALL, CREATE, USAGE)",
            ],
        ),
        (
            "everything",
            ["ALL"],
            [
                "g: objectType 'everything' is not one of database, table, sequence, schema, "
                "function, procedure, routine, type, foreign_data_wrapper, foreign_server, column"
            ],
        ),
        ("table", UNKNOWN_STRING_VALUE, ["g: privileges are not known during preview"]),
    ],
)
def test_privileges_outside_the_allow_list_are_a_violation(
    object_type: str, privileges: Any, expected: list[str]
) -> None:
    props = {"role": "n8n", "database": "n8n", "objectType": object_type, "privileges": privileges}
    for type_ in (pol.GRANT_TYPE, pol.DEFAULT_PRIVILEGES_TYPE):
        assert messages(pol.validate_grant_privileges_allowed, privilege_args(type_, props)) == (
            expected
        )


def test_the_allow_list_mirrors_the_provider() -> None:
    # cyrilgdn/terraform-provider-postgresql postgresql/helpers.go `allowedPrivileges`.
    assert pol.ALLOWED_PRIVILEGES["sequence"] == ("ALL", "USAGE", "SELECT", "UPDATE")
    assert all(p[0] == "ALL" for p in pol.ALLOWED_PRIVILEGES.values())
    assert len(pol.ALLOWED_PRIVILEGES) == 11


def admin_provider(host: Any, sslmode: Any) -> PolicyProviderResource:
    return PolicyProviderResource(
        pol.POSTGRESQL_PROVIDER_TYPE,
        unknown_checking_proxy({"host": host, "port": 5432, "sslmode": sslmode}),
        f"{STACK}{pol.POSTGRESQL_PROVIDER_TYPE}::postgres-admin",
        "postgres-admin",
    )


def tls_violations(host: Any, sslmode: Any, config: Mapping[str, Any] | None = None) -> list[str]:
    provider = admin_provider(host, sslmode)
    role_resource = stack_resource(pol.ROLE_TYPE, "n8n-role", {"name": "n8n"}, provider=provider)
    return [
        m for m, _ in stack_violations(pol.validate_admin_connection_tls, [role_resource], config)
    ]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"]
)
def test_plain_text_admin_connection_to_loopback_passes(host: str) -> None:
    assert tls_violations(host, "disable") == []


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_tls_admin_connection_passes(sslmode: str) -> None:
    assert tls_violations("postgres-postgresql.data.svc.cluster.local", sslmode) == []


@pytest.mark.parametrize("sslmode", ["disable", "allow", "prefer"])
def test_plain_text_admin_connection_over_the_network_is_a_violation(sslmode: str) -> None:
    assert tls_violations("10.0.0.5", sslmode) == [
        f"postgresql provider 'postgres-admin' connects as admin to 10.0.0.5 with "
        f"sslmode={sslmode}: the admin password and every app password would cross the network "
        "in plain text. Use sslmode=require or verify-full, or a loopback port-forward; or set "
        "postgres-apps:postgres.allowInsecureAdmin: true in the stack config and list "
        "'10.0.0.5' in this policy's allowInsecureAdminHosts config"
    ]
    assert tls_violations("10.0.0.5", sslmode, {"allowInsecureAdminHosts": ["10.0.0.5"]}) == []
    assert len(tls_violations("10.0.0.5", sslmode, {"allowInsecureAdminHosts": ["10.0.0.6"]})) == 1


def test_unknown_admin_host_fails_closed() -> None:
    assert tls_violations(UNKNOWN_STRING_VALUE, "disable") == [
        "postgresql provider 'postgres-admin': host or sslmode is not known during preview; the "
        "admin connection must be provably TLS or loopback"
    ]


# --- credentials Secrets -------------------------------------------------------------------------

GOOD_LABELS = {
    "app.kubernetes.io/name": "n8n",
    "app.kubernetes.io/managed-by": "pulumi",
    "app.kubernetes.io/part-of": "postgres-apps",
}


def secret_props(
    name: str = "n8n-db-credentials",
    namespace: str | None = "apps",
    labels: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
    string_data: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(GOOD_LABELS if labels is None else labels)}
    if namespace is not None:
        meta["namespace"] = namespace
    props: dict[str, Any] = {"metadata": meta, "type": "Opaque"}
    if data is not None:
        props["data"] = dict(data)
    if string_data is not None:
        props["stringData"] = dict(string_data)
    return props


def secret_args(props: Mapping[str, Any], **kwargs: Any) -> ResourceValidationArgs:
    return resource_args(pol.SECRET_TYPE, props, name="n8n-secret", **kwargs)


def test_credentials_secret_in_the_apps_namespace_with_labels_passes() -> None:
    args = secret_args(secret_props(data={"password": b64("x"), "DATABASE_URL": b64("y")}))
    assert messages(pol.validate_credentials_secret, args) == []


def test_credentials_secret_outside_the_app_namespaces_is_a_violation() -> None:
    args = secret_args(secret_props(namespace="data"))
    assert messages(pol.validate_credentials_secret, args) == [
        "Secret data/n8n-db-credentials holds database credentials but namespace 'data' is not "
        "an app namespace (apps)"
    ]
    configured = secret_args(
        secret_props(namespace="team-b"), config={"appNamespaces": ["apps", "team-b"]}
    )
    assert messages(pol.validate_credentials_secret, configured) == []


def test_credentials_secret_without_namespace_is_a_violation() -> None:
    args = secret_args(secret_props(namespace=None))
    assert messages(pol.validate_credentials_secret, args) == [
        "Secret n8n-db-credentials holds database credentials but sets no namespace; it must "
        "live in an app namespace (apps)"
    ]


def test_credentials_secret_missing_or_wrong_labels_is_a_violation() -> None:
    labels = {"app.kubernetes.io/name": "paperless", "app.kubernetes.io/managed-by": "helm"}
    args = secret_args(secret_props(labels=labels))
    assert messages(pol.validate_credentials_secret, args) == [
        "Secret apps/n8n-db-credentials must carry the labels app.kubernetes.io/name=n8n, "
        "app.kubernetes.io/managed-by=pulumi, app.kubernetes.io/part-of=postgres-apps"
    ]


def test_credentials_secret_that_a_controller_would_copy_elsewhere_is_a_violation() -> None:
    props = secret_props()
    props["metadata"]["annotations"] = {
        "replicator.v1.mittwald.de/replicate-to": "team-b",
        "reloader.stakater.com/match": "true",
    }
    assert messages(pol.validate_credentials_secret, secret_args(props)) == [
        "Secret apps/n8n-db-credentials holds database credentials and has "
        "replicator.v1.mittwald.de/replicate-to: a controller would copy it into other "
        "namespaces, where any pod could mount it"
    ]


def test_the_policy_and_the_config_refuse_the_same_copying_annotations() -> None:
    from postgres_apps.config import COPYING_ANNOTATION_PREFIXES  # noqa: PLC0415

    assert pol.COPYING_ANNOTATION_PREFIXES == COPYING_ANNOTATION_PREFIXES


def test_secret_recognised_by_its_keys_or_its_component() -> None:
    by_keys = secret_args(
        secret_props(name="legacy", namespace="default", labels={}, data={"DATABASE_URL": "eA=="})
    )
    assert messages(pol.validate_credentials_secret, by_keys) == [
        "Secret default/legacy holds database credentials but namespace 'default' is not an app "
        "namespace (apps)",
        "Secret default/legacy must carry the labels app.kubernetes.io/name=<app name>, "
        "app.kubernetes.io/managed-by=pulumi, app.kubernetes.io/part-of=postgres-apps",
    ]
    in_component = resource_args(
        pol.SECRET_TYPE,
        secret_props(name="odd", namespace="kube-system"),
        urn=urn_of(pol.SECRET_TYPE, "odd", pol.APP_DATABASE_COMPONENT),
    )
    assert messages(pol.validate_credentials_secret, in_component) == [
        "Secret kube-system/odd holds database credentials but namespace 'kube-system' is not an "
        "app namespace (apps)"
    ]


def test_unrelated_secrets_are_not_checked() -> None:
    tls = secret_args(
        secret_props(name="ingress-tls", namespace="default", labels={}, data={"tls.crt": "eA=="})
    )
    assert messages(pol.validate_credentials_secret, tls) == []


def test_managing_the_admin_secret_is_a_violation() -> None:
    args = secret_args(
        secret_props(
            name="postgres-postgresql",
            namespace="data",
            labels={},
            data={"postgres-password": b64(ADMIN_PASSWORD)},
        )
    )
    assert messages(pol.validate_admin_secret_read_only, args) == [
        "Secret data/postgres-postgresql is the PostgreSQL admin Secret: this program may only "
        "read it (Secret.get), never create or manage it"
    ]


def test_copying_the_admin_key_is_a_violation() -> None:
    args = secret_args(
        secret_props(name="copy", labels={}, string_data={"postgres-password": ADMIN_PASSWORD})
    )
    assert messages(pol.validate_admin_secret_read_only, args) == [
        "Secret apps/copy has the admin key 'postgres-password': the admin Secret must not be "
        "copied out of data/postgres-postgresql"
    ]


def test_app_secret_is_not_the_admin_secret() -> None:
    args = secret_args(secret_props(data={"password": b64("app")}))
    assert messages(pol.validate_admin_secret_read_only, args) == []


def test_admin_secret_location_is_configurable() -> None:
    config = {"adminSecretNamespace": "db", "adminSecretName": "pg", "adminSecretKey": "pw"}
    args = secret_args(secret_props(name="pg", namespace="db", labels={}), config=config)
    assert messages(pol.validate_admin_secret_read_only, args) == [
        "Secret db/pg is the PostgreSQL admin Secret: this program may only read it "
        "(Secret.get), never create or manage it"
    ]


# --- admin password (stack) ----------------------------------------------------------------------


def postgresql_provider() -> PolicyProviderResource:
    return PolicyProviderResource(
        pol.POSTGRESQL_PROVIDER_TYPE,
        unknown_checking_proxy(
            {"host": "127.0.0.1", "username": "postgres", "password": ADMIN_PASSWORD}
        ),
        f"{STACK}{pol.POSTGRESQL_PROVIDER_TYPE}::admin",
        "admin",
    )


def admin_secret_read() -> PolicyResource:
    return stack_resource(
        pol.SECRET_TYPE,
        "admin-secret",
        secret_props(
            name="postgres-postgresql",
            namespace="data",
            labels={},
            data={"postgres-password": b64(ADMIN_PASSWORD)},
        ),
    )


def app_secret(name: str, password: str) -> PolicyResource:
    uri = f"postgresql://{name}:{password}@postgres-postgresql.data.svc.cluster.local:5432/{name}"
    return stack_resource(
        pol.SECRET_TYPE,
        f"{name}-secret",
        secret_props(
            name=f"{name}-db-credentials",
            labels={**GOOD_LABELS, "app.kubernetes.io/name": name},
            data={"password": b64(password), "uri": b64(uri)},
        ),
    )


def role_with_provider(name: str) -> PolicyResource:
    return stack_resource(
        pol.ROLE_TYPE, f"{name}-role", {"name": name}, provider=postgresql_provider()
    )


def test_admin_password_only_in_the_admin_secret_passes() -> None:
    resources = [
        admin_secret_read(),
        role_with_provider("n8n"),
        app_secret("n8n", "n8n-generated-password-0123456789abcdef"),
        stack_resource(pol.STACK_TYPE, "postgres-apps-dev", {"apps": {"n8n": {"checks": 9}}}),
    ]
    assert stack_violations(pol.validate_admin_password_stays_in_data, resources) == []


def test_admin_password_in_an_app_secret_is_a_violation() -> None:
    leaked = app_secret("n8n", ADMIN_PASSWORD)
    resources = [role_with_provider("n8n"), leaked]
    assert stack_violations(pol.validate_admin_password_stays_in_data, resources) == [
        (
            "Secret apps/n8n-db-credentials contains the PostgreSQL admin password: it must not "
            "leave data/postgres-postgresql",
            leaked.urn,
        )
    ]


def test_admin_password_learned_from_the_read_admin_secret() -> None:
    # No postgresql provider in the stack (e.g. a program that only writes Secrets): the read
    # admin Secret is enough to know the password.
    config_map = stack_resource(
        pol.CONFIG_MAP_TYPE,
        "settings",
        {
            "metadata": {"name": "settings", "namespace": "apps"},
            "data": {"url": f"x:{ADMIN_PASSWORD}@y"},
        },
    )
    resources = [admin_secret_read(), config_map]
    assert stack_violations(pol.validate_admin_password_stays_in_data, resources) == [
        (
            "ConfigMap apps/settings contains the PostgreSQL admin password: it must not leave "
            "data/postgres-postgresql",
            config_map.urn,
        )
    ]


def test_admin_password_url_encoded_in_a_stack_output_is_a_violation() -> None:
    password = "p@ss/w0rd:with&symbols"
    provider = PolicyProviderResource(
        pol.POSTGRESQL_PROVIDER_TYPE,
        unknown_checking_proxy({"password": password}),
        f"{STACK}{pol.POSTGRESQL_PROVIDER_TYPE}::admin",
        "admin",
    )
    role_resource = stack_resource(pol.ROLE_TYPE, "n8n-role", {"name": "n8n"}, provider=provider)
    stack = stack_resource(
        pol.STACK_TYPE,
        "postgres-apps-dev",
        {"adminUri": "postgresql://postgres:p%40ss%2Fw0rd%3Awith%26symbols@127.0.0.1/postgres"},
    )
    assert stack_violations(pol.validate_admin_password_stays_in_data, [role_resource, stack]) == [
        ("stack output 'adminUri' contains the PostgreSQL admin password", stack.urn)
    ]


def test_unknown_values_are_skipped_not_fatal() -> None:
    pending = stack_resource(
        pol.SECRET_TYPE,
        "n8n-secret",
        secret_props(data={"password": UNKNOWN_STRING_VALUE, "uri": UNKNOWN_STRING_VALUE}),
    )
    resources = [role_with_provider("n8n"), pending]
    assert stack_violations(pol.validate_admin_password_stays_in_data, resources) == []


# --- the apps namespace --------------------------------------------------------------------------

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


def namespace_args(
    name: str, labels: Mapping[str, str], *, urn: str | None = None, **kwargs: Any
) -> ResourceValidationArgs:
    return resource_args(
        pol.NAMESPACE_TYPE,
        {"metadata": {"name": name, "labels": dict(labels)}},
        name=name,
        urn=urn,
        **kwargs,
    )


def test_restricted_apps_namespace_passes() -> None:
    args = namespace_args(
        "apps", {**RESTRICTED, "pod-security.kubernetes.io/enforce-version": "latest"}
    )
    assert messages(pol.validate_apps_namespace_pod_security, args) == []


def test_weaker_or_missing_pod_security_is_a_violation() -> None:
    labels = {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    assert messages(pol.validate_apps_namespace_pod_security, namespace_args("apps", labels)) == [
        "namespace 'apps' must enforce Pod Security 'restricted': "
        "pod-security.kubernetes.io/enforce=baseline, pod-security.kubernetes.io/audit=<unset> "
        "(want restricted)"
    ]


def test_required_modes_are_configurable_but_a_set_mode_must_not_be_weaker() -> None:
    config = {"requiredModes": ["enforce"]}
    only_enforce = namespace_args(
        "apps", {"pod-security.kubernetes.io/enforce": "restricted"}, config=config
    )
    assert messages(pol.validate_apps_namespace_pod_security, only_enforce) == []
    privileged_warn = namespace_args(
        "apps",
        {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "privileged",
        },
        config=config,
    )
    assert messages(pol.validate_apps_namespace_pod_security, privileged_warn) == [
        "namespace 'apps' must enforce Pod Security 'restricted': "
        "pod-security.kubernetes.io/warn=privileged (want restricted)"
    ]


def test_namespaces_of_the_apps_namespace_component_are_checked_whatever_their_name() -> None:
    urn = urn_of(pol.NAMESPACE_TYPE, "team-b", pol.APPS_NAMESPACE_COMPONENT)
    args = namespace_args("team-b", {}, urn=urn)
    assert messages(pol.validate_apps_namespace_pod_security, args) == [
        "namespace 'team-b' must enforce Pod Security 'restricted': "
        "pod-security.kubernetes.io/enforce=<unset>, pod-security.kubernetes.io/audit=<unset>, "
        "pod-security.kubernetes.io/warn=<unset> (want restricted)"
    ]


def test_other_namespaces_are_not_checked() -> None:
    assert messages(pol.validate_apps_namespace_pod_security, namespace_args("data", {})) == []


# --- the pack as the engine sees it --------------------------------------------------------------


def test_every_policy_is_mandatory_and_uniquely_named() -> None:
    policies = pol.build_policies()
    names = [p.name for p in policies]
    assert len(names) == len(set(names)) == 13
    assert {p.enforcement_level for p in policies} == {EnforcementLevel.MANDATORY}


def test_importing_the_validators_module_starts_no_server() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import postgres_apps_policies; print('imported')"],
        cwd=POLICIES,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "imported\n"


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    """The pack started as the engine starts it; yields a gRPC Analyzer stub."""

    process = subprocess.Popen(
        [sys.executable, "-u", "__main__.py"],
        cwd=POLICIES,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"policy pack did not print its port: {port!r}"
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_pack_serves_its_policies_as_mandatory(analyzer: Any) -> None:

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "postgres-apps"
    assert sorted(p.name for p in info.policies) == sorted(p.name for p in pol.build_policies())
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}
    schema = {p.name: p.configSchema for p in info.policies}
    assert "maxConnectionLimit" in schema["app-role-least-privilege"].properties
    assert "unprotectedApps" in schema["database-protected"].properties


def test_pack_reports_a_superuser_role_over_grpc(analyzer: Any) -> None:

    properties = struct_pb2.Struct()
    properties.update({**GOOD_ROLE, "superuser": True})
    request = analyzer_pb2.AnalyzeRequest(
        type=pol.ROLE_TYPE,
        properties=properties,
        urn=urn_of(pol.ROLE_TYPE, "n8n-role"),
        name="n8n-role",
        options=analyzer_pb2.AnalyzerResourceOptions(protect=False),
    )
    response = analyzer.Analyze(request)
    assert [(d.policyName, d.message, d.enforcementLevel) for d in response.diagnostics] == [
        (
            "app-role-least-privilege",
            "App roles have no SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, no role "
            "memberships, and a connection limit.\n"
            "role 'n8n' has SUPERUSER; app roles must be NOSUPERUSER",
            analyzer_pb2.MANDATORY,
        )
    ]


def test_pack_reports_a_missing_public_revoke_over_grpc(analyzer: Any) -> None:

    properties = struct_pb2.Struct()
    properties.update({"name": "n8n", "owner": "n8n"})
    db_urn = urn_of(pol.DATABASE_TYPE, "n8n-database")
    request = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=pol.DATABASE_TYPE,
                properties=properties,
                urn=db_urn,
                name="n8n-database",
                options=analyzer_pb2.AnalyzerResourceOptions(protect=True),
            )
        ]
    )
    response = analyzer.AnalyzeStack(request)
    assert [(d.policyName, d.urn) for d in response.diagnostics] == [
        ("database-connect-revoked-from-public", db_urn)
    ]


def test_pack_reports_a_plain_text_admin_connection_over_grpc(analyzer: Any) -> None:
    # The provider arrives as the resource's `provider` (AnalyzerProviderResource), as the engine
    # sends it; the stack policy reads it from there.
    provider_props = struct_pb2.Struct()
    provider_props.update({"host": "10.0.0.5", "port": 5432, "sslmode": "disable"})
    role_props = struct_pb2.Struct()
    role_props.update({"name": "n8n"})
    provider_urn = f"{STACK}{pol.POSTGRESQL_PROVIDER_TYPE}::postgres-admin"
    request = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=pol.ROLE_TYPE,
                properties=role_props,
                urn=urn_of(pol.ROLE_TYPE, "n8n-role"),
                name="n8n-role",
                options=analyzer_pb2.AnalyzerResourceOptions(protect=True),
                provider=analyzer_pb2.AnalyzerProviderResource(
                    type=pol.POSTGRESQL_PROVIDER_TYPE,
                    properties=provider_props,
                    urn=provider_urn,
                    name="postgres-admin",
                ),
            )
        ]
    )
    response = analyzer.AnalyzeStack(request)
    assert [(d.policyName, d.urn) for d in response.diagnostics] == [
        ("admin-connection-tls", provider_urn)
    ]


# --- the pack against the real program -----------------------------------------------------------


def program_resources(run: Run) -> tuple[list[ResourceValidationArgs], list[PolicyResource]]:
    """What the engine would hand the pack for this program run: one ResourceValidationArgs per
    registration (resource policies; reads are not analyzed) and the stack's resources (stack
    policies; reads included, plus the Stack with its outputs)."""
    registrations = run.monitor.registrations
    providers = {
        f"{r.urn}::{r.name}-id": PolicyProviderResource(
            r.type, unknown_checking_proxy(r.plain), r.urn, r.name
        )
        for r in registrations
        if r.type.startswith("pulumi:providers:")
    }
    analyzed: list[ResourceValidationArgs] = []
    stack: list[PolicyResource] = []
    for r in registrations:
        opts = PolicyResourceOptions(
            bool(r.protect),
            [],
            r.delete_before_replace or None,
            [],
            PolicyCustomTimeouts(0, 0, 0),
            [],
            r.parent or None,
        )
        props = unknown_checking_proxy(r.plain)
        provider = providers.get(r.provider)
        if r.read_id is None:
            analyzed.append(ResourceValidationArgs(r.type, props, r.urn, r.name, opts, provider))
        stack.append(PolicyResource(r.type, props, r.urn, r.name, opts, provider, None, [], {}))
    outputs = unknown_checking_proxy(unwrap(run.outputs))
    stack.append(
        PolicyResource(
            pol.STACK_TYPE,
            outputs,
            f"{STACK}{pol.STACK_TYPE}::s",
            "s",
            options(),
            None,
            None,
            [],
            {},
        )
    )
    return analyzed, stack


def run_pack(run: Run, config: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    analyzed, stack = program_resources(run)
    found: list[tuple[str, str]] = []
    for policy in pol.build_policies():

        def report(message: str, urn: str | None = None, name: str = policy.name) -> None:
            found.append((name, message))

        if isinstance(policy, ResourceValidationPolicy):
            for args in analyzed:
                configured = ResourceValidationArgs(
                    args.resource_type,
                    args.props,
                    args.urn,
                    args.name,
                    args.opts,
                    args.provider,
                    config.get(policy.name),
                )
                policy.validate(configured, report)
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(stack, config.get(policy.name)), report)
    return found


@pytest.fixture(scope="module")
def program_run() -> Run:
    return run_program(THREE_APPS, ProgramMocks())


def test_the_program_passes_the_pack_when_its_opt_outs_are_confirmed(program_run: Run) -> None:
    # THREE_APPS: paperless lives in namespace `docs` with `deletion: drop`.
    config = {
        "database-protected": {"unprotectedApps": ["paperless"]},
        "credentials-secret-placement": {"appNamespaces": ["apps", "docs"]},
        "apps-namespace-pod-security": {"appNamespaces": ["apps", "docs"]},
    }
    assert run_pack(program_run, config) == []


def test_the_program_needs_the_policy_config_for_its_opt_outs(program_run: Run) -> None:
    assert run_pack(program_run, {}) == [
        (
            "database-protected",
            "database 'paperless' is not protected: removing its app would DROP DATABASE "
            "'paperless'. Keep protect=True, or opt the app out (`deletion: drop` or `retain` in "
            "the stack config) and list it in this policy's unprotectedApps config",
        ),
        (
            "credentials-secret-placement",
            "Secret docs/paperless-db-credentials holds database credentials but namespace "
            "'docs' is not an app namespace (apps)",
        ),
    ]


def test_the_pack_sees_the_programs_admin_password(program_run: Run) -> None:
    _, stack = program_resources(program_run)
    assert pol.admin_passwords(stack, {}) == {ADMIN_PASSWORD}


def test_an_enforce_level_exempted_on_the_base_branch_passes_for_that_namespace_only() -> None:
    """`enforceLevels` (policy config) confirms the stack's `podSecurityEnforce`: exactly that
    level, for that namespace, for `enforce` only; audit and warn stay `restricted`."""
    config = {"enforceLevels": {"automation": "baseline"}, "appNamespaces": ["apps", "automation"]}
    baseline = {**RESTRICTED, "pod-security.kubernetes.io/enforce": "baseline"}
    exempted = namespace_args("automation", baseline, config=config)
    assert messages(pol.validate_apps_namespace_pod_security, exempted) == []
    other = namespace_args("apps", baseline, config=config)
    assert messages(pol.validate_apps_namespace_pod_security, other) == [
        "namespace 'apps' must enforce Pod Security 'restricted': "
        "pod-security.kubernetes.io/enforce=baseline (want restricted)"
    ]
    looser = namespace_args(
        "automation",
        {**baseline, "pod-security.kubernetes.io/enforce": "privileged"},
        config=config,
    )
    assert messages(pol.validate_apps_namespace_pod_security, looser) == [
        "namespace 'automation' must enforce Pod Security 'restricted': "
        "pod-security.kubernetes.io/enforce=privileged (want restricted)"
    ]
    weak_warn = namespace_args(
        "automation", {**baseline, "pod-security.kubernetes.io/warn": "baseline"}, config=config
    )
    assert messages(pol.validate_apps_namespace_pod_security, weak_warn) == [
        "namespace 'automation' must enforce Pod Security 'restricted': "
        "pod-security.kubernetes.io/warn=baseline (want restricted)"
    ]
