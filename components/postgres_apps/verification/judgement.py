"""The judgement: a probe report (either runner) → a verdict, per check pass / fail / skip.

Everything here is pure (no I/O), so every failure message is unit-tested once for both runners.
What an error means comes from `pg_errors` (SQLSTATE first), the links from `runbook`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from postgres_apps.verification.pg_errors import (
    classify_connect_error,
    is_connect_privilege_refusal,
    login_hint,
    sql_error,
)
from postgres_apps.verification.report import (
    CHECKS,
    CRUD_STEPS,
    PRIVILEGE_FLAGS,
    REPORT_SCHEMA,
    CheckOutcome,
    Verdict,
)
from postgres_apps.verification.runbook import hint

# -------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    if not samples:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or f < 0:
        return None
    return round(f, 3)


# ---------------------------------------------------------------------------------------------
# The judges, one per check
# ---------------------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def judge_dns(report: Mapping[str, Any]) -> CheckOutcome:
    dns = _dict(report.get("dns"))
    if dns is None:
        return CheckOutcome("dns", "skip", "not measured by this runner (pod mode only)")
    host = str(dns.get("host") or "")
    addresses = [str(a) for a in dns.get("addresses") or []]
    if addresses:
        return CheckOutcome("dns", "pass", f"{host} resolves to {', '.join(addresses)}")
    seen = dns.get("error") or "no address returned"
    return CheckOutcome(
        "dns",
        "fail",
        f"{host} does not resolve ({seen})",
        hint(
            "dns",
            "check postgres-apps:host (the Service name, e.g. "
            "postgres-postgresql.data.svc.cluster.local) and that the Service exists",
        ),
    )


def _sqlstate(facts: Mapping[str, Any]) -> str | None:
    """The SQLSTATE a runner reported next to an error (optional in the report; none for a
    failed login, see `pg_errors`)."""
    code = facts.get("sqlstate")
    return code if isinstance(code, str) and len(code) == 5 else None


def _login_error(report: Mapping[str, Any]) -> str | None:
    login = _dict(report.get("login"))
    if login is None or login.get("ok"):
        return None
    return str(login.get("error") or "unknown error")


def judge_tcp(report: Mapping[str, Any]) -> CheckOutcome:
    target = _dict(report.get("target")) or {}
    where = f"{target.get('host')}:{target.get('port')}"
    tcp = _dict(report.get("tcp"))
    if tcp is not None and tcp.get("ok") is not None:
        if tcp["ok"]:
            ms = _ms(tcp.get("ms"))
            return CheckOutcome("tcp", "pass", f"{where} accepts connections ({ms} ms)")
        return _tcp_fail(where, str(tcp.get("error") or "connect failed"))
    # Not measured separately (the pod script): derive it from the login attempt.
    err = _login_error(report)
    login = _dict(report.get("login"))
    if login is None:
        return CheckOutcome("tcp", "skip", "not measured")
    cause = None if err is None else classify_connect_error(err, _sqlstate(login))
    if cause in (None, "login"):
        return CheckOutcome("tcp", "pass", f"{where} accepts connections (server answered)")
    assert err is not None  # noqa: S101 - cause is set only for an error
    if cause == "dns" and judge_dns(report).status == "fail":
        return CheckOutcome("tcp", "skip", f"{where}: name does not resolve (see dns)")
    return _tcp_fail(where, err)


def _tcp_fail(where: str, error: str) -> CheckOutcome:
    return CheckOutcome(
        "tcp",
        "fail",
        f"cannot open a connection to {where}: {error.strip()}",
        hint(
            "connection-refused",
            "is PostgreSQL running and is the endpoint right? (direct mode: the admin endpoint/"
            "port-forward; pod mode: the Service and NetworkPolicies)",
        ),
    )


def judge_login(report: Mapping[str, Any]) -> CheckOutcome:
    login = _dict(report.get("login"))
    if login is None:
        return CheckOutcome("login", "skip", "not attempted")
    target = _dict(report.get("target")) or {}
    who = f'user "{target.get("user")}" on database "{target.get("database")}"'
    if login.get("ok"):
        user = login.get("current_user")
        if user is not None and user != target.get("user"):
            return CheckOutcome(
                "login",
                "fail",
                f'logged in as "{user}", expected "{target.get("user")}"',
                hint("login", "the Secret {secret} names the wrong user; run pulumi up --refresh"),
            )
        return CheckOutcome("login", "pass", f"logged in as {who}")
    err = str(login.get("error") or "unknown error").strip()
    tcp = _dict(report.get("tcp"))
    tcp_measured_ok = tcp is not None and tcp.get("ok") is True
    sqlstate = _sqlstate(login)
    if classify_connect_error(err, sqlstate) != "login" and not tcp_measured_ok:
        # The tcp (or dns) check reports this error.
        return CheckOutcome("login", "skip", "no server to log in to (see tcp/dns)")
    return CheckOutcome("login", "fail", err, login_hint(err, sqlstate))


_URI_ENCODING_HINT: Final = hint(
    "uri-encoding",
    "user, password and database in the uri of Secret {secret} must be percent-encoded "
    "(the individual keys work); run pulumi up --refresh to rewrite it",
)


def _misread(entry: Mapping[str, Any]) -> list[str]:
    """How libpq parsed a connection string where it differs from the Secret's endpoint and
    credentials (the direct runner reports both; the pod runner neither)."""
    parsed, expected = _dict(entry.get("parsed")), _dict(entry.get("expected"))
    if parsed is None or expected is None:
        return []
    return [
        f"{k} {parsed.get(k)!r} (expected {expected.get(k)!r})"
        for k in ("host", "port", "dbname", "user")
        if str(parsed.get(k)) != str(expected.get(k))
    ]


def _uri_misparsed(uri: Mapping[str, Any]) -> CheckOutcome | None:
    """The direct runner reports how libpq parsed the uri: it must name the Secret's endpoint."""
    wrong = _misread(uri)
    if not wrong:
        return None
    return CheckOutcome(
        "uri", "fail", "libpq reads the Secret's uri as " + ", ".join(wrong), _URI_ENCODING_HINT
    )


