"""Property: whatever the stack config holds, `parse_settings` either refuses it with a
`ConfigError` or every name it accepts is usable as is — a PostgreSQL identifier, a Kubernetes
name, a `.pgpass` line and a connection URI that parse back to the same fields (issue 11).

The checks below are written independently of `postgres_apps.config` (their own patterns, their own
`.pgpass` reader after libpq's `passwordFromFile` in fe-connect.c, libpq's own URI parser through
psycopg), so a validator that lets something through is caught here rather than trusted.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from postgres_apps.config import TRUSTED_EXTENSIONS, ConfigError, parse_settings
from postgres_apps.credentials import secret_data
from postgres_apps.settings import StackSettings

PROPERTY_SETTINGS = settings(
    max_examples=250,
    deadline=timedelta(milliseconds=500),
    database=None,  # no .hypothesis/ directory in the tree; failures print their example
    suppress_health_check=[HealthCheck.too_slow],
)
"""Bounded so the test takes a few seconds on the 2-core CI machine."""

# -- independent definitions of "valid" -------------------------------------------------------

PG_IDENTIFIER = re.compile(r"\A[a-z_][a-z0-9_]*\Z")
"""What an app's role and database name must be: usable unquoted, the same in SQL and config."""
PG_RESERVED = {"postgres", "template0", "template1", "public", "none"} | {
    "current_user",
    "current_role",
    "session_user",
}
DNS_1123_LABEL = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
HOST_NAME = re.compile(
    r"\A[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\Z"
)


def assert_identifier(name: str) -> None:
    assert PG_IDENTIFIER.match(name), name
    assert len(name.encode()) <= 63, name


def assert_k8s_name(name: str) -> None:
    assert DNS_1123_LABEL.match(name), name
    assert len(name) <= 63, name


def assert_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        assert HOST_NAME.match(host), host
        assert len(host) <= 253, host


def read_pgpass_line(line: str) -> list[str]:
    """Fields of one `.pgpass` line as libpq reads them: `:` separates, `\\` escapes the next
    character, the newline ends the line, a line starting with `#` is a comment."""
    assert line.endswith("\n") and "\n" not in line[:-1] and "\r" not in line, line
    assert not line.startswith("#"), line
    fields = [""]
    chars = iter(line[:-1])
    for c in chars:
        if c == "\\":
            fields[-1] += next(chars)
        elif c == ":" and len(fields) < 5:
            fields.append("")
        else:
            fields[-1] += c
    return fields


# -- arbitrary input, biased towards what almost passes ----------------------------------------

PASSWORD_MARK = "S3CRET\u2603"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
suffixes = st.sampled_from(["", "", "", "\n", "\r\n", " ", "\t", "\x00", "-", "_", ".", "A", "é"])
near_names = st.builds(
    lambda head, tail: head + tail,
    st.from_regex(r"[a-z][-a-z0-9_]{0,52}", fullmatch=True),
    suffixes,
)
special_names = st.sampled_from(
    [
        "postgres",
        "template0",
        "template1",
        "pg-x",
        "public",
        "none",
        "default",
        "kube-system",
        "kube-x",
        "data",
        "apps",
        "my-app",
        "my_app",
        "a" * 48,
        "a" * 49,
    ]
)
valid_names = st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
names = st.one_of(valid_names, valid_names, near_names, special_names, st.text(max_size=12))
extensions = st.one_of(
    st.sampled_from(sorted(TRUSTED_EXTENSIONS)),
    st.sampled_from(["plpython3u", "dblink", "postgres_fdw", "adminpack", "file_fdw", "postgis"]),
    near_names,
)
hosts = st.one_of(
    st.from_regex(
        r"[A-Za-z0-9]([-A-Za-z0-9]{0,10}[A-Za-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True
    ),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.builds(
        lambda head, tail: head + tail,
        st.from_regex(r"[A-Za-z0-9][-A-Za-z0-9.:]{0,30}", fullmatch=True),
        suffixes,
    ),
    st.sampled_from(["localhost", "pg:5432", "[pg]", "fe80::1%eth0", "10.0.0.256", "-x"]),
    st.text(max_size=12),
)
apps = st.one_of(
    names,
    st.fixed_dictionaries(
        {"name": names},
        optional={
            "namespace": names,
            "extensions": st.lists(extensions, max_size=3),
            "connectionLimit": st.integers(-2, 20_000),
        },
    ),
)
postgres = st.fixed_dictionaries(
    {},
    optional={
        "host": hosts,
        "port": st.one_of(st.integers(-1, 70_000), json_values),
        "sslmode": st.sampled_from(["disable", "require", "verify-full", "prefer", "on"]),
        "adminHost": hosts,
        "adminSslmode": st.sampled_from(["disable", "require", "prefer"]),
        "adminUser": st.one_of(names, st.text(max_size=10)),
        "adminSecretNamespace": names,
        "allowInsecureAdmin": st.one_of(st.booleans(), st.booleans(), json_values),
        "hardenDatabases": st.one_of(st.lists(names, max_size=3), json_values),
    },
)
raw_configs = st.fixed_dictionaries(
    {},
    optional={
        "apps": st.one_of(
            st.lists(apps, max_size=4), st.lists(json_values, max_size=2), json_values
        ),
        "appsNamespace": names,
        "postgres": st.one_of(postgres, postgres, json_values),
        "allowedExtensions": st.one_of(st.lists(extensions, max_size=2), json_values),
        "namespacePerApp": st.one_of(st.booleans(), json_values),
        "verification": st.fixed_dictionaries(
            {}, optional={"allowedDatabases": st.lists(names, max_size=2), "image": names}
        ),
        "adminPassword": st.one_of(
            st.text(max_size=8).map(lambda t: PASSWORD_MARK + t), st.just({"secure": "v1:x"})
        ),
    },
)
passwords = st.text(
    alphabet=st.characters(
        exclude_categories=["Cs"], exclude_characters="\x00\n\r", max_codepoint=0x2FF
    ),
    min_size=1,
    max_size=40,
)


