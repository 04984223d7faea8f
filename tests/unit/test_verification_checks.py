"""The checks' judgement (pure): each report fact → pass/fail/skip, message and hint."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from postgres_apps.verification.judgement import judge, percentile, sql_ident
from postgres_apps.verification.pg_errors import (
    _LOGIN_HINTS,
    classify_connect_error,
    login_hint,
    sql_error,
)
from postgres_apps.verification.pod import PROBE_SCRIPT
from postgres_apps.verification.redaction import redact, redact_report
from postgres_apps.verification.report import (
    CHECKS,
    CRUD_STEPS,
    REPORT_SCHEMA,
    VERDICT_SCHEMA,
    CheckOutcome,
)
from postgres_apps.verification.runbook import RUNBOOK, RUNBOOK_ANCHORS
from postgres_apps.verification.runbook import hint as _hint
from postgres_apps.verification.statements import (
    ISOLATION_SQL,
    LOGIN_SQL,
    PING_SQL,
    PRIVILEGES_SQL,
    URI_SQL,
    Peer,
    crud_statements,
    isolation_input,
    isolation_statement,
    probe_env,
    probe_table,
)

GOOD: dict[str, Any] = {
    "schema": REPORT_SCHEMA,
    "app": "n8n",
    "runner": "pod",
    "target": {"host": "pg.data.svc", "port": 5432, "database": "n8n", "user": "n8n"},
    "started_at": "2026-11-27T00:00:00Z",
    "finished_at": "2026-11-27T00:00:01Z",
    "dns": {"host": "pg.data.svc", "addresses": ["10.0.0.7"], "error": None},
    "tcp": None,
    "login": {
        "ok": True,
        "ms": 9.0,
        "connect_samples_ms": [9.0, 4.0, 5.0],
        "error": None,
        "current_user": "n8n",
        "database": "n8n",
        "server_version": "15.8",
    },
    "uri": {"given": True, "ok": True, "error": None, "current_user": "n8n", "database": "n8n"},
    "crud": {
        "steps": ["create", "insert", "select", "update", "delete", "drop"],
        "failed_step": None,
        "error": None,
        "selected": "probe",
        "updated": "updated",
    },
    "privileges": {
        "rolsuper": False,
        "rolcreaterole": False,
        "rolcreatedb": False,
        "rolreplication": False,
        "rolbypassrls": False,
    },
    "isolation": {
        "peers": 2,
        "allowed": [],
        "outbound": {"checked": 4, "reachable": [], "temporary": [], "missing": []},
        "inbound": {"roles": [], "public_connect": False, "missing": []},
        "login_target": "paperless",
        "refused_login": {
            "database": "paperless",
            "connected": False,
            "error": 'FATAL: permission denied for database "paperless" '
            "DETAIL: User does not have CONNECT privilege.",
        },
        "error": None,
    },
    "roundtrips_ms": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
}


def report(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    doc.update(changes)
    return doc


def by_name(r: dict[str, Any], budget: float = 100.0) -> dict[str, CheckOutcome]:
    return {c.name: c for c in judge(r, latency_budget_ms=budget).checks}


def test_good_report_passes_every_check_in_order() -> None:
    verdict = judge(GOOD, latency_budget_ms=100.0, checked_at="2026-11-27T00:00:02Z")
    assert [c.name for c in verdict.checks] == list(CHECKS)
    assert verdict.ok
    assert verdict.passed == list(CHECKS)
    assert verdict.connect_ms == 5.0  # the median of the three connects
    assert verdict.roundtrip_p50_ms == 5.0
    assert verdict.roundtrip_p95_ms == 10.0
    assert verdict.server_version == "15.8"
    assert verdict.checked_at == "2026-11-27T00:00:02Z"
    doc = verdict.to_json()
    assert doc["schema"] == VERDICT_SCHEMA
    assert doc["failed"] == []
    assert verdict.error_message("n8n-db-credentials") == ""


def test_not_a_report_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a probe report"):
        judge({"schema": "something-else"}, latency_budget_ms=100)


def test_direct_runner_skips_dns_and_measures_tcp() -> None:
    r = report(dns=None, tcp={"ok": True, "ms": 0.5, "error": None}, runner="direct")
    checks = by_name(r)
    assert checks["dns"].status == "skip"
    assert checks["tcp"].status == "pass"
    assert checks["tcp"].message == "pg.data.svc:5432 accepts connections (0.5 ms)"


def test_dns_failure() -> None:
    r = report(
        dns={
            "host": "pg.data.svc",
            "addresses": [],
            "error": "getent hosts pg.data.svc: no address",
        },
        login={"ok": False, "error": 'could not translate host name "pg.data.svc" to address'},
    )
    checks = by_name(r)
    assert checks["dns"].status == "fail"
    assert checks["dns"].message == (
        "pg.data.svc does not resolve (getent hosts pg.data.svc: no address)"
    )
    assert checks["dns"].hint.endswith(f"{RUNBOOK}#dns")
    assert checks["tcp"].status == "skip"
    assert checks["login"].status == "skip"


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ('could not translate host name "x" to address: Name or service not known', "dns"),
        ("Temporary failure in name resolution", "dns"),
        ('connection to server at "10.0.0.7", port 5432 failed: Connection refused', "tcp"),
        ("timeout expired", "tcp"),
        ("server closed the connection unexpectedly", "tcp"),
        ('FATAL: password authentication failed for user "n8n"', "login"),
        ('FATAL: no pg_hba.conf entry for host "10.1.2.3"', "login"),
        ('FATAL: database "n8n" does not exist', "login"),
    ],
)
def test_classify_connect_error(error: str, cause: str) -> None:
    assert classify_connect_error(error) == cause


NOT_MEASURED: dict[str, Any] = {
    k: None for k in ("uri", "crud", "privileges", "isolation", "roundtrips_ms")
}
"""What both runners report after a failed login."""


def test_tcp_derived_from_login_error_in_pod_mode() -> None:
    r = report(
        **NOT_MEASURED,
        login={
            "ok": False,
            "error": 'connection to server at "pg.data.svc" (10.0.0.7), port 5432 failed: '
            "Connection refused",
        },
    )
    checks = by_name(r)
    assert checks["tcp"].status == "fail"
    assert checks["tcp"].message.startswith("cannot open a connection to pg.data.svc:5432: ")
    assert checks["tcp"].hint.endswith(f"{RUNBOOK}#connection-refused")
    assert checks["login"].status == "skip"
    for later in ("uri", "crud", "privileges", "isolation", "latency"):
        assert checks[later].status == "skip"


def test_tcp_measured_failure_in_direct_mode() -> None:
    r = report(
        dns=None,
        tcp={"ok": False, "ms": None, "error": "ConnectionRefusedError: [Errno 111]"},
        login=None,
        uri=None,
        crud=None,
        privileges=None,
        isolation=None,
        roundtrips_ms=None,
    )
    verdict = judge(r, latency_budget_ms=100)
    assert [c.name for c in verdict.failed] == ["tcp"]
    assert verdict.connect_ms is None
    assert verdict.roundtrip_p50_ms is None


@pytest.mark.parametrize(
    ("error", "anchor", "words"),
    [
        (
            'FATAL: password authentication failed for user "n8n"',
            "password-authentication-failed",
            "the Secret n8n-db-credentials and the role disagree; "
            "run pulumi up --refresh to re-sync",
        ),
        ('FATAL: no pg_hba.conf entry for host "10.1.2.3"', "no-pg_hba-entry", "pg_hba.conf"),
        ('FATAL: role "n8n" does not exist', "role-does-not-exist", "role was not created"),
        ('FATAL: database "n8n" does not exist', "database-does-not-exist", "database was not"),
        (
            'FATAL: permission denied for database "n8n"',
            "permission-denied-for-database",
            "CONNECT",
        ),
        ('FATAL: too many connections for role "n8n"', "too-many-connections", "connectionLimit"),
        ('FATAL: role "n8n" is not permitted to log in', "role-cannot-login", "NOLOGIN"),
        ("server does not support SSL, but SSL was required", "ssl", "sslmode"),
        ("something else entirely", "login", "check the Secret n8n-db-credentials"),
    ],
)
def test_login_failures_have_specific_hints(error: str, anchor: str, words: str) -> None:
    verdict = judge(
        report(**NOT_MEASURED, login={"ok": False, "error": error}), latency_budget_ms=100
    )
    assert [c.name for c in verdict.failed] == ["login"]
    message = verdict.error_message("n8n-db-credentials")
    assert message.startswith(f'app "n8n": check "login" failed: {error} — ')
    assert words in message
    assert message.endswith(f"{RUNBOOK}#{anchor}")


def test_the_documented_example_message() -> None:
    verdict = judge(
        report(login={"ok": False, "error": 'password authentication failed for user "n8n"'}),
        latency_budget_ms=100,
    )
    assert verdict.error_message("n8n-db-credentials") == (
        'app "n8n": check "login" failed: password authentication failed for user "n8n" — the '
        "Secret n8n-db-credentials and the role disagree; run pulumi up --refresh to re-sync, "
        "or see docs/runbooks/postgres-connectivity.md#password-authentication-failed"
    )


def test_login_as_wrong_user_fails() -> None:
    r = report(login={**GOOD["login"], "current_user": "someone"})
    assert by_name(r)["login"].message == 'logged in as "someone", expected "n8n"'


def test_uri_failures() -> None:
    missing = by_name(report(uri={"given": False, "ok": False, "error": None}))["uri"]
    assert (missing.status, missing.message) == ("fail", "the Secret has no uri")

    broken = by_name(
        report(uri={"given": True, "ok": False, "error": 'invalid integer value "<redacted>"'})
    )["uri"]
    assert broken.status == "fail"
    assert broken.message == (
        'the Secret\'s uri does not connect as given: invalid integer value "<redacted>"'
    )
    assert "percent-encoded" in broken.hint
    assert broken.hint.endswith(f"{RUNBOOK}#uri-encoding")

    other_user = by_name(
        report(uri={"given": True, "ok": True, "current_user": "x", "database": "n8n"})
    )["uri"]
    assert other_user.message == 'uri logs in as "x" on "n8n", expected "n8n" on "n8n"'

    misparsed = by_name(
        report(
            uri={
                "given": True,
                "ok": True,
                "current_user": "n8n",
                "database": "n8n",
                "parsed": {"host": "cd@pg", "port": "5432", "dbname": "n8n", "user": "n8n"},
                "expected": {"host": "pg", "port": "5432", "dbname": "n8n", "user": "n8n"},
            }
        )
    )["uri"]
    assert misparsed.status == "fail"
    assert misparsed.message == "libpq reads the Secret's uri as host 'cd@pg' (expected 'pg')"


def asking(keys: list[str], measured: dict[str, Any]) -> dict[str, Any]:
    """GOOD with connection keys asked for (as `provider.with_asked_keys` puts them) and the
    probe's entries for them."""
    return report(target={**GOOD["target"], "connection_keys": keys}, connection_keys=measured)


