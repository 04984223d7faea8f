"""The admin pre-flight: pure judgement and messages, and its wiring under Pulumi mocks.

No test here opens a socket: the pre-flight is injected (`admin_provider(..., preflight=...)`),
or `components.admin.run_preflight` is replaced for the whole program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from pulumi.runtime import mocks

from components import admin
from components.config import PostgresSettings
from components.preflight import (
    RUNBOOK_SECTION,
    AdminEndpoint,
    AdminPreflightError,
    ServerFacts,
    classify,
    failure_message,
    judge,
    refusal_message,
)
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
PG15 = ServerFacts(version_num=150008, superuser=True)


@dataclass
class FakePreflight:
    """Records every call; raises `error` if set."""

    error: Exception | None = None
    calls: list[tuple[AdminEndpoint, str]] = field(default_factory=list)

    def __call__(self, ep: AdminEndpoint, password: str) -> ServerFacts:
        self.calls.append((ep, password))
        if self.error is not None:
            raise self.error
        return PG15


def _provider_only(preflight: FakePreflight, password: str = ADMIN_PASSWORD) -> Callable[[], None]:
    def body() -> None:
        admin.admin_provider(SETTINGS, password, preflight=preflight)

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
    fake = FakePreflight()
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
    fake = FakePreflight(error=AssertionError("the pre-flight must not run in a preview"))
    run = run_under_mocks(_provider_only(fake), ProgramMocks())
    assert fake.calls == []
    provider = run.monitor.one(T_PROVIDER, "postgres-admin")
    assert is_secret(provider.inputs["password"])


def test_a_failed_preflight_keeps_the_provider_unregistered() -> None:
    """The provider's password is the pre-flight's output: no provider without a passed check."""
    fake = FakePreflight(error=AdminPreflightError("refused"))
    monitor = RecordingMonitor(ProgramMocks())
    with pytest.raises(AdminPreflightError, match="refused"):
        run_under_mocks(_provider_only(fake), ProgramMocks(), monitor=monitor)
    assert len(fake.calls) == 1
    assert monitor.of_type(T_PROVIDER) == []


def test_whole_program_registers_nothing_in_postgresql_after_a_failed_preflight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`__main__.py` as deployed: no role, database, grant, extension, app Secret or check."""
    fake = FakePreflight(error=AdminPreflightError("refused"))
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
    fake = FakePreflight()
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
    fake = FakePreflight()
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
        assert judge(EP, ServerFacts(num, True)) == ([], [])


def test_judge_refuses_an_old_server() -> None:
    problems, _ = judge(EP, ServerFacts(140011, True))
    assert len(problems) == 1
    assert "PostgreSQL 14.11" in problems[0] and "15 to 18" in problems[0]
    assert "postgres-apps:postgres.adminHost" in problems[0]


def test_judge_warns_about_a_newer_server() -> None:
    problems, warnings = judge(EP, ServerFacts(190000, True))
    assert problems == []
    assert len(warnings) == 1 and "PostgreSQL 19.0" in warnings[0]


def test_judge_refuses_a_non_superuser() -> None:
    problems, _ = judge(EP, ServerFacts(160002, False))
    assert len(problems) == 1
    assert 'user "postgres" is not a superuser' in problems[0]
    assert "postgres-apps:postgres.adminUser" in problems[0]


def test_judge_reports_every_problem_and_a_missing_row() -> None:
    problems, _ = judge(EP, ServerFacts(130000, False))
    assert len(problems) == 2
    assert judge(EP, None)[0] == ['user "postgres" logged in but has no row in pg_roles']
    text = refusal_message(EP, problems)
    assert text.count("\n- ") == 2 and RUNBOOK_SECTION in text


def test_version_text() -> None:
    assert ServerFacts(150008, True).version == "15.8"
    assert ServerFacts(180000, True).version == "18.0"