def assert_usable(s: StackSettings, password: str) -> None:
    pg = s.postgres
    assert_host(pg.host)
    assert_host(pg.admin_host)
    if pg.admin_sslmode == "disable" and not pg.allow_insecure_admin:
        assert (
            pg.admin_host in ("localhost", "localhost.")
            or ipaddress.ip_address(pg.admin_host).is_loopback
        )
    for database in (*pg.harden_databases, *s.verification.allowed_databases):
        assert_identifier(database)
    assert "template0" not in pg.harden_databases
    for namespace in s.namespaces:
        assert_k8s_name(namespace)
        assert not namespace.startswith("kube-")
        assert namespace not in ("default", pg.admin_secret_namespace)
    assert len({a.role_name for a in s.apps}) == len(s.apps)
    app_databases = {a.database_name for a in s.apps}
    assert not app_databases & set(pg.harden_databases)
    assert not app_databases & set(s.verification.allowed_databases)
    for app in s.apps:
        assert_identifier(app.role_name)
        assert app.role_name not in PG_RESERVED and not app.role_name.startswith("pg_")
        assert_k8s_name(app.name)
        assert_k8s_name(app.secret_name)
        assert set(app.extensions) <= TRUSTED_EXTENSIONS | set(s.allowed_extensions)
        if s.namespace_per_app:
            assert app.namespace in (app.name, *s.namespaces)
        data = secret_data(
            host=pg.host,
            port=pg.port,
            dbname=app.database_name,
            user=app.role_name,
            password=password,
            sslmode=pg.sslmode,
        )
        fields = (pg.host, str(pg.port), app.database_name, app.role_name, password)
        assert read_pgpass_line(data["pgpass"]) == list(fields)
        uri = urlsplit(data["uri"])
        assert uri.scheme == "postgresql"
        assert uri.hostname == pg.host.lower()
        assert uri.port == pg.port
        assert unquote(uri.path.removeprefix("/")) == app.database_name
        assert (unquote(uri.username or ""), unquote(uri.password or "")) == (
            app.role_name,
            password,
        )
        assert psycopg.conninfo.conninfo_to_dict(data["uri"]) == {
            "host": pg.host,
            "port": str(pg.port),
            "dbname": app.database_name,
            "user": app.role_name,
            "password": password,
            "sslmode": pg.sslmode,
        }


@PROPERTY_SETTINGS
@given(raw=raw_configs, password=passwords)
def test_accepted_config_is_usable_everywhere_or_refused(
    raw: dict[str, Any], password: str
) -> None:
    try:
        s = parse_settings(raw)
    except ConfigError as refused:
        event("refused")
        assert refused.problems
        assert all(p.startswith("postgres-apps:") for p in refused.problems)
        assert PASSWORD_MARK not in str(refused)  # a plain adminPassword is never echoed
        return
    event(f"accepted with {min(len(s.apps), 2)}+ apps")
    assert_usable(s, password)


@PROPERTY_SETTINGS
@given(apps=st.lists(near_names, min_size=1, max_size=5), namespace_per_app=st.booleans())
def test_near_valid_app_lists(apps: list[str], namespace_per_app: bool) -> None:
    """Apps only, names close to valid: most are accepted, so the URI and pgpass checks run."""
    try:
        s = parse_settings({"apps": apps, "namespacePerApp": namespace_per_app})
    except ConfigError as refused:
        event("refused")
        assert refused.problems
        return
    event("accepted")
    assert_usable(s, "p@ss:w/rd%?#&=+ \\x")


@PROPERTY_SETTINGS
@given(
    raw=st.fixed_dictionaries(
        {
            "apps": st.lists(
                st.one_of(
                    valid_names,
                    near_names,
                    st.fixed_dictionaries(
                        {"name": valid_names},
                        optional={
                            "namespace": names,
                            "extensions": st.lists(extensions, max_size=2),
                        },
                    ),
                ),
                min_size=1,
                max_size=4,
            ),
            "postgres": st.fixed_dictionaries(
                {"host": hosts, "port": st.integers(1, 65535)},
                optional={
                    "sslmode": st.sampled_from(["disable", "require", "verify-full"]),
                    "adminHost": hosts,
                    "adminSslmode": st.sampled_from(["disable", "require"]),
                },
            ),
        },
        optional={"namespacePerApp": st.booleans(), "appsNamespace": names},
    ),
    password=passwords,
)
def test_accepted_hosts_ports_and_apps(raw: dict[str, Any], password: str) -> None:
    """Hosts, ports and apps only, each close to valid: the Secret's pgpass line and URIs are
    checked for every host form the parser lets through."""
    try:
        s = parse_settings(raw)
    except ConfigError as refused:
        event("refused")
        assert refused.problems
        return
    event("accepted")
    assert_usable(s, password)