CONNECTED = {"given": True, "ok": True, "error": None, "current_user": "n8n", "database": "n8n"}


def test_connection_keys_pass_by_name_and_fail_naming_the_key() -> None:
    passed = by_name(asking(["APP_DSN"], {"APP_DSN": CONNECTED}))["uri"]
    assert (passed.status, passed.message) == (
        "pass",
        "the Secret's uri connects as given; so do APP_DSN",
    )
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "not tried": ({}, 'Secret key "APP_DSN" was not tried'),
        "not in the Secret": (
            {"APP_DSN": {"given": False, "ok": False, "error": None}},
            "the Secret has no key 'APP_DSN'",
        ),
        "refused": (
            {"APP_DSN": {"given": True, "ok": False, "error": "password authentication failed"}},
            'Secret key "APP_DSN" does not connect as given: password authentication failed',
        ),
        "someone else": (
            {"APP_DSN": {**CONNECTED, "current_user": "paperless", "database": "paperless"}},
            'Secret key "APP_DSN" logs in as "paperless" on "paperless", expected "n8n" on "n8n"',
        ),
        "misread": (
            {
                "APP_DSN": {
                    **CONNECTED,
                    "parsed": {"host": "pg", "port": "5432", "dbname": "x", "user": "n8n"},
                    "expected": {"host": "pg", "port": "5432", "dbname": "n8n", "user": "n8n"},
                }
            },
            "libpq reads Secret key \"APP_DSN\" as dbname 'x' (expected 'n8n')",
        ),
    }
    for case, (measured, message) in cases.items():
        outcome = by_name(asking(["APP_DSN"], measured))["uri"]
        assert (outcome.status, outcome.message) == ("fail", message), case
    # a key nobody asked for is not judged: the inputs say which keys count
    assert by_name(asking([], {"X": {"given": False}}))["uri"].status == "pass"


