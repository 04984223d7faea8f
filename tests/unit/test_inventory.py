"""The unmanaged report: classification, exclusions, ignore-lists, messages, and its wiring.

No test here opens a socket: the pre-flight and the preview's survey are injected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pulumi
import pytest

from postgres_apps import admin, inventory
from postgres_apps.config import ConfigError, parse_settings
from postgres_apps.inventory import (
    NONE_MESSAGE,
    NOT_CHECKED_PREFIX,
    QUERY,
    RUNBOOK_SECTION,
    WARNING_PREFIX,
    Scope,
    ServerObject,
    Unmanaged,
    classify,
    from_preflight,
    not_checked,
    not_checked_message,
    output,
    scope_of,
    warning_message,
)
from postgres_apps.preflight import (
    ServerFacts,
    connection_budget,
    preview_budget_line,
)
from postgres_apps.settings import UnmanagedSettings
from tests.unit.conftest import (
    ADMIN_PASSWORD,
    THREE_APPS,
    RecordingPreflight,
    RecordingSurvey,
    run_program,
)
from tests.unit.test_admin_preflight import (
    EP,
    PG15_CONNECTIONS,
    preview,  # noqa: F401 - the fixture
)

SCOPE = Scope(
    roles=frozenset({"app_test", "n8n"}),
    databases=frozenset({"app_test", "n8n"}),
    admin_user="postgres",
)


def _three_apps() -> dict[str, object]:
    """THREE_APPS as `parse_settings` takes it (without the `kubernetes:` key)."""
    raw: dict[str, object] = json.loads(json.dumps(THREE_APPS))
    raw.pop("kubernetes:context")
    return raw


def _rows(roles: list[str], databases: list[str]) -> list[ServerObject]:
    return [ServerObject("role", r) for r in roles] + [
        ServerObject("database", d) for d in databases
    ]


# A fresh PostgreSQL 15 (its built-in roles), the two managed apps, and the hand-made leftovers.
SERVER = _rows(
    [
        "postgres",
        "pg_database_owner",
        "pg_read_all_data",
        "pg_write_all_data",
        "pg_monitor",
        "pg_signal_backend",
        "pg_checkpoint",
        "app_test",
        "n8n",
        "app_user",
        "readonly_group",
    ],
    ["postgres", "template0", "template1", "app_test", "n8n", "app_test_db"],
)


# ---------------------------------------------------------------------------------------------
# Pure


def test_hand_made_role_and_database_are_reported_and_nothing_else() -> None:
    assert classify(SERVER, SCOPE) == Unmanaged(
        checked=True, roles=("app_user", "readonly_group"), databases=("app_test_db",)
    )


def test_system_admin_and_managed_names_are_never_reported() -> None:
    report = classify(SERVER, SCOPE)
    assert not {r for r in report.roles if r.startswith("pg_")}
    assert "postgres" not in report.roles
    assert not {"postgres", "template0", "template1"} & set(report.databases)
    assert not {"app_test", "n8n"} & (set(report.roles) | set(report.databases))


def test_another_admin_user_is_excluded_and_postgres_then_is_not() -> None:
    scope = Scope(roles=SCOPE.roles, databases=SCOPE.databases, admin_user="admin")
    report = classify([*SERVER, ServerObject("role", "admin")], scope)
    assert report.roles == ("app_user", "postgres", "readonly_group")


def test_a_role_named_like_a_database_is_judged_as_a_role() -> None:
    """Roles and databases are separate name spaces: a managed database name does not hide a
    role of that name, and the reverse."""
    scope = Scope(roles=frozenset({"a"}), databases=frozenset({"b"}), admin_user="postgres")
    report = classify(_rows(["a", "b"], ["a", "b"]), scope)
    assert (report.roles, report.databases) == (("b",), ("a",))


def test_ignore_lists_hide_exactly_their_names() -> None:
    ignore = UnmanagedSettings(ignore_roles=("readonly_group",), ignore_databases=("app_test_db",))
    scope = Scope(SCOPE.roles, SCOPE.databases, "postgres", ignore)
    assert classify(SERVER, scope) == Unmanaged(checked=True, roles=("app_user",), databases=())


def test_a_clean_server_gives_an_empty_checked_report_and_no_warning() -> None:
    clean = [o for o in SERVER if o.name not in {"app_user", "readonly_group", "app_test_db"}]
    report = classify(clean, SCOPE)
    assert report == Unmanaged(checked=True)
    assert warning_message(report) is None


def test_warning_line_names_everything_and_the_ways_out() -> None:
    message = warning_message(classify(SERVER, SCOPE))
    assert message == (
        f'{WARNING_PREFIX} roles "app_user", "readonly_group"; databases "app_test_db". '
        "Adopt them (`pulumi import`), retire them (pg_dump, DROP), or list them in "
        "postgres-apps:unmanaged.ignoreRoles / postgres-apps:unmanaged.ignoreDatabases. "
        f"Runbook: {RUNBOOK_SECTION}"
    )
    assert RUNBOOK_SECTION == "docs/runbooks/postgres-connectivity.md#unmanaged"


def test_warning_line_with_only_a_database() -> None:
    message = warning_message(Unmanaged(checked=True, databases=("x",)))
    assert message is not None
    assert message.startswith(f'{WARNING_PREFIX} roles none; databases "x". ')


def test_a_quoted_name_is_shown_unambiguously() -> None:
    message = warning_message(Unmanaged(checked=True, roles=('we"ird, name',)))
    assert message is not None
    assert 'roles "we\\"ird, name";' in message


def test_not_checked_never_carries_the_password() -> None:
    password = "Sup3r-Secret-Admin-Pw"
    report = not_checked(
        EP,
        f'connection failed: password "{password}" rejected; near "Secret-Admin"\n  detail',
        password,
        "the preview",
    )
    assert report.checked is False
    assert report.reason is not None
    assert password not in report.reason
    assert "Secret-Admin" not in report.reason
    assert report.reason.startswith("the preview could not read 127.0.0.1:15432: ")
    assert "\n" not in report.reason
    assert warning_message(report) is None
    assert not_checked_message(report.reason) == f"{NOT_CHECKED_PREFIX} ({report.reason})"


def test_from_preflight_uses_the_sessions_rows_or_says_why_not() -> None:
    facts = ServerFacts(150008, True, PG15_CONNECTIONS, objects=tuple(SERVER))
    assert from_preflight(facts, SCOPE, EP, ADMIN_PASSWORD) == classify(SERVER, SCOPE)
    failed = ServerFacts(150008, True, PG15_CONNECTIONS, objects_error="permission denied")
    report = from_preflight(failed, SCOPE, EP, ADMIN_PASSWORD)
    assert report == Unmanaged(
        checked=False,
        reason="the pre-flight could not read 127.0.0.1:15432: permission denied",
    )


def test_output_shape() -> None:
    assert output(classify(SERVER, SCOPE)) == {
        "checked": True,
        "roles": ["app_user", "readonly_group"],
        "databases": ["app_test_db"],
    }
    assert output(Unmanaged(checked=False, reason="r")) == {
        "checked": False,
        "roles": [],
        "databases": [],
        "reason": "r",
    }


def test_one_statement_reads_roles_and_databases() -> None:
    assert QUERY.count("SELECT") == 2
    assert "UNION ALL" in QUERY
    assert ";" not in QUERY


def test_scope_of_the_stack_config() -> None:
    settings = parse_settings(
        {
            **_three_apps(),
            "unmanaged": {"ignoreRoles": ["repl_user"], "ignoreDatabases": ["Legacy DB"]},
        }
    )
    assert scope_of(settings) == Scope(
        roles=frozenset({"app_test", "n8n", "paperless"}),
        databases=frozenset({"app_test", "n8n", "paperless"}),
        admin_user="postgres",
        ignore=UnmanagedSettings(ignore_roles=("repl_user",), ignore_databases=("Legacy DB",)),
    )


# ---------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["x"], "postgres-apps:unmanaged: must be a mapping, got a list"),
        ({"ignoreRole": []}, 'postgres-apps:unmanaged.ignoreRole: unknown key (did you mean "'),
        ({"ignoreRoles": "app_user"}, "postgres-apps:unmanaged.ignoreRoles: must be a list of"),
        ({"ignoreRoles": ["a", "a"]}, 'postgres-apps:unmanaged.ignoreRoles[1]: duplicate role "a"'),
        (
            {"ignoreDatabases": [""]},
            "postgres-apps:unmanaged.ignoreDatabases[0]: must not be empty",
        ),
        (
            {"ignoreRoles": ["a\nb"]},
            'postgres-apps:unmanaged.ignoreRoles[0]: "a\\nb" is not a role',
        ),
        ({"ignoreRoles": ["r" * 64]}, "is longer than 63 bytes"),
        (
            {"ignoreRoles": ["app_test"]},
            'postgres-apps:unmanaged.ignoreRoles[0]: "app_test" is the role of '
            "postgres-apps:apps[0]; the stack manages it, so it is never reported as unmanaged",
        ),
        (
            {"ignoreDatabases": ["n8n"]},
            'postgres-apps:unmanaged.ignoreDatabases[0]: "n8n" is the database of '
            "postgres-apps:apps[1]; the stack manages it, so it is never reported as unmanaged",
        ),
    ],
)
def test_config_refuses(value: object, problem: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_settings({"apps": ["app-test", "n8n"], "unmanaged": value})
    assert len(excinfo.value.problems) == 1
    assert problem in excinfo.value.problems[0]


def test_config_default_and_accepted() -> None:
    assert parse_settings({}).unmanaged == UnmanagedSettings()
    settings = parse_settings(
        {"unmanaged": {"ignoreRoles": ["repl_user", "Mixed Case"], "ignoreDatabases": []}}
    )
    assert settings.unmanaged == UnmanagedSettings(ignore_roles=("repl_user", "Mixed Case"))


# ---------------------------------------------------------------------------------------------
# Wiring (the whole program under mocks)


@dataclass
class Logged:
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[Logged]:
    seen = Logged()
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: seen.warnings.append(msg))
    monkeypatch.setattr(pulumi.log, "info", lambda msg, *a, **k: seen.infos.append(msg))
    yield seen


def _preflight_with(rows: list[ServerObject]) -> RecordingPreflight:
    return RecordingPreflight(objects=tuple(rows))


def test_up_exports_the_report_read_in_the_preflight_session(
    monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> None:
    rows = [*SERVER, ServerObject("role", "paperless"), ServerObject("database", "paperless")]
    fake = _preflight_with(rows)
    monkeypatch.setattr(admin, "run_preflight", fake)
    run = run_program(THREE_APPS)
    assert run.outputs["unmanaged"] == {
        "checked": True,
        "roles": ["app_user", "readonly_group"],
        "databases": ["app_test_db"],
    }
    assert "unmanaged" not in run.secret_outputs
    # one pre-flight call judged the budget and read the inventory: no second login
    assert fake.budgets == [connection_budget(parse_settings(_three_apps()))]
    assert run.outputs["connectionBudget"]["requested"] == 50
    assert logged.warnings == [
        warning_message(classify(rows, scope_of(parse_settings(_three_apps()))))
    ]


def test_up_on_a_clean_server_exports_an_empty_report_and_warns_nothing(
    monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> None:
    rows = _rows(
        ["postgres", "pg_monitor", "app_test", "n8n", "paperless"],
        ["postgres", "template0", "template1", "app_test", "n8n", "paperless"],
    )
    monkeypatch.setattr(admin, "run_preflight", _preflight_with(rows))
    run = run_program(THREE_APPS)
    assert run.outputs["unmanaged"] == {"checked": True, "roles": [], "databases": []}
    assert logged.warnings == []
    assert logged.infos == [NONE_MESSAGE]


def test_the_ignore_list_reaches_the_report(
    monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> None:
    monkeypatch.setattr(admin, "run_preflight", _preflight_with(SERVER))
    config = {**THREE_APPS, "unmanaged": {"ignoreRoles": ["readonly_group", "app_user"]}}
    run = run_program(config)
    assert run.outputs["unmanaged"]["roles"] == []
    assert run.outputs["unmanaged"]["databases"] == ["app_test_db"]


def test_preview_reads_by_its_own_survey_and_says_not_checked_without_failing(
    preview: None,  # noqa: F811
    harness_survey: RecordingSurvey,
    logged: Logged,
) -> None:
    harness_survey.calls.clear()
    run = run_program(THREE_APPS)
    assert run.outputs["unmanaged"] == {
        "checked": False,
        "roles": [],
        "databases": [],
        "reason": "the unit harness does not connect",
    }
    budget_line = preview_budget_line(connection_budget(parse_settings(_three_apps())))
    not_read = f"{NOT_CHECKED_PREFIX} (the unit harness does not connect)"
    assert logged.infos == [budget_line, not_read]
    assert logged.warnings == []
    ((ep, password, scope),) = harness_survey.calls
    assert (ep.address, password) == ("127.0.0.1:15432", ADMIN_PASSWORD)
    assert scope == scope_of(parse_settings(_three_apps()))


def test_preview_with_a_reachable_server_warns_like_up(
    preview: None,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    logged: Logged,
) -> None:
    monkeypatch.setattr(
        admin, "survey", lambda ep, password, scope: inventory.classify(SERVER, scope)
    )
    run = run_program(THREE_APPS)
    assert run.outputs["unmanaged"]["checked"] is True
    assert run.outputs["unmanaged"]["databases"] == ["app_test_db"]
    assert len(logged.warnings) == 1
    assert logged.warnings[0].startswith(WARNING_PREFIX)
