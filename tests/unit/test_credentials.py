"""The app's Secret contents: keys per profile, and connection strings that parse back exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg.conninfo
import pytest
import yaml

from postgres_apps.credentials import (
    BASE_KEYS,
    PROFILE_KEYS,
    PROFILES,
    TEMPLATE_FIELDS,
    pgpass_line,
    secret_data,
)
from tests.unit.conftest import REPO

HOST = "postgres-postgresql.data.svc.cluster.local"
AWKWARD = [
    "p@ss:w/rd%?#",
    "with space & ampersand=equals+plus",
    "back\\slash:colon",
    "ünïcødé-€",
    "quote'double\"semi;",
    "Plain0Alnum1Password2",
]


def data(password: str = "pw", **overrides: object) -> dict[str, str]:  # noqa: S107
    args: dict[str, object] = {
        "host": HOST,
        "port": 5432,
        "dbname": "app_test",
        "user": "app_test",
        "password": password,
        "sslmode": "prefer",
        "profile": None,
    }
    args.update(overrides)
    return secret_data(**args)  # type: ignore[arg-type]


def test_base_keys_exactly() -> None:
    d = data()
    assert set(d) == set(BASE_KEYS)
    assert d["host"] == HOST
    assert d["port"] == "5432"
    assert d["dbname"] == "app_test"
    assert d["user"] == d["username"] == "app_test"
    assert d["password"] == "pw"
    assert d["DATABASE_URL"] == d["uri"]


@pytest.mark.parametrize(
    ("profile", "fixed"),
    [("n8n", {"DB_TYPE": "postgresdb"}), ("paperless", {"PAPERLESS_DBENGINE": "postgresql"})],
)
def test_profile_keys(profile: str, fixed: dict[str, str]) -> None:
    d = data("s3cret", profile=profile, dbname="n8n", user="n8n", port=6543)
    assert set(d) == set(BASE_KEYS) | set(PROFILE_KEYS[profile])
    for key, value in fixed.items():
        assert d[key] == value
    prefix = "DB_POSTGRESDB_" if profile == "n8n" else "PAPERLESS_DB"
    host_key, port_key = f"{prefix}HOST", f"{prefix}PORT"
    assert d[host_key] == HOST
    assert d[port_key] == "6543"
    password_key = "DB_POSTGRESDB_PASSWORD" if profile == "n8n" else "PAPERLESS_DBPASS"
    assert d[password_key] == "s3cret"
    user_key = "DB_POSTGRESDB_USER" if profile == "n8n" else "PAPERLESS_DBUSER"
    assert d[user_key] == "n8n"
    db_key = "DB_POSTGRESDB_DATABASE" if profile == "n8n" else "PAPERLESS_DBNAME"
    assert d[db_key] == "n8n"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_is_a_valid_set_of_templates(profile: str) -> None:
    """Profiles are data: each template names only the connection facts, no key is built in."""
    for key, template in PROFILES[profile].items():
        parsed = Template(template)
        assert parsed.is_valid(), (profile, key)
        assert set(parsed.get_identifiers()) <= set(TEMPLATE_FIELDS), (profile, key)
        assert key not in BASE_KEYS, (profile, key)


def test_every_template_field_renders_its_fact() -> None:
    templates = {f"T_{name.upper()}": f"<${{{name}}}>" for name in TEMPLATE_FIELDS}
    d = data("p@ss:w/rd", templates=templates, port=6543)
    facts = {
        "host": HOST,
        "port": "6543",
        "host_port": f"{HOST}:6543",
        "dbname": "app_test",
        "user": "app_test",
        "password": "p@ss:w/rd",
        "sslmode": "prefer",
        "uri": d["uri"],
        "jdbc_uri": d["jdbc-uri"],
    }
    assert set(facts) == set(TEMPLATE_FIELDS)
    for name, fact in facts.items():
        assert d[f"T_{name.upper()}"] == f"<{fact}>", name


def test_templates_escape_dollars_and_bracket_ipv6_hosts() -> None:
    d = data(templates={"A": "$$${port}", "HP": "${host_port}"}, host="fd00::5")
    assert d["A"] == "$5432"
    assert d["HP"] == "[fd00::5]:5432"


def test_the_gitea_profile_names_host_and_port_together() -> None:
    d = data("s3cret", profile="gitea", host="fd00::7", port=6543)
    assert d["GITEA__database__DB_TYPE"] == "postgres"
    assert d["GITEA__database__HOST"] == "[fd00::7]:6543"
    assert d["GITEA__database__PASSWD"] == "s3cret"
    assert (d["GITEA__database__NAME"], d["GITEA__database__USER"]) == ("app_test", "app_test")


def test_unknown_profile_rejected() -> None:
    with pytest.raises(ValueError, match="unknown profile 'wordpress'"):
        data(profile="wordpress")


@pytest.mark.parametrize("password", AWKWARD)
def test_uri_parses_back(password: str) -> None:
    d = data(password, sslmode="require")
    for key in ("uri", "DATABASE_URL"):
        parts = urlsplit(d[key])
        assert parts.scheme == "postgresql"
        assert parts.hostname == HOST
        assert parts.port == 5432
        assert unquote(parts.username or "") == "app_test"
        assert unquote(parts.password or "") == password
        assert unquote(parts.path.lstrip("/")) == "app_test"
        assert parse_qs(parts.query) == {"sslmode": ["require"]}
        # no raw reserved character of the password leaks into the URI
        assert "@" not in (parts.password or "")


@pytest.mark.parametrize("password", AWKWARD)
def test_uri_as_libpq_reads_it(password: str) -> None:
    """libpq (through psycopg) decodes the URI to exactly the same parameters."""
    params = psycopg.conninfo.conninfo_to_dict(data(password)["uri"])
    assert params == {
        "host": HOST,
        "port": "5432",
        "dbname": "app_test",
        "user": "app_test",
        "password": password,
        "sslmode": "prefer",
    }


@pytest.mark.parametrize("password", AWKWARD)
def test_jdbc_uri_parses_back(password: str) -> None:
    jdbc = data(password)["jdbc-uri"]
    assert jdbc.startswith("jdbc:postgresql://")
    parts = urlsplit(jdbc.removeprefix("jdbc:"))
    assert parts.hostname == HOST
    assert parts.port == 5432
    assert parts.path == "/app_test"
    query = parse_qs(parts.query, keep_blank_values=True)
    assert query == {"user": ["app_test"], "password": [password], "sslmode": ["prefer"]}


def _parse_pgpass(line: str) -> list[str]:
    """Split a .pgpass line the way libpq does (backslash escapes `:` and `\\`)."""
    fields, current, escaped = [], "", False
    for ch in line.rstrip("\n"):
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            fields.append(current)
            current = ""
        else:
            current += ch
    fields.append(current)
    return fields


@pytest.mark.parametrize("password", AWKWARD)
def test_pgpass_escaped(password: str) -> None:
    line = data(password)["pgpass"]
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert _parse_pgpass(line) == [HOST, "5432", "app_test", "app_test", password]


def test_pgpass_escapes_colon_and_backslash() -> None:
    line = pgpass_line(host="h", port=1, dbname="d", user="u", password="a:b\\c")
    assert line == "h:1:d:u:a\\:b\\\\c\n"


def test_ipv6_host_is_bracketed_in_urls() -> None:
    d = data(host="fd00::1")
    assert urlsplit(d["uri"]).hostname == "fd00::1"
    assert "@[fd00::1]:5432/" in d["uri"]
    assert d["host"] == "fd00::1"


EXAMPLES = sorted((REPO / "docs" / "examples").glob("*.yaml"))
EXAMPLE_PROFILES: dict[str, str | None] = {
    "app-test": None,
    "n8n": "n8n",
    "paperless": "paperless",
    "gitea": "gitea",
}
OPERATOR_SECRETS: dict[str, set[str]] = {"n8n-encryption-key": {"key"}}
"""Secrets an example reads that the operator makes (each example says how), with their keys."""
POD_KINDS = ("Deployment", "Pod")


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_read_existing_secret_keys(path: Path) -> None:
    """Every Secret reference in docs/examples names an app Secret and a key it really has."""
    refs = 0
    for doc in yaml.safe_load_all(path.read_text()):
        for node in _walk(doc):
            ref = node.get("secretKeyRef") or node.get("secretRef")
            if not isinstance(ref, dict):
                continue
            refs += 1
            if ref["name"] in OPERATOR_SECRETS:
                assert ref.get("key") in OPERATOR_SECRETS[ref["name"]], f"{path.name}: {ref}"
                assert f"create secret generic {ref['name']}" in path.read_text()
                continue
            app = ref["name"].removesuffix("-db-credentials")
            assert ref["name"] == f"{app}-db-credentials"
            assert app in EXAMPLE_PROFILES
            keys = set(BASE_KEYS) | set(PROFILE_KEYS.get(EXAMPLE_PROFILES[app] or "", ()))
            if "key" in ref:
                assert ref["key"] in keys, f"{path.name}: {ref}"
    assert refs > 0


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_fit_pod_security_restricted(path: Path) -> None:
    pods = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] in POD_KINDS]
    assert pods, path.name
    for doc in pods:
        spec = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