def test_uri_is_skipped_when_login_failed() -> None:
    r = report(
        login={"ok": False, "error": "password authentication failed"},
        uri={"given": True, "ok": False, "error": "password authentication failed"},
    )
    assert by_name(r)["uri"].status == "skip"


def test_crud_failures() -> None:
    failed = by_name(
        report(
            crud={
                "steps": [],
                "failed_step": "create",
                "error": "ERROR: permission denied for schema public LINE 1: CREATE TABLE x ... ^",
            }
        )
    )["crud"]
    assert failed.status == "fail"
    assert failed.message == (
        "create on a scratch table failed: permission denied for schema public"
    )
    assert failed.hint.endswith(f"{RUNBOOK}#crud")

    wrong_rows = by_name(report(crud={**GOOD["crud"], "updated": "probe"}))["crud"]
    assert wrong_rows.status == "fail"
    assert "expected 'probe' and 'updated'" in wrong_rows.message


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"rolsuper": True}, "SUPERUSER"),
        ({"rolcreaterole": True}, "CREATEROLE"),
        ({"rolcreatedb": True}, "CREATEDB"),
        ({"rolreplication": True}, "REPLICATION"),
        ({"rolbypassrls": True}, "BYPASSRLS"),
        ({"rolsuper": True, "rolbypassrls": True}, "SUPERUSER, BYPASSRLS"),
    ],
)
def test_privileges_fail_on_each_flag(flags: dict[str, bool], words: str) -> None:
    check = by_name(report(privileges={**GOOD["privileges"], **flags}))["privileges"]
    assert check.status == "fail"
    assert check.message == f"the app role has {words}"
    assert check.hint.endswith(f"{RUNBOOK}#excess-privileges")