def _logged_in_elsewhere(
    entry: Mapping[str, Any], target: Mapping[str, Any], label: str, fix: str
) -> CheckOutcome | None:
    """A connection string that logged in, but not as the app's role on its database."""
    user, db = entry.get("current_user"), entry.get("database")
    if (user, db) == (target.get("user"), target.get("database")):
        return None
    return CheckOutcome(
        "uri",
        "fail",
        f'{label} logs in as "{user}" on "{db}", expected "{target.get("user")}" on '
        f'"{target.get("database")}"',
        fix,
    )


def _uri_connected(uri: Mapping[str, Any], target: Mapping[str, Any]) -> CheckOutcome:
    fix = hint("uri", "the uri in Secret {secret} disagrees with its other keys")
    elsewhere = _logged_in_elsewhere(uri, target, "uri", fix)
    return elsewhere or CheckOutcome("uri", "pass", "the Secret's uri connects as given")


def judge_uri(report: Mapping[str, Any]) -> CheckOutcome:
    uri = _dict(report.get("uri"))
    if uri is None:
        return CheckOutcome("uri", "skip", "not attempted")
    if not uri.get("given"):
        return CheckOutcome(
            "uri",
            "fail",
            "the Secret has no uri",
            hint("uri", "the Secret {secret} lacks the key uri; run pulumi up --refresh"),
        )
    misparsed = _uri_misparsed(uri)
    if misparsed is not None:
        return misparsed
    if uri.get("ok"):
        outcome = _uri_connected(uri, _dict(report.get("target")) or {})
        return outcome if outcome.status == "fail" else judge_connection_keys(report, outcome)
    if _login_error(report) is not None:
        return CheckOutcome("uri", "skip", "login with the Secret's keys failed first")
    err = str(uri.get("error") or "unknown error").strip()
    return CheckOutcome(
        "uri", "fail", f"the Secret's uri does not connect as given: {err}", _URI_ENCODING_HINT
    )


