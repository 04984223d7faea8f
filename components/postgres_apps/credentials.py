"""The app's Secret contents: a pure function of the connection facts.

Key names follow the CloudNativePG application Secret (`host`, `port`, `dbname`, `user`,
`username`, `password`, `uri`, `jdbc-uri`, `pgpass`) plus `DATABASE_URL`. Everything beyond them
is a template over the same facts (`TEMPLATE_FIELDS`, `${host}` style, `string.Template`): a
profile (`PROFILES`) is a named set of templates in the form a known application reads, and an app
(or the stack, for every app) adds its own (`secret.keys` in config).
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Template
from urllib.parse import quote, urlencode

BASE_KEYS = (
    "host",
    "port",
    "dbname",
    "user",
    "username",
    "password",
    "uri",
    "jdbc-uri",
    "pgpass",
    "DATABASE_URL",
)
TEMPLATE_FIELDS: Mapping[str, str] = {
    "host": "the host as the app reaches it (`postgres.host`)",
    "port": "the port as the app reaches it",
    "host_port": "host:port, an IPv6 host in brackets",
    "dbname": "the app's database",
    "user": "the app's login role",
    "password": "the generated password",
    "sslmode": "the libpq sslmode (`postgres.sslmode`)",
    "uri": "the `uri` key's libpq URI (with the password)",
    "jdbc_uri": "the `jdbc-uri` key's pgJDBC URL (with the password)",
}
"""What a template may name, `${name}`; `$$` is a literal `$`."""
PROFILES: Mapping[str, Mapping[str, str]] = {
    # n8n: https://docs.n8n.io/hosting/configuration/environment-variables/database/
    "n8n": {
        "DB_TYPE": "postgresdb",
        "DB_POSTGRESDB_HOST": "${host}",
        "DB_POSTGRESDB_PORT": "${port}",
        "DB_POSTGRESDB_DATABASE": "${dbname}",
        "DB_POSTGRESDB_USER": "${user}",
        "DB_POSTGRESDB_PASSWORD": "${password}",
    },
    # Paperless-ngx: https://docs.paperless-ngx.com/configuration/#database
    "paperless": {
        "PAPERLESS_DBENGINE": "postgresql",
        "PAPERLESS_DBHOST": "${host}",
        "PAPERLESS_DBPORT": "${port}",
        "PAPERLESS_DBNAME": "${dbname}",
        "PAPERLESS_DBUSER": "${user}",
        "PAPERLESS_DBPASS": "${password}",
    },
    # Gitea / Forgejo: `[database]` of app.ini as GITEA__database__<KEY>, which the official
    # images (rootful and rootless) write into app.ini at start:
    # https://docs.gitea.com/administration/config-cheat-sheet ("Database (database)" and
    # "Use environment variables to setup Gitea"). HOST is host:port. SSL_MODE is left to the
    # operator: Gitea takes only disable (its default), require and verify-full, no `prefer`.
    "gitea": {
        "GITEA__database__DB_TYPE": "postgres",
        "GITEA__database__HOST": "${host_port}",
        "GITEA__database__NAME": "${dbname}",
        "GITEA__database__USER": "${user}",
        "GITEA__database__PASSWD": "${password}",
    },
}
"""Each profile's keys and their templates (validated like an app's own by the unit tests)."""
PROFILE_KEYS: Mapping[str, tuple[str, ...]] = {name: tuple(t) for name, t in PROFILES.items()}


def _url_host(host: str) -> str:
    """IPv6 literals need brackets in a URL."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _pgpass_escape(field: str) -> str:
    r"""`.pgpass` fields: `\` and `:` are escaped with a backslash."""
    return field.replace("\\", "\\\\").replace(":", "\\:")


def postgres_uri(
    *, host: str, port: int, dbname: str, user: str, password: str, sslmode: str
) -> str:
    """libpq connection URI; user, password and database percent-encoded (RFC 3986)."""
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{_url_host(host)}:{port}/{quote(dbname, safe='')}?{urlencode({'sslmode': sslmode})}"
    )


def jdbc_uri(*, host: str, port: int, dbname: str, user: str, password: str, sslmode: str) -> str:
    """pgJDBC URL with the credentials as (percent-encoded) query parameters."""
    query = urlencode({"user": user, "password": password, "sslmode": sslmode}, safe="")
    return f"jdbc:postgresql://{_url_host(host)}:{port}/{quote(dbname, safe='')}?{query}"


def pgpass_line(*, host: str, port: int, dbname: str, user: str, password: str) -> str:
    """One `.pgpass` line (with its newline)."""
    fields = (host, str(port), dbname, user, password)
    return ":".join(_pgpass_escape(f) for f in fields) + "\n"


def render(template: str, facts: Mapping[str, str]) -> str:
    """One template over the connection facts (`TEMPLATE_FIELDS`; validated at config time)."""
    return Template(template).substitute(facts)


def secret_data(
    *,
    host: str,
    port: int,
    dbname: str,
    user: str,
    password: str,
    sslmode: str,
    profile: str | None = None,
    templates: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every key/value of the app's Secret `<name>-db-credentials`: the built-in keys, then the
    profile's, then the app's own templated keys (`templates`, key → template)."""
    uri = postgres_uri(
        host=host, port=port, dbname=dbname, user=user, password=password, sslmode=sslmode
    )
    jdbc = jdbc_uri(
        host=host, port=port, dbname=dbname, user=user, password=password, sslmode=sslmode
    )
    data = {
        "host": host,
        "port": str(port),
        "dbname": dbname,
        "user": user,
        "username": user,
        "password": password,
        "uri": uri,
        "jdbc-uri": jdbc,
        "pgpass": pgpass_line(host=host, port=port, dbname=dbname, user=user, password=password),
        "DATABASE_URL": uri,
    }
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    extra = {**(PROFILES[profile] if profile is not None else {}), **(templates or {})}
    if extra:
        facts = {
            "host": host,
            "port": str(port),
            "host_port": f"{_url_host(host)}:{port}",
            "dbname": dbname,
            "user": user,
            "password": password,
            "sslmode": sslmode,
            "uri": uri,
            "jdbc_uri": jdbc,
        }
        data.update({key: render(template, facts) for key, template in extra.items()})
    return data