def test_privileges_unreadable_or_incomplete_fail() -> None:
    assert by_name(report(privileges={"error": "boom"}))["privileges"].status == "fail"
    assert by_name(report(privileges={"rolsuper": False}))["privileges"].status == "fail"


def iso(**changes: Any) -> dict[str, Any]:
    """GOOD's isolation part with some parts replaced (nested dicts merged one level deep)."""
    doc: dict[str, Any] = copy.deepcopy(GOOD["isolation"])
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return doc


def isolation_of(isolation: Any) -> CheckOutcome:
    return by_name(report(isolation=isolation))["isolation"]


def test_isolation_passes_when_every_part_holds() -> None:
    good = isolation_of(iso())
    assert good.status == "pass"
    assert good.message == (
        "2 other apps, 4 other databases that accept connections: none reachable, no other "
        'app\'s role (nor PUBLIC) may connect here; login to "paperless" refused'
    )


def test_isolation_pass_names_the_allow_list() -> None:
    good = isolation_of(iso(allowed=["reporting", "wiki ro"]))
    assert good.status == "pass"
    assert 'none reachable (allowed: "reporting", "wiki ro"), no other' in good.message


def test_isolation_without_peers_still_covers_the_server() -> None:
    """No peers is no longer a pass by itself: the other databases are still checked."""
    postgres_open = isolation_of(
        iso(peers=0, outbound={"reachable": ["postgres"]}, login_target=None, refused_login=None)
    )
    assert postgres_open.status == "fail"
    assert postgres_open.message == (
        'the app can connect to databases other than its own: "postgres"'
    )
    alone = isolation_of(
        iso(peers=0, outbound={"checked": 0}, login_target=None, refused_login=None)
    )
    assert alone.status == "pass"
    assert alone.message.startswith("0 other apps, 0 other databases that accept connections: ")
    assert alone.message.endswith("; no other database to prove a refused login against")


def test_isolation_outbound_names_every_reachable_database() -> None:
    out = isolation_of(iso(outbound={"reachable": ["paperless", "postgres", "template1"]}))
    assert out.status == "fail"
    assert out.message == (
        'the app can connect to databases other than its own: "paperless", "postgres", "template1"'
    )
    assert out.hint.startswith(
        "revoke it: REVOKE CONNECT, TEMPORARY ON DATABASE paperless, postgres, template1 FROM "
        "PUBLIC (and FROM n8n); list the databases no app owns in "
        "postgres-apps:postgres.hardenDatabases, or a database the app may use on purpose in "
        "postgres-apps:verification.allowedDatabases; "
    )
    assert out.hint.endswith(f"{RUNBOOK}#isolation")


def test_isolation_outbound_names_temporary_too() -> None:
    out = isolation_of(
        iso(outbound={"reachable": ["postgres", "template1"], "temporary": ["postgres"]})
    )
    assert out.message == (
        'the app can connect to databases other than its own: "postgres", "template1"; '
        'it may also create temporary tables in: "postgres"'
    )


