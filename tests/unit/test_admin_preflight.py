"""The admin pre-flight: pure judgement and messages, and its wiring under Pulumi mocks.

No test here opens a socket: the pre-flight is injected (`admin_access(..., preflight=...)`),
or `postgres_apps.admin.run_preflight` is replaced for the whole program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks

from postgres_apps import admin, preflight
from postgres_apps.config import parse_settings
from postgres_apps.inventory import NOT_CHECKED_PREFIX, Scope
from postgres_apps.preflight import (
    BUDGET_RUNBOOK_SECTION,
    RUNBOOK_SECTION,
    AdminEndpoint,
    AdminPreflightError,
    AppLimit,
    ConnectionBudget,
    ConnectionSettings,
    ServerFacts,
    classify,
    connection_budget,
    failure_message,
    judge,
    judge_budget,
    refusal_message,
)
from postgres_apps.settings import PostgresSettings
from tests.unit.conftest import (
    ADMIN_PASSWORD,
    THREE_APPS,
    ProgramMocks,
    RecordingMonitor,
    RecordingPreflight,
    is_secret,
    run_program,
    run_under_mocks,
    unwrap,
)

T_PROVIDER = "pulumi:providers:postgresql"
T_SECRET = "kubernetes:core/v1:Secret"
POSTGRES_TYPES = (
    "postgresql:index/role:Role",
    "postgresql:index/database:Database",
    "postgresql:index/grant:Grant",
    "postgresql:index/extension:Extension",
)
EP = AdminEndpoint(
    host="127.0.0.1",
    port=15432,
    user="postgres",
    sslmode="disable",
    connect_timeout=15,
    password_source="Secret data/postgres-postgresql key postgres-password",
)
SETTINGS = PostgresSettings(admin_host="127.0.0.1", admin_port=15432)
PG15_CONNECTIONS = ConnectionSettings(100, 3, None)
"""PostgreSQL 15's defaults (no reserved_connections)."""
PG16_CONNECTIONS = ConnectionSettings(100, 3, 0)
PG15 = ServerFacts(version_num=150008, superuser=True, connections=PG15_CONNECTIONS)
NO_APPS = ConnectionBudget(apps=(), warn_percent=80)
NO_SCOPE = Scope(roles=frozenset(), databases=frozenset(), admin_user="postgres")


def facts(num: int, superuser: bool = True) -> ServerFacts:
    return ServerFacts(num, superuser, PG16_CONNECTIONS if num >= 160000 else PG15_CONNECTIONS)


def _provider_only(
    preflight: RecordingPreflight, password: str = ADMIN_PASSWORD
) -> Callable[[], None]:
    def body() -> None:
        admin.admin_access(SETTINGS, password, NO_SCOPE, budget=NO_APPS, preflight=preflight)

    return body