_CONNECTION_KEY_HINT: Final = hint(
    "uri",
    "its template (postgres-apps:apps[].secret.keys or postgres-apps:secret.keys) must give a "
    "libpq connection string (URI or key=value) for the app's own role and database",
)


def judge_connection_keys(report: Mapping[str, Any], uri_passed: CheckOutcome) -> CheckOutcome:
    """Each key the config marks as a connection string (`target.connection_keys`) logged in
    as given, as the app's role on its database; the first that did not fails `uri`, by name."""
    target = _dict(report.get("target")) or {}
    asked = [str(k) for k in target.get("connection_keys") or []]
    measured = _dict(report.get("connection_keys")) or {}
    for key in asked:
        failed = _connection_key_failure(key, _dict(measured.get(key)), target)
        if failed is not None:
            return failed
    if not asked:
        return uri_passed
    return CheckOutcome(
        "uri", "pass", f"{uri_passed.message}; so do {', '.join(asked)}", uri_passed.hint
    )


def _connection_key_failure(
    key: str, entry: Mapping[str, Any] | None, target: Mapping[str, Any]
) -> CheckOutcome | None:
    label = f'Secret key "{key}"'
    if entry is None:
        return CheckOutcome(
            "uri",
            "fail",
            f"{label} was not tried",
            hint("probe-pod", "the probe did not report this key (probe bug or image)"),
        )
    if not entry.get("given"):
        return CheckOutcome("uri", "fail", f"the Secret has no key {key!r}", _CONNECTION_KEY_HINT)
    wrong = _misread(entry)
    if wrong:
        return CheckOutcome(
            "uri", "fail", f"libpq reads {label} as " + ", ".join(wrong), _CONNECTION_KEY_HINT
        )
    if not entry.get("ok"):
        err = str(entry.get("error") or "unknown error").strip()
        return CheckOutcome(
            "uri", "fail", f"{label} does not connect as given: {err}", _CONNECTION_KEY_HINT
        )
    return _logged_in_elsewhere(entry, target, label, _CONNECTION_KEY_HINT)


def judge_crud(report: Mapping[str, Any]) -> CheckOutcome:
    crud = _dict(report.get("crud"))
    if crud is None:
        return CheckOutcome("crud", "skip", "not attempted (login failed)")
    done = [str(s) for s in crud.get("steps") or []]
    failed_step = crud.get("failed_step")
    if failed_step is None and done == list(CRUD_STEPS):
        selected, updated = crud.get("selected"), crud.get("updated")
        if selected != "probe" or updated != "updated":
            return CheckOutcome(
                "crud",
                "fail",
                f"read back {selected!r} after insert and {updated!r} after update, "
                "expected 'probe' and 'updated'",
                hint("crud", "the scratch table returned wrong rows; check triggers/policies"),
            )
        return CheckOutcome("crud", "pass", "create, insert, select, update, delete, drop")
    step = failed_step or (CRUD_STEPS[len(done)] if len(done) < len(CRUD_STEPS) else "?")
    err = sql_error(str(crud.get("error") or "unknown error"))
    return CheckOutcome(
        "crud",
        "fail",
        f"{step} on a scratch table failed: {err}",
        hint(
            "crud",
            "the role must own its database (and so the public schema on PostgreSQL 15+); "
            "run pulumi up --refresh to restore ownership",
        ),
    )


_FLAG_WORD = {
    "rolsuper": "SUPERUSER",
    "rolcreaterole": "CREATEROLE",
    "rolcreatedb": "CREATEDB",
    "rolreplication": "REPLICATION",
    "rolbypassrls": "BYPASSRLS",
}