def test_isolation_hint_quotes_names_sql_needs_quoted() -> None:
    out = isolation_of(iso(outbound={"reachable": ['My "DB"', "ok_db"]}))
    assert 'REVOKE CONNECT, TEMPORARY ON DATABASE "My ""DB""", ok_db FROM PUBLIC' in out.hint
    assert sql_ident("n8n") == "n8n"
    assert sql_ident("Upper") == '"Upper"'
    assert sql_ident("9lives") == '"9lives"'


def test_isolation_inbound_names_the_roles_and_the_grant_to_remove() -> None:
    out = isolation_of(iso(inbound={"roles": ["wiki"]}))
    assert out.status == "fail"
    assert out.message == 'other apps\' roles can connect to this app\'s database "n8n": "wiki"'
    assert "REVOKE CONNECT ON DATABASE n8n FROM wiki" in out.hint


def test_isolation_inbound_public_connect_fails() -> None:
    out = isolation_of(iso(inbound={"public_connect": True}))
    assert out.status == "fail"
    assert out.message == 'PUBLIC holds CONNECT on this app\'s database "n8n"'
    assert "REVOKE CONNECT, TEMPORARY ON DATABASE n8n FROM PUBLIC" in out.hint


def test_isolation_every_failed_part_is_named_at_once() -> None:
    out = isolation_of(
        iso(outbound={"reachable": ["paperless"]}, inbound={"public_connect": True, "roles": ["x"]})
    )
    assert out.message.count("; ") == 2, out.message
    for part in ("databases other than its own", "PUBLIC holds CONNECT", "other apps' roles"):
        assert part in out.message
    assert "(PUBLIC's grant covers them)" in out.message
    assert "FROM x" not in out.hint  # PUBLIC's grant is the one to remove first


def test_isolation_refused_login_must_be_refused_with_permission_denied() -> None:
    connected = isolation_of(
        iso(refused_login={"database": "paperless", "connected": True, "error": None})
    )
    assert (connected.status, connected.message) == (
        "fail",
        'a login to "paperless" was not refused',
    )
    # already named as reachable by the query: not repeated
    both = isolation_of(
        iso(
            outbound={"reachable": ["paperless"]},
            refused_login={"database": "paperless", "connected": True, "error": None},
        )
    )
    assert both.message == 'the app can connect to databases other than its own: "paperless"'
    turned_away = isolation_of(
        iso(
            refused_login={
                "database": "paperless",
                "connected": False,
                "error": 'FATAL: no pg_hba.conf entry for host "10.0.0.9", user "n8n", '
                'database "paperless"',
            }
        )
    )
    assert turned_away.status == "fail"
    assert turned_away.message.startswith(
        "could not prove isolation (expected 'permission denied for database'): \"paperless\""
    )
    assert "pg_hba.conf must not turn the login away first" in turned_away.hint


def test_isolation_unknown_peers_fail() -> None:
    out = isolation_of(iso(outbound={"missing": ["gone"]}, inbound={"missing": ["gone_role"]}))
    assert out.status == "fail"
    assert out.message == 'peers unknown to the server: "gone", "gone_role"'


def test_isolation_query_error_fails_with_the_error() -> None:
    out = isolation_of(
        {"refused_login": None, "error": "ERROR: permission denied for table pg_database"}
    )
    assert out.status == "fail"
    assert out.message == "could not query the privileges: permission denied for table pg_database"


@pytest.mark.parametrize(
    ("isolation", "what"),
    [
        ([{"database": "paperless", "connected": False, "error": "x"}], "expected an object"),
        ("yes", "expected an object"),
        ({}, "peers must be a count"),
        ({"error": 1}, "error must be a string"),
        (iso(peers=True), "peers must be a count"),
        (iso(peers=-1), "peers must be a count"),
        (iso(peers="2"), "peers must be a count"),
        (iso(allowed=None), "allowed"),
        (iso(allowed=["x", 2]), "allowed"),
        (iso(outbound=None), "outbound.checked"),
        (iso(outbound={"checked": "4"}), "outbound.checked"),
        (iso(outbound={"checked": None}), "outbound.checked"),
        (iso(outbound={"reachable": "paperless"}), "outbound.reachable/temporary/missing"),
        (iso(outbound={"temporary": None}), "outbound.reachable/temporary/missing"),
        (iso(outbound={"missing": None}), "outbound.reachable/temporary/missing"),
        (iso(inbound=None), "inbound"),
        (iso(inbound={"roles": [1]}), "inbound"),
        (iso(inbound={"public_connect": None}), "public_connect"),
        (iso(inbound={"public_connect": "f"}), "public_connect"),
        (iso(login_target=7), "login_target"),
        (iso(refused_login=None), "refused_login"),  # a target, but no login reported
        (iso(login_target=None), "refused_login"),  # a login, but no target
        (iso(login_target="postgres"), "refused_login"),  # a login to another database
        ({**iso(), "refused_login": {"database": "paperless"}}, "refused_login"),
        (iso(refused_login={"connected": "false"}), "refused_login"),
    ],
)
def test_malformed_isolation_is_a_failure_not_a_pass(isolation: Any, what: str) -> None:
    out = isolation_of(isolation)
    assert out.status == "fail"
    assert out.message.startswith("malformed isolation report: ")
    assert what in out.message
    assert not judge(report(isolation=isolation), latency_budget_ms=100).ok