@pytest.fixture
def preview(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the mocks as `pulumi preview` (the harness's runner hard-codes preview=False)."""
    original = mocks.set_mocks

    def as_preview(*args: Any, **kwargs: Any) -> None:
        original(*args, **{**kwargs, "preview": True})

    monkeypatch.setattr(mocks, "set_mocks", as_preview)


# ---------------------------------------------------------------------------------------------
# Wiring


def test_runs_once_in_up_with_the_endpoint_and_the_password() -> None:
    fake = RecordingPreflight()
    run = run_under_mocks(_provider_only(fake), ProgramMocks())
    assert len(fake.calls) == 1
    ep, password = fake.calls[0]
    assert password == ADMIN_PASSWORD
    assert (ep.host, ep.port, ep.user, ep.sslmode) == ("127.0.0.1", 15432, "postgres", "disable")
    assert ep.connect_timeout == admin.CONNECT_TIMEOUT_SECONDS
    assert ep.dbname == "postgres"
    provider = run.monitor.one(T_PROVIDER, "postgres-admin")
    assert is_secret(provider.inputs["password"])
    assert unwrap(provider.inputs["password"]) == ADMIN_PASSWORD


def test_skipped_in_preview(preview: None) -> None:
    fake = RecordingPreflight(error=AssertionError("the pre-flight must not run in a preview"))
    run = run_under_mocks(_provider_only(fake), ProgramMocks())
    assert fake.calls == []
    provider = run.monitor.one(T_PROVIDER, "postgres-admin")
    assert is_secret(provider.inputs["password"])


def test_a_failed_preflight_keeps_the_provider_unregistered() -> None:
    """The provider's password is the pre-flight's output: no provider without a passed check."""
    fake = RecordingPreflight(error=AdminPreflightError("refused"))
    monitor = RecordingMonitor(ProgramMocks())
    with pytest.raises(AdminPreflightError, match="refused"):
        run_under_mocks(_provider_only(fake), ProgramMocks(), monitor=monitor)
    assert len(fake.calls) == 1
    assert monitor.of_type(T_PROVIDER) == []


def test_whole_program_registers_nothing_in_postgresql_after_a_failed_preflight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`__main__.py` as deployed: no role, database, grant, extension, app Secret or check."""
    fake = RecordingPreflight(error=AdminPreflightError("refused"))
    monkeypatch.setattr(admin, "run_preflight", fake)
    monitor = RecordingMonitor(ProgramMocks())
    with pytest.raises(AdminPreflightError):
        run_program(THREE_APPS, monitor=monitor)
    assert len(fake.calls) == 1 and fake.calls[0][1] == ADMIN_PASSWORD
    types = {r.type for r in monitor.registrations}
    assert T_PROVIDER not in types
    assert not types & set(POSTGRES_TYPES), types
    app_secrets = [r for r in monitor.of_type(T_SECRET) if r.read_id is None]
    assert app_secrets == []
    # what may come before it: the admin Secret read, namespaces, the app components and their
    # generated passwords (docs/reliability.md says so)
    allowed = {
        T_SECRET,
        "kubernetes:core/v1:Namespace",
        "postgres-apps:namespace:AppsNamespace",
        "postgres-apps:app_database:AppDatabase",
        "random:index/randomPassword:RandomPassword",
        "pulumi:pulumi:StackReference",
        "pulumi:providers:kubernetes",
    }
    assert types <= allowed, types - allowed


def test_whole_program_passes_the_checked_password_to_the_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = RecordingPreflight()
    monkeypatch.setattr(admin, "run_preflight", fake)
    run = run_program(THREE_APPS)
    assert len(fake.calls) == 1
    ep, password = fake.calls[0]
    assert password == ADMIN_PASSWORD
    assert ep.address == "127.0.0.1:15432"
    assert ep.password_source == "Secret data/postgres-postgresql key postgres-password"
    provider = run.monitor.one(T_PROVIDER, "postgres-admin")
    assert unwrap(provider.inputs["password"]) == ADMIN_PASSWORD
    assert is_secret(provider.inputs["password"])


def test_config_secret_is_named_as_the_password_source(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = RecordingPreflight()
    monkeypatch.setattr(admin, "run_preflight", fake)
    config = {**THREE_APPS, "adminPassword": "from-config"}
    run_program(config, secret_keys=["postgres-apps:adminPassword"])
    ep, password = fake.calls[0]
    assert password == "from-config"
    assert ep.password_source == "the config secret postgres-apps:adminPassword"
    assert ep.password_in_config is True


def test_unit_harness_keeps_the_real_preflight_out(harness_preflight: RecordingPreflight) -> None:
    """The other unit tests run `__main__.py` under mocks: the harness's fake pre-flight (an
    autouse fixture in tests/unit/conftest.py) answers instead of a real login."""
    assert vars(admin)["run_preflight"] is harness_preflight
    harness_preflight.calls.clear()
    run = run_program(THREE_APPS)
    assert run.monitor.one(T_PROVIDER, "postgres-admin")
    assert [password for _, password in harness_preflight.calls] == [ADMIN_PASSWORD]


# ---------------------------------------------------------------------------------------------
# Pure: classification, messages, judgement

PASSWORD = "S3cr3t-Adm1n-Pw"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ('connection to server at "127.0.0.1", port 1 failed: Connection refused', "unreachable"),
        ('connection to server at "10.0.0.9", port 5432 failed: timeout expired', "unreachable"),
        ("failed to resolve host 'pg.invalid': Name or service not known", "unreachable"),
        ('FATAL:  password authentication failed for user "postgres"', "auth"),
        ('FATAL:  role "nobody" does not exist', "auth"),
        ("fe_sendauth: no password supplied", "auth"),
        ('FATAL:  database "postgres" does not exist', "database"),
        ('FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "postgres", no encryption', "hba"),
        ("server does not support SSL, but SSL was required", "tls"),
        ("something else entirely", "other"),
    ],
)
def test_classify(error: str, kind: str) -> None:
    assert classify(error) == kind


def test_auth_message_names_endpoint_user_keys_source_and_runbook() -> None:
    text = failure_message(EP, 'FATAL:  password authentication failed for user "postgres"', "pw")
    assert text.startswith('admin pre-flight failed for PostgreSQL at 127.0.0.1:15432 as user "')
    assert 'password authentication failed for user "postgres"' in text
    assert "postgres-apps:postgres.adminUser" in text
    assert "pulumi config set --secret postgres-apps:adminPassword" in text
    assert "Secret data/postgres-postgresql key postgres-password" in text
    assert RUNBOOK_SECTION in text
    assert "No role, database, grant or app Secret was touched" in text


def test_unreachable_message_names_host_port_keys_and_the_port_forward() -> None:
    text = failure_message(
        EP,
        'connection to server at "127.0.0.1", port 15432 failed: Connection refused\n'
        "\tIs the server running on that host and accepting TCP/IP connections?",
        PASSWORD,
    )
    assert "postgres-apps:postgres.adminHost" in text
    assert "postgres-apps:postgres.adminPort" in text
    assert "kubectl -n data port-forward svc/postgres-postgresql 15432:5432" in text
    assert "\t" not in text  # libpq's continuation lines joined


def test_unreachable_remote_host_gets_no_port_forward_advice() -> None:
    remote = replace(EP, host="pg.example.internal", port=5432)
    text = failure_message(remote, "failed to resolve host 'pg.example.internal'", PASSWORD)
    assert "port-forward" not in text
    assert "check that pg.example.internal is reachable from here" in text
    assert "postgres-apps:postgres.adminHost" in text


def test_auth_fix_follows_the_password_source() -> None:
    error = 'FATAL:  password authentication failed for user "postgres"'
    from_secret = failure_message(EP, error, PASSWORD)
    assert "correct that Secret" in from_secret
    in_config = replace(
        EP,
        password_source="the config secret postgres-apps:adminPassword",
        password_in_config=True,
    )
    text = failure_message(in_config, error, PASSWORD)
    assert "from the config secret postgres-apps:adminPassword" in text
    assert "pulumi config rm postgres-apps:adminPassword" in text
    assert "correct that Secret" not in text


def test_tls_message_names_the_sslmode_key() -> None:
    text = failure_message(EP, "server does not support SSL, but SSL was required", PASSWORD)
    assert "postgres-apps:postgres.adminSslmode" in text and "'disable'" in text


@pytest.mark.parametrize(
    "echo",
    [
        f"invalid connection option near '{PASSWORD}'",
        f"password={PASSWORD} rejected",
        f'unexpected "{PASSWORD[:8]}" in conninfo',  # a quoted fragment
    ],
)
def test_the_password_never_appears_even_if_the_driver_echoes_it(echo: str) -> None:
    text = failure_message(EP, echo, PASSWORD)
    assert PASSWORD not in text
    assert PASSWORD[:8] not in text
    assert "<redacted>" in text


def test_a_password_sharing_words_with_the_message_does_not_mangle_it() -> None:
    """A person-chosen admin password such as `not-the-password` (the e2e tier uses it)."""
    error = 'FATAL:  password authentication failed for user "postgres"'
    text = failure_message(EP, error, "not-the-password")
    assert 'password authentication failed for user "postgres"' in text
    assert "not-the-password" not in text
    assert classify(error) == "auth"


def test_judge_accepts_a_superuser_on_15_to_18() -> None:
    for num in (150000, 150008, 160004, 170002, 180001):
        assert judge(EP, facts(num)) == ([], [])


def test_judge_refuses_an_old_server() -> None:
    problems, _ = judge(EP, facts(140011))
    assert len(problems) == 1
    assert "PostgreSQL 14.11" in problems[0] and "15 to 18" in problems[0]
    assert "postgres-apps:postgres.adminHost" in problems[0]


def test_judge_warns_about_a_newer_server() -> None:
    problems, warnings = judge(EP, facts(190000))
    assert problems == []
    assert len(warnings) == 1 and "PostgreSQL 19.0" in warnings[0]


def test_judge_refuses_a_non_superuser() -> None:
    problems, _ = judge(EP, facts(160002, superuser=False))
    assert len(problems) == 1
    assert 'user "postgres" is not a superuser' in problems[0]
    assert "postgres-apps:postgres.adminUser" in problems[0]


def test_judge_reports_every_problem_and_a_missing_row() -> None:
    problems, _ = judge(EP, facts(130000, superuser=False))
    assert len(problems) == 2
    assert judge(EP, None)[0] == ['user "postgres" logged in but has no row in pg_roles']
    text = refusal_message(EP, problems)
    assert text.count("\n- ") == 2 and RUNBOOK_SECTION in text


def test_version_text() -> None:
    assert facts(150008).version == "15.8"
    assert facts(180000).version == "18.0"


# ---------------------------------------------------------------------------------------------
# Connection budget: pure arithmetic and messages


def budget(*limits: int, warn: int = 80) -> ConnectionBudget:
    return ConnectionBudget(
        apps=tuple(
            AppLimit(f"app{i}", n, f"postgres-apps:apps[{i}].connectionLimit")
            for i, n in enumerate(limits)
        ),
        warn_percent=warn,
    )


ROOM_100 = ConnectionSettings(103, 3, 0)
"""100 non-superuser connections: percentages read directly."""


def test_available_is_postgresql_arithmetic() -> None:
    assert PG15_CONNECTIONS.available == 97  # 100 - 3, no reserved_connections on 15
    assert ConnectionSettings(200, 5, 7).available == 188
    assert PG15_CONNECTIONS.describe() == (
        "max_connections 100 - superuser_reserved_connections 3; no reserved_connections "
        "before PostgreSQL 16"
    )
    assert ConnectionSettings(200, 5, 7).describe() == (
        "max_connections 200 - superuser_reserved_connections 5 - reserved_connections 7"
    )


def test_under_the_threshold_is_silent() -> None:
    assert judge_budget(EP, budget(20, 20, 20), PG15_CONNECTIONS) == ([], [])
    assert judge_budget(EP, budget(), PG15_CONNECTIONS) == ([], [])  # no apps


def test_exactly_at_the_threshold_is_silent_one_more_warns() -> None:
    assert judge_budget(EP, budget(40, 40), ROOM_100) == ([], [])  # 80 % of 100
    problems, warnings = judge_budget(EP, budget(40, 41), ROOM_100)
    assert problems == []
    assert warnings == [
        "connection budget: the apps' connection limits add up to 81 (app0 40, app1 41), 81% of "
        "the 100 non-superuser connections PostgreSQL at 127.0.0.1:15432 allows (max_connections "
        "103 - superuser_reserved_connections 3 - reserved_connections 0), above "
        "postgres-apps:postgres.connectionBudgetWarnPercent 80%. Roles this stack does not manage "
        f"share the 19 left. Runbook: {BUDGET_RUNBOOK_SECTION}"
    ]


def test_the_threshold_is_configurable() -> None:
    assert judge_budget(EP, budget(40, 41, warn=90), ROOM_100) == ([], [])
    assert judge_budget(EP, budget(51, warn=50), ROOM_100)[1]
    # 100: only a refusal, never a warning
    assert judge_budget(EP, budget(100, warn=100), ROOM_100) == ([], [])


def test_exactly_the_budget_is_allowed_with_a_warning() -> None:
    problems, warnings = judge_budget(EP, budget(50, 47), PG15_CONNECTIONS)
    assert problems == []
    assert len(warnings) == 1 and "add up to 97" in warnings[0] and "100%" in warnings[0]


def test_one_over_the_budget_is_refused_with_numbers_keys_and_fixes() -> None:
    problems, warnings = judge_budget(EP, budget(20, 20, 20, 20, 10, 8), PG15_CONNECTIONS)
    assert warnings == []
    assert problems == [
        "connection budget exceeded: the apps' connection limits add up to 98 (app0 20, app1 20, "
        "app2 20, app3 20, app4 10, app5 8) but PostgreSQL at 127.0.0.1:15432 allows 97 "
        "non-superuser connections (max_connections 100 - superuser_reserved_connections 3; no "
        "reserved_connections before PostgreSQL 16), 1 too many. Lower "
        "postgres-apps:apps[0].connectionLimit (app0 20), postgres-apps:apps[1].connectionLimit "
        "(app1 20), postgres-apps:apps[2].connectionLimit (app2 20), or raise max_connections on "
        "the server (it needs a restart; Bitnami chart: primary.extendedConfiguration "
        "`max_connections = <n>`, i.e. postgresql.conf), or lower superuser_reserved_connections "
        "/ reserved_connections there. Roles this stack does not manage are not in the sum: leave "
        f"room for them. Runbook: {BUDGET_RUNBOOK_SECTION}"
    ]


def test_the_largest_limits_are_named_first() -> None:
    problems, _ = judge_budget(EP, budget(5, 90, 10), PG15_CONNECTIONS)
    assert "Lower postgres-apps:apps[1].connectionLimit (app1 90), " in problems[0]
    assert "postgres-apps:apps[2].connectionLimit (app2 10), postgres-apps:apps[0]" in problems[0]


def test_pg16_reserved_connections_shrink_the_budget() -> None:
    """95 fits 100 - 3 on PostgreSQL 15, not 100 - 3 - 5 on 16+."""
    assert judge_budget(EP, budget(95, warn=100), PG15_CONNECTIONS) == ([], [])
    problems, _ = judge_budget(EP, budget(95, warn=100), ConnectionSettings(100, 3, 5))
    assert len(problems) == 1
    assert (
        "allows 92 non-superuser connections (max_connections 100 - "
        "superuser_reserved_connections 3 - reserved_connections 5), 3 too many"
    ) in problems[0]


def test_budget_from_config_keeps_the_config_indices() -> None:
    settings = parse_settings(
        {
            "apps": ["a", {"name": "b", "connectionLimit": 7}],
            "postgres": {"connectionBudgetWarnPercent": 60},
        }
    )
    got = connection_budget(settings)
    assert got == ConnectionBudget(
        apps=(
            AppLimit("a", 20, "postgres-apps:apps[0].connectionLimit"),
            AppLimit("b", 7, "postgres-apps:apps[1].connectionLimit"),
        ),
        warn_percent=60,
    )
    assert got.requested == 27


# ---------------------------------------------------------------------------------------------
# Connection budget: run_preflight (the probe replaced) and the program's wiring


@dataclass
class LogRecorder:
    info: list[str] = field(default_factory=list)
    warn: list[str] = field(default_factory=list)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    rec = LogRecorder()
    monkeypatch.setattr(pulumi.log, "info", lambda msg, *a, **k: rec.info.append(msg))
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: rec.warn.append(msg))
    return rec


def _probe_answers(monkeypatch: pytest.MonkeyPatch, answer: ServerFacts) -> None:
    monkeypatch.setattr(preflight, "probe_admin", lambda ep, password: answer)


def test_run_preflight_refuses_an_over_budget_stack(
    monkeypatch: pytest.MonkeyPatch, logs: LogRecorder
) -> None:
    _probe_answers(monkeypatch, PG15)
    with pytest.raises(AdminPreflightError) as err:
        preflight.run_preflight(EP, PASSWORD, budget(60, 40))
    text = str(err.value)
    assert text.startswith('admin pre-flight failed for PostgreSQL at 127.0.0.1:15432 as user "')
    assert "\n- connection budget exceeded: the apps' connection limits add up to 100" in text
    assert "No role, database, grant or app Secret was touched" in text
    assert PASSWORD not in text
    assert logs.info == [] and logs.warn == []


def test_run_preflight_reports_the_budget_with_the_other_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _probe_answers(monkeypatch, ServerFacts(150008, False, PG15_CONNECTIONS))
    with pytest.raises(AdminPreflightError) as err:
        preflight.run_preflight(EP, PASSWORD, budget(98))
    text = str(err.value)
    assert text.count("\n- ") == 2
    assert "is not a superuser" in text and "connection budget exceeded" in text


def test_run_preflight_warns_near_the_budget_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, logs: LogRecorder
) -> None:
    _probe_answers(monkeypatch, PG15)
    assert preflight.run_preflight(EP, PASSWORD, budget(50, 40)) == PG15
    assert logs.warn == judge_budget(EP, budget(50, 40), PG15_CONNECTIONS)[1]
    assert logs.info == []


def test_run_preflight_logs_the_budget_when_it_fits(
    monkeypatch: pytest.MonkeyPatch, logs: LogRecorder
) -> None:
    _probe_answers(monkeypatch, PG15)
    preflight.run_preflight(EP, PASSWORD, budget(20, 10))
    assert logs.warn == []
    assert logs.info == [
        "connection budget: the apps' connection limits add up to 30 (app0 20, app1 10); "
        "PostgreSQL at 127.0.0.1:15432 allows 97 non-superuser connections (max_connections 100 "
        "- superuser_reserved_connections 3; no reserved_connections before PostgreSQL 16): 30.9% "
        "used by this stack"
    ]


def test_whole_program_gives_the_preflight_the_apps_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = RecordingPreflight()
    monkeypatch.setattr(admin, "run_preflight", fake)
    run = run_program(THREE_APPS)
    raw = {k: v for k, v in THREE_APPS.items() if not k.startswith("kubernetes:")}
    expected = connection_budget(parse_settings(raw))
    assert fake.budgets == [expected]
    assert [a.limit for a in expected.apps] == [20, 10, 20]
    assert run.outputs["connectionBudget"] == {
        "requested": 50,
        "perApp": {"app-test": 20, "n8n": 10, "paperless": 20},
        "warnPercent": 80,
    }


def test_preview_shows_the_budget_without_the_preflight(
    preview: None, monkeypatch: pytest.MonkeyPatch, logs: LogRecorder
) -> None:
    fake = RecordingPreflight(error=AssertionError("the pre-flight must not run in a preview"))
    monkeypatch.setattr(admin, "run_preflight", fake)
    run = run_program(THREE_APPS)
    assert fake.calls == []
    assert run.outputs["connectionBudget"]["requested"] == 50
    # then the inventory's own read (the harness's survey: "not checked", tests/unit/test_inventory)
    assert logs.info == [
        "connection budget: the apps' connection limits add up to 50 (app-test 20, n8n 10, "
        "paperless 20); the server's limit is checked by `pulumi up` (a preview does not run the "
        "pre-flight)",
        f"{NOT_CHECKED_PREFIX} (the unit harness does not connect)",
    ]


def test_a_share_just_above_the_threshold_is_not_printed_as_the_threshold() -> None:
    """78 of 97 is 80.4 %: above 80, and the warning must not say "80%"."""
    _, warnings = judge_budget(EP, budget(78), PG15_CONNECTIONS)
    assert len(warnings) == 1 and "80.4% of the 97" in warnings[0]
