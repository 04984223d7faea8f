"""The dynamic provider's create/update/diff/delete in direct mode against the real server."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from psycopg import sql

from postgres_apps.verification.provider import (
    INPUT_KEYS,
    OUTPUT_KEYS,
    ConnectivityCheckProvider,
    VerificationError,
)
from postgres_apps.verification.report import CHECKS
from postgres_apps.verification.runbook import RUNBOOK

from .helpers import AppPair, check_inputs, secret_uri
from .pg_server import PgServer

pytestmark = pytest.mark.integration


def inputs(pg: PgServer, apps: AppPair, **changes: Any) -> dict[str, Any]:
    """The property bag the engine hands the provider (secrets already unwrapped)."""
    props: dict[str, Any] = {
        **check_inputs(pg, apps),
        # output placeholders, as the resource declares them
        **dict.fromkeys(OUTPUT_KEYS),
        "credentials_sha256": None,
        "__provider": "serialized-provider-blob",
    }
    props.update(changes)
    return props


def test_create_returns_results_and_no_secret(pg: PgServer, apps: AppPair) -> None:
    provider = ConnectivityCheckProvider()
    props = inputs(pg, apps)

    result = provider.create(props)

    assert result.id == f"{apps.app.name}-connectivity"
    outs = result.outs
    assert outs is not None
    assert outs["checks_passed"] == [c for c in CHECKS if c != "dns"]
    assert [c["name"] for c in outs["checks"]] == list(CHECKS)
    assert outs["mode"] == "direct"
    assert outs["server_version"].startswith("15.")
    for key in ("connect_ms", "roundtrip_p50_ms", "roundtrip_p95_ms"):
        assert isinstance(outs[key], float), key
    assert outs["checked_at"].endswith("Z")
    assert set(INPUT_KEYS) <= set(outs)
    assert "uri" not in outs  # the secret inputs are not copied…
    assert "password" not in outs
    assert len(outs["credentials_sha256"]) == 64  # …only a hash of them is
    dumped = json.dumps(outs)
    assert apps.app.password not in dumped
    assert props["uri"] not in dumped


def test_diff_and_update(pg: PgServer, apps: AppPair) -> None:
    provider = ConnectivityCheckProvider()
    props = inputs(pg, apps)
    created = provider.create(props).outs
    assert created is not None

    assert provider.diff("id", created, inputs(pg, apps)).changes is False
    assert provider.diff("id", created, inputs(pg, apps, rerun="always")).changes is True
    assert provider.diff("id", created, inputs(pg, apps, latency_budget_ms=50.0)).changes is True

    # Rotate the password (role and Secret together, as AppDatabase does): diff sees it, update
    # re-runs the probe with the new one and returns the new outputs.
    new_password = secrets.token_urlsafe(32)
    pg.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(apps.app.role), sql.Literal(new_password)
        )
    )
    rotated = inputs(
        pg, apps, password=new_password, uri=secret_uri(pg, apps.app, pg.host, new_password)
    )
    assert provider.diff("id", created, rotated).changes is True

    updated = provider.update("id", created, rotated).outs
    assert updated is not None
    assert updated["credentials_sha256"] != created["credentials_sha256"]
    assert updated["checks_passed"] == created["checks_passed"]
    assert updated["checked_at"] > created["checked_at"]  # microseconds: it really re-ran
    assert new_password not in json.dumps(updated)
    assert provider.diff("id", updated, rotated).changes is False


def test_create_fails_with_the_documented_message(pg: PgServer, apps: AppPair) -> None:
    wrong = secrets.token_urlsafe(32)
    props = inputs(pg, apps, password=wrong, uri=secret_uri(pg, apps.app, pg.host, wrong))

    with pytest.raises(VerificationError) as err:
        ConnectivityCheckProvider().create(props)

    text = str(err.value)
    assert text.startswith(f'app "{apps.app.name}": check "login" failed: ')
    assert f'password authentication failed for user "{apps.app.role}"' in text
    assert text.endswith(
        f" — the Secret {apps.app.name}-db-credentials and the role disagree; "
        f"run pulumi up --refresh to re-sync, or see {RUNBOOK}#password-authentication-failed"
    )
    assert wrong not in text


def test_update_fails_when_isolation_breaks(pg: PgServer, apps: AppPair) -> None:
    provider = ConnectivityCheckProvider()
    created = provider.create(inputs(pg, apps)).outs
    assert created is not None
    pg.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(
            sql.Identifier(apps.other.database)
        )
    )

    with pytest.raises(VerificationError, match=r'check "isolation" failed: the app can connect'):
        provider.update("id", created, inputs(pg, apps, rerun="always"))


def test_delete_in_direct_mode_touches_nothing(pg: PgServer, apps: AppPair) -> None:
    provider = ConnectivityCheckProvider()
    created = provider.create(inputs(pg, apps)).outs
    assert created is not None

    provider.delete("id", created)

    # The app still works: delete dropped nothing.
    again = provider.create(inputs(pg, apps)).outs
    assert again is not None
    assert again["checks_passed"] == created["checks_passed"]