AWKWARD = "odd $(X) 'q\" \\ \u00e9"


def test_the_statement_carries_its_input_as_one_plain_literal() -> None:
    """No `$` (kubelet expansion), ASCII only, one line; quotes and backslashes escaped for an
    E'' string (read the same whatever standard_conforming_strings says)."""
    peers = [Peer("paperless", "paperless_role")]
    statement = isolation_statement(peers, ["reporting", AWKWARD])
    assert statement == ISOLATION_SQL.format(input=isolation_input(peers, [AWKWARD, "reporting"]))
    assert "$" not in statement
    assert statement.isascii()
    assert "\n" not in statement
    literal = isolation_input([], [AWKWARD])
    assert literal.startswith("E'") and literal.endswith("'")
    # what the server reads from the E'' literal (doubled quote, doubled backslash) is the JSON
    body = literal[2:-1].replace("''", "'").replace("\\\\", "\\")
    assert json.loads(body) == {"databases": [], "roles": [], "allowed": [AWKWARD]}


_SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|GRANT|REVOKE|WITH|FROM|TABLE|SET)\b"
    r"|\bpg_[a-z_]+|current_(database|setting)\(",
)
"""SQL as this project writes it (upper-case keywords) and the catalog names a query would use."""


def _code_lines(script: str) -> list[str]:
    """probe.sh without its comments (the header documents the PROBE_*_SQL variables)."""
    return [line for line in script.splitlines() if not line.lstrip().startswith("#")]


def test_probe_sh_carries_no_sql_of_its_own() -> None:
    """One source of SQL (`statements.py`): every statement probe.sh sends arrives in a
    PROBE_*_SQL variable, none is written in the script."""
    for line in _code_lines(PROBE_SCRIPT.read_text()):
        # variable names (PROBE_CRUD_SELECT_SQL …) are not SQL; psql meta-commands neither
        text = re.sub(r"PROBE_[A-Z_]+", "", line)
        assert not _SQL_WORDS.search(text), line


def test_the_sql_check_would_catch_a_literal() -> None:
    assert _SQL_WORDS.search("printf '%s\\n' 'SELECT 1;'")
    assert _SQL_WORDS.search('pq -c "DROP TABLE IF EXISTS $table"')
    assert not _SQL_WORDS.search(re.sub(r"PROBE_[A-Z_]+", "", '"${PROBE_PING_SQL:-}"'))


def test_probe_sh_sends_every_statement_it_is_given() -> None:
    script = PROBE_SCRIPT.read_text()
    env = probe_env([Peer("paperless", "paperless")], ["reporting"], probe_table("x"))
    for name in env:
        assert "${" + name + ":-}" in script, name


def test_the_statements_are_the_direct_runners() -> None:
    table = probe_table("seed")
    env = probe_env([], [], table)
    assert env["PROBE_LOGIN_SQL"] == LOGIN_SQL
    assert env["PROBE_PRIVILEGES_SQL"] == PRIVILEGES_SQL
    assert env["PROBE_URI_SQL"] == URI_SQL
    assert env["PROBE_PING_SQL"] == PING_SQL
    assert env["PROBE_ISOLATION_SQL"] == isolation_statement([], [])
    crud = crud_statements(table)
    assert list(crud) == list(CRUD_STEPS)
    for step, sql in crud.items():
        assert env[f"PROBE_CRUD_{step.upper()}_SQL"] == sql
        assert table in sql
    assert env["PROBE_CRUD_CLEANUP_SQL"] == f"DROP TABLE IF EXISTS {table}"
    for value in env.values():  # nothing the kubelet or psql would expand
        assert "$" not in value
        assert "\n" not in value
    with pytest.raises(ValueError, match="probe table"):
        crud_statements('x"; DROP TABLE y; --')
    assert probe_table("a") != probe_table("b")


