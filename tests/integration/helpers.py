"""Helpers for the integration tests: run either runner against the test server, then judge."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from components.verification.checks import CheckOutcome, Verdict, judge
from components.verification.direct import DirectTarget, run_direct_probe
from components.verification.pod import PROBE_SCRIPT

from .pg_server import PgServer, ProvisionedApp

GENEROUS_BUDGET_MS = 60_000.0
"""Good cases must not depend on this (shared, loaded) machine's timings; the budget logic has
its own test with a budget of 0 ms."""


@dataclass(frozen=True)
class AppPair:
    """The app under test and one other app (for isolation)."""

    app: ProvisionedApp
    other: ProvisionedApp


def secret_uri(
    server: PgServer, app: ProvisionedApp, host: str, password: str | None = None
) -> str:
    """The Secret's uri, built by the real Secret builder (components.credentials)."""
    from components.credentials import postgres_uri  # noqa: PLC0415

    return postgres_uri(
        host=host,
        port=server.port,
        dbname=app.database,
        user=app.role,
        password=password if password is not None else app.password,
        sslmode="prefer",
    )


def run_direct(
    server: PgServer,
    app: ProvisionedApp,
    others: Sequence[str],
    *,
    password: str | None = None,
    uri: str | None = None,
    port: int | None = None,
) -> dict[str, Any]:
    return run_direct_probe(
        DirectTarget(
            app=app.name,
            host=server.host,
            port=port or server.port,
            database=app.database,
            user=app.role,
            password=password if password is not None else app.password,
            sslmode="prefer",
            uri=uri,
            secret_host=server.host,
            secret_port=port or server.port,
            other_databases=list(others),
            connect_timeout_s=3,
            roundtrips=10,
        )
    )


def run_script(
    server: PgServer,
    app: ProvisionedApp,
    others: Sequence[str],
    *,
    password: str | None = None,
    uri: str | None = None,
    host: str = "localhost",
    port: int | None = None,
) -> dict[str, Any]:
    """probe.sh outside a pod, with the env a pod gets from the Secret; DNS against localhost."""
    pw = password if password is not None else app.password
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "DB_HOST": host,
        "DB_PORT": str(port or server.port),
        "DB_NAME": app.database,
        "DB_USER": app.role,
        "DB_PASSWORD": pw,
        "DB_URI": uri if uri is not None else secret_uri(server, app, host, pw),
        "PROBE_APP": app.name,
        "PROBE_SSLMODE": "prefer",
        "PROBE_OTHER_DATABASES": " ".join(others),
        "PROBE_ROUNDTRIPS": "10",
        "PROBE_CONNECT_TIMEOUT": "3",
    }
    proc = subprocess.run(
        ["sh", str(PROBE_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr: {proc.stderr}"
    report: dict[str, Any] = json.loads(lines[-1])
    assert pw not in proc.stdout, "the probe printed the password"
    return report


RUNNERS = ("direct", "pod")


def run(
    runner: str,
    server: PgServer,
    app: ProvisionedApp,
    others: Sequence[str],
    *,
    budget_ms: float = GENEROUS_BUDGET_MS,
    **kwargs: Any,
) -> Verdict:
    """Either runner, then the one shared judge."""
    if runner == "direct":
        report = run_direct(server, app, others, **kwargs)
    else:
        report = run_script(server, app, others, **kwargs)
    return judge(report, latency_budget_ms=budget_ms)


def outcome(verdict: Verdict, name: str) -> CheckOutcome:
    return next(c for c in verdict.checks if c.name == name)
