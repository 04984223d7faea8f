"""The role's password as PostgreSQL stores it: a SCRAM-SHA-256 verifier computed here.

Why: a `CREATE/ALTER ROLE ... PASSWORD '<plaintext>'` that fails (an existing role, a replacement)
is written whole into the server's log, and `log_statement=all` logs it even when it succeeds.
PostgreSQL stores a value that already is a SCRAM verifier as given (it never sees the
plaintext), and the official pulumi-postgresql provider compares a state password that starts
with `SCRAM-SHA-256` with `pg_shadow` as is (upstream `postgresql/resource_postgresql_role.go`,
`readRolePassword`), so a password changed by hand shows up as drift on `pulumi refresh`.

The verifier must be stable across no-op `pulumi up`s (else every run would update the role), so
the salt is derived from the role name and the password instead of drawn at random: with a
generated 40-character password (≈ 238 bits) a derived salt gives no precomputation advantage,
and a new password (rotation) gives a new salt. Format (RFC 5802/7677, PostgreSQL
`src/common/scram-common.c`, `scram_build_secret`):
`SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

SCRAM_PREFIX: Final = "SCRAM-SHA-256"
ITERATIONS: Final = 4096
"""PostgreSQL's default `scram_iterations`; what libpq's PQencryptPasswordConn uses too."""
SALT_BYTES: Final = 16
_SALT_CONTEXT: Final = b"postgres-apps/scram-sha-256-salt/v1/"


def derived_salt(role: str, password: str) -> bytes:
    """A 16-byte salt that is the same on every run for this role and password."""
    return hmac.new(password.encode(), _SALT_CONTEXT + role.encode(), hashlib.sha256).digest()[
        :SALT_BYTES
    ]


def scram_sha256_verifier(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores for `password` (no SASLprep: the generated
    passwords are ASCII letters and digits, which SASLprep leaves unchanged)."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"{SCRAM_PREFIX}${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def role_verifier(role: str, password: str) -> str:
    """What the program sends as the role's password: stable, never the plaintext."""
    return scram_sha256_verifier(password, derived_salt(role, password))


def is_verifier(value: str) -> bool:
    """Whether `value` has the shape of a SCRAM-SHA-256 verifier (not a plaintext password)."""
    head, _, rest = value.partition("$")
    if head != SCRAM_PREFIX:
        return False
    params, _, keys = rest.partition("$")
    iterations, _, salt = params.partition(":")
    stored, _, server = keys.partition(":")
    return iterations.isdigit() and all(part for part in (salt, stored, server))