def test_latency_budget_logic() -> None:
    # p95 of 1..10 is 10 and the median connect is 5: a budget of exactly 10 passes…
    assert by_name(GOOD, budget=10.0)["latency"].status == "pass"
    # …just under fails on p95; under 5 fails on connect too
    just_under = by_name(GOOD, budget=9.99)["latency"]
    assert just_under.status == "fail"
    assert "p95 10.0 ms > 9.99 ms" in just_under.message
    assert "connect" not in just_under.message.split("over budget")[1]
    zero = by_name(GOOD, budget=0.0)["latency"]
    assert zero.message.endswith("over budget (connect 5.0 ms > 0 ms; p95 10.0 ms > 0 ms)")
    assert zero.hint.endswith(f"{RUNBOOK}#latency")


def test_latency_without_timings_fails() -> None:
    check = by_name(report(roundtrips_ms=[]))["latency"]
    assert (check.status, check.message) == ("fail", "no timings were reported")


def test_error_message_lists_every_failure() -> None:
    r = report(
        privileges={**GOOD["privileges"], "rolsuper": True},
        isolation=iso(outbound={"reachable": ["paperless"]}),
    )
    message = judge(r, latency_budget_ms=100).error_message("n8n-db-credentials")
    assert message.startswith('app "n8n": check "privileges" failed: the app role has SUPERUSER')
    assert message.endswith(
        '; also failed: "isolation" (the app can connect to databases other than its own: '
        '"paperless")'
    )


def test_percentile_nearest_rank() -> None:
    assert percentile([3.0], 95) == 3.0
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([float(i) for i in range(1, 21)], 95) == 19.0
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)


PW = "Kq3vZt7/Wx9mPe2?Lr5sNb8@Hy4jDc6"


def test_redact_removes_the_password_and_its_fragments() -> None:
    assert redact(f"password is {PW}.", PW) == "password is <redacted>."
    assert redact('invalid integer value "Kq3vZt7" for connection option "port"', PW) == (
        'invalid integer value "<redacted>" for connection option "port"'
    )
    assert redact("query parameter: Lr5sNb8@Hy4jDc6@10.0.0.7:5432/n8n", PW) == (
        "query parameter: <redacted>@10.0.0.7:5432/n8n"
    )
    # Quoted pieces of ≥ 4 characters go unless they are known names; short coincidences stay.
    assert redact('user "n8n" on "Kq3v"', PW) == 'user "n8n" on "<redacted>"'
    assert redact('app "Kq3v" on "Kq3"', PW, keep={"Kq3v"}) == 'app "Kq3v" on "Kq3"'
    assert redact("app it-1-app and ab", PW) == "app it-1-app and ab"
    assert redact("anything", None) == "anything"


def test_redact_report_walks_everything() -> None:
    doc = {"a": [f"x {PW}", {"b": "Hy4jDc6@host"}], "n": 1, "none": None}
    assert redact_report(doc, PW) == {
        "a": ["x <redacted>", {"b": "<redacted>@host"}],
        "n": 1,
        "none": None,
    }


def test_every_runbook_anchor_is_known_and_documented() -> None:
    from pathlib import Path  # noqa: PLC0415

    repo = Path(__file__).resolve().parents[2]
    sources = "".join(
        p.read_text() for p in (repo / "components/postgres_apps/verification").glob("*.py")
    )
    used = set(re.findall(r'(?<![a-z_])hint\(\s*"([a-z_-]+)"', sources))
    used |= set(re.findall(r"RUNBOOK\}#([a-z_-]+)", sources))
    used |= {anchor for _, anchor, _ in _LOGIN_HINTS}
    assert used == RUNBOOK_ANCHORS
    docs = (repo / "docs/verification.md").read_text()
    for anchor in RUNBOOK_ANCHORS:
        assert f"`{anchor}`" in docs, anchor
    runbook = (repo / RUNBOOK).read_text()
    missing = [a for a in sorted(RUNBOOK_ANCHORS) if f'<a id="{a}"></a>' not in runbook]
    assert missing == [], f"hints link to anchors the runbook lacks: {missing}"
    with pytest.raises(ValueError, match="unknown runbook anchor"):
        _hint("no-such-anchor", "text")


