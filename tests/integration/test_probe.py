"""Both runners against a real PostgreSQL: the good case passes, each bad case fails its check.

The pod runner's script runs here outside a pod (`sh probe.sh`), with the env a pod gets from the
app's Secret and DNS against `localhost`.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

import pytest
from psycopg import sql

from postgres_apps.verification.judgement import judge
from postgres_apps.verification.pod import SECRET_VARS, parse_report
from postgres_apps.verification.report import CHECKS
from postgres_apps.verification.runbook import RUNBOOK

from .helpers import (
    GENEROUS_BUDGET_MS,
    RUNNERS,
    AppPair,
    PodApp,
    busybox_bin_dir,
    outcome,
    peers_of,
    run,
    run_pod_script,
    run_script,
    secret_data,
    secret_uri,
)
from .pg_server import PgServer, drop_app, harden, provision_app

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("runner", RUNNERS)
def test_good_case_passes_every_check(runner: str, pg: PgServer, apps: AppPair) -> None:
    verdict = run(runner, pg, apps.app, peers_of([apps.other]))

    assert verdict.ok, verdict.to_json()["checks"]
    expected = list(CHECKS) if runner.startswith("pod") else [c for c in CHECKS if c != "dns"]
    assert verdict.passed == expected
    if runner == "direct":
        assert outcome(verdict, "dns").status == "skip"
    else:
        assert "127.0.0.1" in outcome(verdict, "dns").message
    assert verdict.server_version is not None
    assert verdict.server_version.startswith("15.")
    assert verdict.connect_ms is not None
    assert verdict.roundtrip_p50_ms is not None
    assert verdict.roundtrip_p95_ms is not None
    assert verdict.roundtrip_p50_ms <= verdict.roundtrip_p95_ms
    assert len(verdict.report["roundtrips_ms"]) == 10
    assert verdict.report["crud"]["steps"] == [
        "create",
        "insert",
        "select",
        "update",
        "delete",
        "drop",
    ]
    assert f'login to "{apps.other.database}" refused' in outcome(verdict, "isolation").message
    iso = verdict.report["isolation"]
    assert iso["peers"] == 1
    assert iso["allowed"] == []
    # postgres, template1 (hardened) and the peer's database; template0 refuses connections
    assert iso["outbound"]["checked"] >= 3
    assert iso["outbound"] | {"checked": 3} == {
        "checked": 3,
        "reachable": [],
        "temporary": [],
        "missing": [],
    }
    assert iso["inbound"] == {"roles": [], "public_connect": False, "missing": []}
    assert iso["login_target"] == apps.other.database  # a peer first
    assert iso["refused_login"]["connected"] is False
    assert (
        f'permission denied for database "{apps.other.database}"' in iso["refused_login"]["error"]
    )
    # The scratch table is gone.
    with pg.admin(apps.app.database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'postgres_apps_probe_%'"
        ).fetchone()
    assert row == (0,)


def test_script_runs_under_the_pods_constraints(pg: PgServer, apps: AppPair) -> None:
    """uid 70 without a passwd entry (Debian images), read-only root, only /tmp writable.

    (On the Debian test machines uid 70 has no passwd entry either, so this is that case.)
    Needs root (`setpriv --reuid`, `unshare --mount`): without it the test FAILS, never skips.
    """
    if os.geteuid() != 0:
        pytest.fail(
            "test_script_runs_under_the_pods_constraints needs root (it switches to uid 70 with "
            "setpriv and mounts / read-only in a private mount namespace): run the integration "
            "tier as root, e.g. `sudo .venv/bin/pytest tests/integration`",
            pytrace=False,
        )
    report = run_script(pg, apps.app, peers_of([apps.other]), as_uid=70, read_only_root=True)
    verdict = judge(report, latency_budget_ms=GENEROUS_BUDGET_MS)
    assert verdict.ok, verdict.to_json()["checks"]
    assert verdict.passed == list(CHECKS)


@pytest.mark.parametrize("runner", RUNNERS)
def test_superuser_role_fails_privileges(runner: str, pg: PgServer, apps: AppPair) -> None:
    pg.execute(sql.SQL("ALTER ROLE {} SUPERUSER CREATEDB").format(sql.Identifier(apps.app.role)))

    verdict = run(runner, pg, apps.app, peers_of([apps.other]))

    assert not verdict.ok
    assert verdict.failed[0].name == "privileges"
    assert verdict.failed[0].message == "the app role has SUPERUSER, CREATEDB"
    # A superuser ignores CONNECT privileges: isolation fails too, and says so.
    assert outcome(verdict, "isolation").status == "fail"
    message = verdict.error_message("app-db-credentials")
    assert message.startswith(
        f'app "{apps.app.name}": check "privileges" failed: the app role has SUPERUSER, CREATEDB'
    )
    assert f"{RUNBOOK}#excess-privileges" in message


@pytest.mark.parametrize("runner", RUNNERS)
def test_connect_granted_to_public_fails_isolation(
    runner: str, pg: PgServer, apps: AppPair
) -> None:
    pg.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(
            sql.Identifier(apps.other.database)
        )
    )

    verdict = run(runner, pg, apps.app, peers_of([apps.other]))

    assert [c.name for c in verdict.failed] == ["isolation"]
    assert outcome(verdict, "isolation").message == (
        f'the app can connect to databases other than its own: "{apps.other.database}"'
    )
    assert "REVOKE CONNECT" in outcome(verdict, "isolation").hint


@pytest.mark.parametrize("runner", RUNNERS)
def test_wrong_password_fails_login(runner: str, pg: PgServer, apps: AppPair) -> None:
    verdict = run(runner, pg, apps.app, peers_of([apps.other]), password=secrets.token_urlsafe(24))

    assert [c.name for c in verdict.failed] == ["login"]
    assert outcome(verdict, "tcp").status == "pass"  # the server answered
    for later in ("uri", "crud", "privileges", "isolation", "latency"):
        assert outcome(verdict, later).status == "skip", later
    message = verdict.error_message(f"{apps.app.name}-db-credentials")
    assert message.startswith(f'app "{apps.app.name}": check "login" failed: ')
    assert f'password authentication failed for user "{apps.app.role}"' in message
    assert message.endswith(
        f" — the Secret {apps.app.name}-db-credentials and the role disagree; "
        f"run pulumi up --refresh to re-sync, or see {RUNBOOK}#password-authentication-failed"
    )


@pytest.mark.parametrize("runner", RUNNERS)
def test_server_stopped_fails_tcp(runner: str) -> None:
    server = PgServer.start()
    try:
        harden(server)
        app = provision_app(server, "stopped-app")
        assert run(runner, server, app, []).ok  # it works while the server runs…
        server.stop_server()

        verdict = run(runner, server, app, [])  # …and not once it is stopped

        assert [c.name for c in verdict.failed] == ["tcp"]
        tcp = outcome(verdict, "tcp")
        assert "Connection refused" in tcp.message
        assert f":{server.port}" in tcp.message
        assert f"{RUNBOOK}#connection-refused" in tcp.hint
        assert outcome(verdict, "login").status == "skip"
    finally:
        server.stop()


@pytest.mark.parametrize("runner", RUNNERS)
def test_latency_budget_of_zero_fails_latency(runner: str, pg: PgServer, apps: AppPair) -> None:
    verdict = run(runner, pg, apps.app, peers_of([apps.other]), budget_ms=0.0)

    assert [c.name for c in verdict.failed] == ["latency"]
    message = outcome(verdict, "latency").message
    assert "over budget" in message
    assert "> 0 ms" in message
    assert "latencyBudgetMs" in outcome(verdict, "latency").hint


SPECIAL_PASSWORD = "Kq3vZt7/Wx9mPe2?Lr5sNb8@Hy4jDc6"
"""Has '/', '?' and '@': harmless in the individual keys, fatal in a uri that is not encoded."""


@pytest.mark.parametrize("runner", RUNNERS)
def test_unencoded_uri_fails_uri(runner: str, pg: PgServer) -> None:
    app = provision_app(pg, "special-pw", password=SPECIAL_PASSWORD)
    try:
        host = pg.host if runner == "direct" else "localhost"
        bad_uri = (
            f"postgresql://{app.role}:{SPECIAL_PASSWORD}@{host}:{pg.port}/{app.database}"
            "?sslmode=prefer"
        )
        good = run(runner, pg, app, [], uri=secret_uri(pg, app, host))
        assert good.ok, good.to_json()["checks"]  # the encoded uri works with this password

        verdict = run(runner, pg, app, [], uri=bad_uri)

        assert [c.name for c in verdict.failed] == ["uri"]
        assert outcome(verdict, "login").status == "pass"
        uri = outcome(verdict, "uri")
        assert "percent-encoded" in uri.hint
        assert f"{RUNBOOK}#uri-encoding" in uri.hint
        # Not a fragment of the password in the message, nor anywhere in the report.
        text = verdict.error_message("special-pw-db-credentials") + repr(verdict.to_json())
        for fragment in SPECIAL_PASSWORD.replace("?", "/").replace("@", "/").split("/"):
            assert fragment not in text, fragment
    finally:
        drop_app(pg, app)


@pytest.mark.parametrize("runner", RUNNERS)
def test_connection_keys_are_logged_in_with_and_a_bad_one_fails_by_name(
    runner: str, pg: PgServer, apps: AppPair
) -> None:
    """Templated keys marked as connection strings: a key=value DSN and a URI that work pass the
    `uri` check by name; a DSN with a wrong password, or one that logs in as another app's role,
    fails it naming the key (and nothing of the password leaks)."""
    app, other = apps.app, apps.other
    host = pg.host if runner == "direct" else "localhost"
    dsn = f"host={host} port={pg.port} dbname={app.database} user={app.role}"
    good = {
        "APP_DSN": f"{dsn} password={app.password}",
        "APP_URL": secret_uri(pg, app, host),
    }
    verdict = run(runner, pg, app, peers_of([other]), connection_strings=good)
    assert verdict.ok, verdict.to_json()["checks"]
    assert outcome(verdict, "uri").message.endswith("; so do APP_DSN, APP_URL")

    wrong_password = {**good, "APP_BAD": f"{dsn} password=not-{app.password}"}
    verdict = run(runner, pg, app, peers_of([other]), connection_strings=wrong_password)
    assert [c.name for c in verdict.failed] == ["uri"]
    uri = outcome(verdict, "uri")
    assert uri.message.startswith('Secret key "APP_BAD" does not connect as given:'), uri.message
    assert "password authentication failed" in uri.message
    assert app.password not in repr(verdict.to_json())

    someone_else = {
        "APP_OTHER": f"host={host} port={pg.port} dbname={other.database} user={other.role} "
        f"password={other.password}"
    }
    verdict = run(runner, pg, app, peers_of([other]), connection_strings=someone_else)
    assert [c.name for c in verdict.failed] == ["uri"]
    message = outcome(verdict, "uri").message
    if runner == "direct":  # it reports how libpq parsed the string
        assert message.startswith('libpq reads Secret key "APP_OTHER" as dbname'), message
    else:
        assert message.startswith(f'Secret key "APP_OTHER" logs in as "{other.role}"'), message


def test_script_report_stays_valid_json_with_awkward_text(pg: PgServer, apps: AppPair) -> None:
    """Quotes, backslashes, tabs and newlines in what psql echoes must not break the report."""
    host = 'no"such\\host\tname\nx.invalid'
    report = run_script(pg, apps.app, peers_of([apps.other]), host=host)

    verdict = judge(report, latency_budget_ms=GENEROUS_BUDGET_MS)
    assert report["dns"]["host"] == host.replace("\t", " ").replace("\n", " ")
    assert report["dns"]["addresses"] == []
    assert outcome(verdict, "dns").status == "fail"
    assert verdict.failed[0].name == "dns"
    assert outcome(verdict, "login").status == "skip"


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_failed_statement_reports_its_sqlstate(runner: str, pg: PgServer, apps: AppPair) -> None:
    """Both runners copy the server's SQLSTATE next to the error; the text stays as the default
    verbosity prints it (probe.sh runs psql with VERBOSITY=verbose to get the code)."""
    role = sql.Identifier(apps.app.role)
    pg.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))

    verdict = run(runner, pg, apps.app, peers_of([apps.other]))

    crud = verdict.report["crud"]
    assert crud["failed_step"] == "create"
    assert crud["sqlstate"] == "25006"  # read_only_sql_transaction
    assert "25006" not in crud["error"]
    assert "LOCATION" not in crud["error"]
    assert outcome(verdict, "crud").message == (
        "create on a scratch table failed: cannot execute CREATE TABLE in a read-only transaction"
    )


@pytest.mark.parametrize(
    "uri_options", ["", "?options=-c%20statement_timeout%3D0"], ids=["plain", "uri-disables-it"]
)
def test_the_uri_connection_has_the_statement_timeout(
    pg: PgServer, apps: AppPair, uri_options: str
) -> None:
    """The direct runner's uri connection gets the probe's statement_timeout like the others,
    even when the uri itself turns it off: a statement longer than it is cancelled."""

    import psycopg  # noqa: PLC0415
    from psycopg import conninfo  # noqa: PLC0415

    from postgres_apps.verification import direct  # noqa: PLC0415

    app = apps.app
    uri = secret_uri(pg, app, pg.host, app.password) + uri_options.replace("?", "&", 1)
    target = direct.DirectTarget(
        app=app.name,
        host=pg.host,
        port=pg.port,
        database=app.database,
        user=app.role,
        password=app.password,
        uri=uri,
        connect_timeout_s=1,
    )
    common = {"options": direct.statement_timeout_options(target.connect_timeout_s)}
    start = time.monotonic()
    out = direct._uri(target, common, psycopg, conninfo, uri_sql="SELECT pg_sleep(5)")
    assert time.monotonic() - start < 4
    assert out["ok"] is False
    assert out["sqlstate"] == "57014"  # query_canceled
    assert "statement timeout" in out["error"]


def test_direct_gate_passes_a_role_limited_to_one_connection(pg: PgServer) -> None:
    """Direct mode holds one session of the role at a time. (The wait for a closed session's
    server process, `direct._connect`, is pinned by a unit test: the race it covers showed in
    the benchmark under load, not reliably here.)"""
    one = provision_app(pg, "limit-one", connection_limit=1)
    other = provision_app(pg, "limit-one-peer")
    try:
        for _ in range(5):
            verdict = run("direct", pg, one, peers_of([other]))
            assert verdict.ok, verdict.to_json()["checks"]
    finally:
        drop_app(pg, one)
        drop_app(pg, other)


@pytest.mark.parametrize("limit", [1, 2])
def test_pod_gate_needs_two_sessions_of_the_role(pg: PgServer, limit: int) -> None:
    """Why the config refuses `connectionLimit` < 2 with the pod-mode gate (config.GATE_SESSIONS):
    psql's `\\connect` opens the next session before it closes the previous one."""
    app = provision_app(pg, f"pod-limit-{limit}", connection_limit=limit)
    other = provision_app(pg, f"pod-limit-{limit}-peer")
    try:
        verdict = run("pod", pg, app, peers_of([other]))
        if limit == 1:
            assert not verdict.ok
            failed = {c.name for c in verdict.failed}
            assert failed & {"latency", "login"}, verdict.to_json()["checks"]
        else:
            assert verdict.ok, verdict.to_json()["checks"]
    finally:
        drop_app(pg, app)
        drop_app(pg, other)