def judge_privileges(report: Mapping[str, Any]) -> CheckOutcome:
    priv = _dict(report.get("privileges"))
    if priv is None:
        return CheckOutcome("privileges", "skip", "not attempted (login failed)")
    if priv.get("error"):
        return CheckOutcome(
            "privileges",
            "fail",
            f"could not read the role's attributes: {priv['error']}",
            hint("privileges", "the role must be able to read pg_roles"),
        )
    missing = [f for f in PRIVILEGE_FLAGS if f not in priv]
    if missing:
        return CheckOutcome(
            "privileges", "fail", f"role attributes not reported: {', '.join(missing)}", ""
        )
    extra = [_FLAG_WORD[f] for f in PRIVILEGE_FLAGS if priv.get(f) is True]
    if extra:
        return CheckOutcome(
            "privileges",
            "fail",
            f"the app role has {', '.join(extra)}",
            hint(
                "excess-privileges",
                "someone altered the role by hand; run pulumi up --refresh to restore NOSUPERUSER "
                "NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
            ),
        )
    return CheckOutcome(
        "privileges", "pass", "no SUPERUSER, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS"
    )


def _str_list(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return list(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_]*")


def sql_ident(name: str) -> str:
    """A name as SQL would need it in a REVOKE (double-quoted unless plain lower case)."""
    return name if _PLAIN_IDENT.fullmatch(name) else '"' + name.replace('"', '""') + '"'


ISOLATION_REPAIR: Final = (
    "run it as admin (pulumi up --refresh repairs a GRANT made by hand, not an ACL reset to the "
    "default)"
)
"""How the REVOKE hints end. The postgresql provider reads a database grant with
`aclexplode(datacl)` (upstream `readDatabaseRolePriviges`): an explicit GRANT shows as drift, a
NULL ACL (the default, which gives PUBLIC CONNECT) reads as no privilege, so refresh cannot see it
(runbook `#isolation`)."""


_MALFORMED_HINT: Final = hint(
    "probe-pod", "the probe reported isolation in an unexpected shape (probe bug or image)"
)


def _isolation_shape_problem(iso: Any) -> str | None:
    """What is malformed in a report's `isolation` object (None: well-formed)."""
    if not isinstance(iso, dict):
        return f"expected an object, got {type(iso).__name__}"
    if iso.get("error"):
        return None if isinstance(iso["error"], str) else "error must be a string"
    out = _dict(iso.get("outbound")) or {}
    inb = _dict(iso.get("inbound")) or {}
    target = iso.get("login_target")
    login = iso.get("refused_login")
    rules = (
        (_count(iso.get("peers")), "peers must be a count"),
        (_str_list(iso.get("allowed")) is not None, "allowed must be a list of names"),
        (_count(out.get("checked")), "outbound.checked must be a count"),
        (
            all(_str_list(out.get(k)) is not None for k in ("reachable", "temporary", "missing")),
            "outbound.reachable/temporary/missing must be lists of names",
        ),
        (
            _str_list(inb.get("roles")) is not None and _str_list(inb.get("missing")) is not None,
            "inbound.roles/missing must be lists of names",
        ),
        (isinstance(inb.get("public_connect"), bool), "inbound.public_connect must be a boolean"),
        (target is None or isinstance(target, str), "login_target must be a name or null"),
        (
            (target is None and login is None)
            or (
                isinstance(login, dict)
                and login.get("database") == target
                and isinstance(login.get("connected"), bool)
            ),
            "refused_login needs the login_target's database and connected",
        ),
    )
    return next((what for ok, what in rules if not ok), None)


def _isolation_findings(
    iso: Mapping[str, Any], own_db: str, own_role: str
) -> tuple[list[str], list[str]]:
    """(what was seen, hints) for each part that failed; both empty when isolation holds."""
    reachable: list[str] = iso["outbound"]["reachable"]
    temporary: list[str] = iso["outbound"]["temporary"]
    roles: list[str] = iso["inbound"]["roles"]
    missing = [*iso["outbound"]["missing"], *iso["inbound"]["missing"]]
    login: Mapping[str, Any] | None = iso["refused_login"]
    seen: list[str] = []
    hints: list[str] = []
    if reachable:
        seen.append("the app can connect to databases other than its own: " + _quoted(reachable))
        if temporary:
            seen.append("it may also create temporary tables in: " + _quoted(temporary))
        hints.append(
            "revoke it: REVOKE CONNECT, TEMPORARY ON DATABASE "
            f"{', '.join(sql_ident(d) for d in reachable)} FROM PUBLIC (and FROM "
            f"{sql_ident(own_role)}); list the databases no app owns in "
            "postgres-apps:postgres.hardenDatabases, or a database the app may use on purpose "
            "in postgres-apps:verification.allowedDatabases"
        )
    if iso["inbound"]["public_connect"]:
        seen.append(f'PUBLIC holds CONNECT on this app\'s database "{own_db}"')
        hints.append(f"REVOKE CONNECT, TEMPORARY ON DATABASE {sql_ident(own_db)} FROM PUBLIC")
    if roles:
        # Through PUBLIC every role may connect: then PUBLIC's grant is the one to remove first.
        via = " (PUBLIC's grant covers them)" if iso["inbound"]["public_connect"] else ""
        seen.append(
            f"other apps' roles can connect to this app's database \"{own_db}\"{via}: "
            + _quoted(roles)
        )
        if not via:
            hints.append(
                f"remove the grant: REVOKE CONNECT ON DATABASE {sql_ident(own_db)} FROM "
                + ", ".join(sql_ident(r) for r in roles)
            )
    if login is not None:
        login_db = str(login["database"])
        if login["connected"]:
            if login_db not in reachable:
                seen.append(f'a login to "{login_db}" was not refused')
                hints.append(
                    f"REVOKE CONNECT, TEMPORARY ON DATABASE {sql_ident(login_db)} FROM PUBLIC"
                )
        elif not is_connect_privilege_refusal(str(login.get("error") or ""), _sqlstate(login)):
            seen.append(
                "could not prove isolation (expected 'permission denied for database'): "
                f'"{login_db}": {str(login.get("error") or "no error reported").strip()}'
            )
            hints.append(
                "the login must reach the server's CONNECT check (the database must exist and "
                "pg_hba.conf must not turn the login away first)"
            )
    if missing:
        seen.append("peers unknown to the server: " + _quoted(missing))
        hints.append("every other app's role and database must exist before this check runs")
    return seen, hints


def _isolation_pass_message(iso: Mapping[str, Any]) -> str:
    allowed: list[str] = iso["allowed"]
    note = f" (allowed: {_quoted(allowed)})" if allowed else ""
    login = iso["refused_login"]
    proof = (
        f'login to "{login["database"]}" refused'
        if login is not None
        else "no other database to prove a refused login against"
    )
    return (
        f"{iso['peers']} other apps, {iso['outbound']['checked']} other databases that accept "
        f"connections: none reachable{note}, no other app's role (nor PUBLIC) may connect here; "
        + proof
    )


def judge_isolation(report: Mapping[str, Any]) -> CheckOutcome:
    """Every database the app does not own (outbound), peer roles and PUBLIC (inbound), plus one
    real login that must be refused."""
    iso = report.get("isolation")
    if iso is None:
        return CheckOutcome("isolation", "skip", "not attempted (login failed)")
    problem = _isolation_shape_problem(iso)
    if problem is not None:
        return CheckOutcome(
            "isolation", "fail", f"malformed isolation report: {problem}", _MALFORMED_HINT
        )
    if iso.get("error"):
        return CheckOutcome(
            "isolation",
            "fail",
            f"could not query the privileges: {sql_error(str(iso['error']))}",
            hint("isolation", "the app role must be able to read pg_database and pg_roles"),
        )
    target = _dict(report.get("target")) or {}
    seen, hints = _isolation_findings(iso, str(target.get("database")), str(target.get("user")))
    if seen:
        return CheckOutcome(
            "isolation",
            "fail",
            "; ".join(seen),
            hint("isolation", "; ".join(hints) + f"; {ISOLATION_REPAIR}"),
        )
    return CheckOutcome("isolation", "pass", _isolation_pass_message(iso))


def connect_time(login: Mapping[str, Any]) -> float | None:
    """Median of the connect samples (both runners take 3), else the single `ms`."""
    samples = [v for v in (_ms(x) for x in login.get("connect_samples_ms") or []) if v is not None]
    if samples:
        return percentile(samples, 50)
    return _ms(login.get("ms"))


def judge_latency(report: Mapping[str, Any], budget_ms: float) -> CheckOutcome:
    login = _dict(report.get("login"))
    if login is None or not login.get("ok"):
        return CheckOutcome("latency", "skip", "not measured (login failed)")
    connect = connect_time(login)
    samples = [v for v in (_ms(x) for x in report.get("roundtrips_ms") or []) if v is not None]
    if connect is None or not samples:
        return CheckOutcome(
            "latency", "fail", "no timings were reported", hint("latency", "probe problem")
        )
    p50, p95 = percentile(samples, 50), percentile(samples, 95)
    seen = f"connect {connect} ms, round trip p50 {p50} ms / p95 {p95} ms over {len(samples)}"
    over = [
        f"{what} {value} ms > {budget_ms:g} ms"
        for what, value in (("connect", connect), ("p95", p95))
        if value > budget_ms
    ]
    if over:
        return CheckOutcome(
            "latency",
            "fail",
            f"{seen}: over budget ({'; '.join(over)})",
            hint(
                "latency",
                "the path to PostgreSQL is slow (node/network/CPU saturation) or the budget "
                "postgres-apps:verification.latencyBudgetMs is too tight",
            ),
        )
    return CheckOutcome("latency", "pass", f"{seen} (budget {budget_ms:g} ms)")


def judge(
    report: Mapping[str, Any], *, latency_budget_ms: float, checked_at: str | None = None
) -> Verdict:
    """Turn a raw probe report (either runner) into the verdict."""
    if report.get("schema") != REPORT_SCHEMA:
        raise ValueError(f"not a probe report (schema {report.get('schema')!r})")
    outcomes: tuple[CheckOutcome, ...] = (
        judge_dns(report),
        judge_tcp(report),
        judge_login(report),
        judge_uri(report),
        judge_crud(report),
        judge_privileges(report),
        judge_isolation(report),
        judge_latency(report, latency_budget_ms),
    )
    if tuple(o.name for o in outcomes) != CHECKS:  # the single list of checks, in order
        raise RuntimeError("judge() and CHECKS disagree")
    login_facts = _dict(report.get("login"))
    if (login_facts is None or not login_facts.get("ok")) and all(
        o.status != "fail" for o in outcomes
    ):
        # Safety net: whatever the classification, no login is never a pass.
        err = str((login_facts or {}).get("error") or "no login attempt was reported")
        sqlstate = _sqlstate(login_facts or {})
        outcomes = tuple(
            CheckOutcome("login", "fail", err, login_hint(err, sqlstate))
            if o.name == "login"
            else o
            for o in outcomes
        )
    elif login_facts is not None and login_facts.get("ok"):
        # After a good login every check but dns must have been measured.
        outcomes = tuple(
            CheckOutcome(
                o.name,
                "fail",
                f"not measured although login worked ({o.message})",
                hint("probe-pod", "the probe did not report this check (probe bug or image)"),
            )
            if o.status == "skip" and o.name != "dns"
            else o
            for o in outcomes
        )
    login = _dict(report.get("login")) or {}
    samples = [v for v in (_ms(x) for x in report.get("roundtrips_ms") or []) if v is not None]
    return Verdict(
        app=str(report.get("app")),
        runner=str(report.get("runner")),
        checks=outcomes,
        connect_ms=connect_time(login) if login.get("ok") else None,
        roundtrip_p50_ms=percentile(samples, 50) if samples else None,
        roundtrip_p95_ms=percentile(samples, 95) if samples else None,
        server_version=(str(login["server_version"]) if login.get("server_version") else None),
        checked_at=checked_at or str(report.get("finished_at") or report.get("started_at") or ""),
        report=report,
    )