def test_transport_error_after_a_good_tcp_connect_fails_login() -> None:
    """Direct mode: the socket opened, then libpq failed at transport level (server restarting)."""
    r = report(
        **NOT_MEASURED,
        dns=None,
        tcp={"ok": True, "ms": 0.4, "error": None},
        login={"ok": False, "error": "FATAL: the database system is starting up"},
    )
    verdict = judge(r, latency_budget_ms=100)
    assert [c.name for c in verdict.failed] == ["login"]
    assert verdict.failed[0].message == "FATAL: the database system is starting up"


def test_libpq_cannot_resolve_although_getent_did_fails_tcp() -> None:
    r = report(
        **NOT_MEASURED,
        login={"ok": False, "error": 'could not translate host name "pg.data.svc" to address'},
    )
    verdict = judge(r, latency_budget_ms=100)
    assert by_name(r)["dns"].status == "pass"
    assert [c.name for c in verdict.failed] == ["tcp"]


def test_no_login_is_never_a_pass() -> None:
    for login in (None, {"ok": False, "error": None}):
        verdict = judge(report(**NOT_MEASURED, login=login), latency_budget_ms=100)
        assert not verdict.ok
        assert [c.name for c in verdict.failed] == ["login"]


def test_a_check_missing_after_a_good_login_fails() -> None:
    verdict = judge(report(crud=None), latency_budget_ms=100)
    assert [c.name for c in verdict.failed] == ["crud"]
    assert verdict.failed[0].message.startswith("not measured although login worked")


# -- SQLSTATE first, English text as the fallback ----------------------------------------------

GERMAN = {
    "28P01": "FATAL:  Passwort-Authentifizierung für Benutzer »n8n« fehlgeschlagen",
    "3D000": "FATAL:  Datenbank »n8n« existiert nicht",
    "42501": "FATAL:  keine Berechtigung für Datenbank »n8n«",
    "53300": "FATAL:  zu viele Verbindungen für Rolle »n8n«",
}
"""What a server with `lc_messages = 'de_DE.UTF-8'` says (no German locale on the test machine,
so the integration tier cannot produce them: `locale -a` lists C and POSIX only)."""


@pytest.mark.parametrize(
    ("sqlstate", "anchor"),
    [
        ("28P01", "password-authentication-failed"),
        ("3D000", "database-does-not-exist"),
        ("42501", "permission-denied-for-database"),
        ("53300", "too-many-connections"),
    ],
)
def test_a_translated_login_error_classifies_by_its_sqlstate(sqlstate: str, anchor: str) -> None:
    error = GERMAN[sqlstate]
    assert classify_connect_error(error, sqlstate) == "login"
    verdict = judge(
        report(**NOT_MEASURED, login={"ok": False, "error": error, "sqlstate": sqlstate}),
        latency_budget_ms=100,
    )
    assert [c.name for c in verdict.failed] == ["login"]
    assert verdict.error_message("s").endswith(f"{RUNBOOK}#{anchor}")
    # without the SQLSTATE only the generic hint is left: the English text is the fallback
    assert login_hint(error).endswith(f"{RUNBOOK}#login")


@pytest.mark.parametrize("sqlstate", ["08006", "08001", "57P03", "57P01"])
def test_connection_class_sqlstates_are_transport(sqlstate: str) -> None:
    assert classify_connect_error("Verbindung fehlgeschlagen", sqlstate) == "tcp"


def test_the_sqlstate_wins_over_the_text() -> None:
    # an English text that reads like transport, but the server answered (it has a SQLSTATE)
    assert classify_connect_error("timed out waiting for the lock", "55P03") == "login"
    assert login_hint("no pg_hba.conf entry", "28P01").endswith("#password-authentication-failed")
    # 28000 names several causes: the text decides
    assert login_hint('role "x" does not exist', "28000").endswith("#role-does-not-exist")


def test_a_translated_refused_login_proves_isolation_by_its_sqlstate() -> None:
    for refused, status in (
        ({"error": GERMAN["42501"], "sqlstate": "42501"}, "pass"),
        ({"error": GERMAN["42501"]}, "fail"),  # no SQLSTATE, and not the English words
        ({"error": "FATAL:  permission denied for database", "sqlstate": None}, "pass"),
        ({"error": "FATAL:  permission denied for database", "sqlstate": "3D000"}, "fail"),
    ):
        login = {"database": "paperless", "connected": False, **refused}
        assert isolation_of(iso(refused_login=login)).status == status, refused


def test_sql_error_drops_the_verbose_location() -> None:
    verbose = 'ERROR:  relation "x" does not exist LINE 1: select * from x ^ LOCATION:  parse'
    assert sql_error(verbose) == 'relation "x" does not exist'
