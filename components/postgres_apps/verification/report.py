"""The report contract: the checks' names, the two JSON schemas and the shapes both runners share.

Both runners (``direct``: Python + psycopg; ``pod``: the sh + psql script in ``probe.sh``) only
*measure*: they produce the same raw **probe report** (a JSON object, schema `REPORT_SCHEMA`).
`judgement.judge` turns a report into the **verdict** (schema `VERDICT_SCHEMA`): per check
``pass`` / ``fail`` / ``skip``, a message that says what was seen, and a hint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

CHECKS: Final[tuple[str, ...]] = (
    "dns",
    "tcp",
    "login",
    "uri",
    "crud",
    "privileges",
    "isolation",
    "latency",
)
"""Stable check names, in the order they run (used in messages, outputs and docs)."""

REPORT_SCHEMA: Final = "postgres-apps.verification.report/v3"
"""v3: `isolation` covers every database on the server (`allowed`, `outbound.checked`,
`outbound.temporary`, `login_target`; `refused_login` null when there is no target). v2: one
object (privilege queries both ways + one refused login) instead of v1's list of refused logins
to every other database."""
VERDICT_SCHEMA: Final = "postgres-apps.verification/v1"
CRUD_STEPS: Final[tuple[str, ...]] = ("create", "insert", "select", "update", "delete", "drop")
PRIVILEGE_FLAGS: Final[tuple[str, ...]] = (
    "rolsuper",
    "rolcreaterole",
    "rolcreatedb",
    "rolreplication",
    "rolbypassrls",
)

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class CheckOutcome:
    """The judgement of one check."""

    name: str
    status: Status
    message: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class Verdict:
    """Every check judged, plus the numbers that become the resource's outputs."""

    app: str
    runner: str
    checks: tuple[CheckOutcome, ...]
    connect_ms: float | None
    roundtrip_p50_ms: float | None
    roundtrip_p95_ms: float | None
    server_version: str | None
    checked_at: str
    report: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def failed(self) -> tuple[CheckOutcome, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    @property
    def passed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "pass"]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": VERDICT_SCHEMA,
            "app": self.app,
            "runner": self.runner,
            "ok": self.ok,
            "failed": [c.name for c in self.failed],
            "checks_passed": self.passed,
            "checks": [c.to_json() for c in self.checks],
            "connect_ms": self.connect_ms,
            "roundtrip_p50_ms": self.roundtrip_p50_ms,
            "roundtrip_p95_ms": self.roundtrip_p95_ms,
            "server_version": self.server_version,
            "checked_at": self.checked_at,
            "report": dict(self.report),
        }

    def error_message(self, secret_name: str) -> str:
        """The `pulumi up` failure: app, first failed check, what was seen, hint; then the rest."""
        failed = self.failed
        if not failed:
            return ""
        first = failed[0]
        text = f'app "{self.app}": check "{first.name}" failed: {first.message}'
        if first.hint:
            text += f" — {first.hint.format(secret=secret_name)}"
        others = [f'"{c.name}" ({c.message})' for c in failed[1:]]
        if others:
            text += "; also failed: " + "; ".join(others)
        return text
