"""The SCRAM-SHA-256 verifier the program sends instead of the plaintext password."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from postgres_apps.scram import (
    ITERATIONS,
    derived_salt,
    is_verifier,
    role_verifier,
    scram_sha256_verifier,
)


def test_known_vector() -> None:
    # Computed independently from RFC 7677's definitions (SaltedPassword = PBKDF2-HMAC-SHA-256;
    # StoredKey = H(HMAC(SaltedPassword, "Client Key")); ServerKey = HMAC(SaltedPassword,
    # "Server Key")), salt "salt-salt-salt!!", 4096 iterations.
    salt = b"salt-salt-salt!!"
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    expected = "SCRAM-SHA-256$4096:{}${}:{}".format(
        *(base64.b64encode(x).decode() for x in (salt, stored, server))
    )
    assert scram_sha256_verifier("pencil", salt) == expected


def test_stable_for_same_role_and_password() -> None:
    assert role_verifier("n8n", "Abc123") == role_verifier("n8n", "Abc123")


@pytest.mark.parametrize(("role", "password"), [("n8n", "Abc124"), ("n8n_x", "Abc123")])
def test_salt_changes_with_role_or_password(role: str, password: str) -> None:
    assert derived_salt(role, password) != derived_salt("n8n", "Abc123")
    assert role_verifier(role, password) != role_verifier("n8n", "Abc123")


def test_never_contains_the_plaintext() -> None:
    password = "Zq9" * 13 + "x"
    verifier = role_verifier("app", password)
    assert password not in verifier
    assert verifier.startswith(f"SCRAM-SHA-256${ITERATIONS}:")
    assert is_verifier(verifier)


@pytest.mark.parametrize(
    "value",
    [
        "plaintext",
        "md5abc",
        "SCRAM-SHA-256$",
        "SCRAM-SHA-256$x:salt$a:b",
        "SCRAM-SHA-256$4096:s$a:",
    ],
)
def test_is_verifier_rejects_other_shapes(value: str) -> None:
    assert not is_verifier(value)
