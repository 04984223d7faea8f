"""The app's Secret contents: a pure function of the connection parameters.

Key names follow the CloudNativePG application Secret (`host`, `port`, `dbname`, `user`,
`username`, `password`, `uri`, `jdbc-uri`, `pgpass`) plus `DATABASE_URL`; a profile adds the names
a known application reads.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from postgres_apps.settings import Profile

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
PROFILE_KEYS: dict[str, tuple[str, ...]] = {
    "n8n": (
        "DB_TYPE",
        "DB_POSTGRESDB_HOST",
        "DB_POSTGRESDB_PORT",
        "DB_POSTGRESDB_DATABASE",
        "DB_POSTGRESDB_USER",
        "DB_POSTGRESDB_PASSWORD",
    ),
    "paperless": (
        "PAPERLESS_DBENGINE",
        "PAPERLESS_DBHOST",
        "PAPERLESS_DBPORT",
        "PAPERLESS_DBNAME",
        "PAPERLESS_DBUSER",
        "PAPERLESS_DBPASS",
    ),
}
SENSITIVE_KEYS = frozenset(
    {
        "password",
        "uri",
        "jdbc-uri",
        "pgpass",
        "DATABASE_URL",
        "DB_POSTGRESDB_PASSWORD",
        "PAPERLESS_DBPASS",
    }
)
"""Keys whose value contains the password (all values end up secret anyway)."""


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


def secret_data(
    *,
    host: str,
    port: int,
    dbname: str,
    user: str,
    password: str,
    sslmode: str,
    profile: Profile | None = None,
) -> dict[str, str]:
    """Every key/value of the app's Secret `<name>-db-credentials`."""
    uri = postgres_uri(
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
        "jdbc-uri": jdbc_uri(
            host=host, port=port, dbname=dbname, user=user, password=password, sslmode=sslmode
        ),
        "pgpass": pgpass_line(host=host, port=port, dbname=dbname, user=user, password=password),
        "DATABASE_URL": uri,
    }
    if profile == "n8n":
        data.update(
            {
                "DB_TYPE": "postgresdb",
                "DB_POSTGRESDB_HOST": host,
                "DB_POSTGRESDB_PORT": str(port),
                "DB_POSTGRESDB_DATABASE": dbname,
                "DB_POSTGRESDB_USER": user,
                "DB_POSTGRESDB_PASSWORD": password,
            }
        )
    elif profile == "paperless":
        data.update(
            {
                "PAPERLESS_DBENGINE": "postgresql",
                "PAPERLESS_DBHOST": host,
                "PAPERLESS_DBPORT": str(port),
                "PAPERLESS_DBNAME": dbname,
                "PAPERLESS_DBUSER": user,
                "PAPERLESS_DBPASS": password,
            }
        )
    elif profile is not None:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILE_KEYS)}")
    return data