def psql_that_records_its_env(pg: PgServer, tmp_path: Path) -> tuple[Path, Path]:
    """A `psql` that writes its environment to a file of its own, then runs the real one."""
    bin_dir, dumps = tmp_path / "bin", tmp_path / "env"
    bin_dir.mkdir()
    dumps.mkdir()
    wrapper = bin_dir / "psql"
    wrapper.write_text(f'#!/bin/sh\n/usr/bin/env -0 >"{dumps}/$$"\nexec "{pg.bin}/psql" "$@"\n')
    wrapper.chmod(0o755)
    return bin_dir, dumps


@pytest.mark.parametrize("shell", ["system", "busybox"])
def test_a_probe_pod_gives_each_apps_psql_only_that_apps_secret(
    pg: PgServer, apps: AppPair, tmp_path: Path, shell: str
) -> None:
    """Two apps in one probe container (the env the pod builder makes, filled as the kubelet
    would): each passes with its own role, and no psql the probe starts sees another app's
    password or any app's prefixed variables — a neighbour's credentials never reach a probe."""
    bin_dir, dumps = psql_that_records_its_env(pg, tmp_path)
    base = str(busybox_bin_dir(pg.bin)) if shell == "busybox" else os.environ["PATH"]
    members = [
        PodApp(apps.app, peers_of([apps.other]), secret_data(pg, apps.app)),
        PodApp(apps.other, peers_of([apps.app]), secret_data(pg, apps.other)),
    ]
    sections = run_pod_script(pg, members, path=f"{bin_dir}:{base}")
    for index, member in enumerate(members):
        report = parse_report(sections[index])
        assert report is not None, sections[index]
        assert report["app"] == member.app.name
        assert report["login"]["current_user"] == member.app.role
        verdict = judge(report, latency_budget_ms=GENEROUS_BUDGET_MS)
        assert verdict.ok, verdict.to_json()["checks"]
    envs = [
        dict(kv.split("=", 1) for kv in f.read_text().split("\0") if "=" in kv)
        for f in dumps.iterdir()
    ]
    # every psql of both apps' probes: login + connect, facts + round trips, crud, uri, the
    # refused login
    per_app = [sum(env.get("DB_USER") == m.app.role for env in envs) for m in members]
    assert per_app == [5, 5], per_app
    for env in envs:
        own = next(m for m in members if env.get("DB_USER") == m.app.role)
        other = next(m for m in members if m is not own)
        # (the uri session runs with the PG* variables unset: only DB_URI)
        assert env.get("PGPASSWORD", own.app.password) == own.app.password
        assert not [k for k in env if re.fullmatch(r"P[0-9]+_.*", k)], sorted(env)
        assert other.app.password not in "\0".join(env.values())


def test_a_missing_secret_or_key_fails_that_app_alone_in_a_probe_pod(
    pg: PgServer, apps: AppPair
) -> None:
    """One app's Secret lacks `uri`, another's is missing: each is reported for itself (optional
    refs leave the variables unset), the app with a whole Secret still probes and passes."""
    third = provision_app(pg, "probe-pod-third")
    try:
        broken = {k: v for k, v in secret_data(pg, apps.app).items() if k != "uri"}
        members = [
            PodApp(apps.app, peers_of([apps.other]), broken),
            PodApp(third, peers_of([apps.app]), {}),
            PodApp(apps.other, peers_of([apps.app]), secret_data(pg, apps.other)),
        ]
        sections = run_pod_script(pg, members)
        assert sections[0].strip() == "@missing DB_URI", sections[0]
        assert sections[1].strip() == "@missing " + " ".join(SECRET_VARS), sections[1]
        report = parse_report(sections[2])
        assert report is not None, sections[2]
        assert judge(report, latency_budget_ms=GENEROUS_BUDGET_MS).ok
    finally:
        drop_app(pg, third)
