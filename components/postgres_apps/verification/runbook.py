"""Runbook links: every hint ends with `, or see <RUNBOOK>#<anchor>` for a known anchor."""

from __future__ import annotations

from typing import Final

RUNBOOK: Final = "docs/runbooks/postgres-connectivity.md"
RUNBOOK_ANCHORS: Final[frozenset[str]] = frozenset(
    {
        "dns",
        "connection-refused",
        "login",
        "password-authentication-failed",
        "no-pg_hba-entry",
        "role-does-not-exist",
        "database-does-not-exist",
        "permission-denied-for-database",
        "too-many-connections",
        "role-cannot-login",
        "ssl",
        "uri",
        "uri-encoding",
        "crud",
        "privileges",
        "excess-privileges",
        "isolation",
        "latency",
        "probe-pod",
    }
)
"""Every `#anchor` a hint links to (the runbook needs an `<a id="…">` for each)."""


def hint(anchor: str, text: str) -> str:
    """`text` plus the runbook link; an anchor the runbook does not have is a bug (ValueError)."""
    if anchor not in RUNBOOK_ANCHORS:
        raise ValueError(f"unknown runbook anchor {anchor!r}")
    return f"{text}, or see {RUNBOOK}#{anchor}"
