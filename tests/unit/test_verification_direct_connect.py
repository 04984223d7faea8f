"""`direct._connect`: a role at its connection limit because of the probe's own last session."""

from __future__ import annotations

from typing import Any

import pytest

from postgres_apps.verification import direct


class FakeOperationalError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


class FakePsycopg:
    OperationalError = FakeOperationalError

    def __init__(self, failures: list[str | None]) -> None:
        self.failures = failures
        self.calls = 0

    def connect(self, **_params: Any) -> str:
        self.calls += 1
        if self.failures:
            raise FakeOperationalError(self.failures.pop(0))
        return "conn"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "RECONNECT_PAUSE_S", 0.0)


def test_waits_out_its_own_closing_session() -> None:
    fake = FakePsycopg([direct.TOO_MANY_CONNECTIONS] * 3)
    assert direct._connect(fake, host="h") == "conn"
    assert fake.calls == 4


def test_a_limit_held_by_someone_else_fails_after_the_wait() -> None:
    fake = FakePsycopg([direct.TOO_MANY_CONNECTIONS] * 100)
    with pytest.raises(FakeOperationalError):
        direct._connect(fake)
    assert fake.calls == direct.RECONNECT_TRIES


def test_any_other_error_is_not_retried() -> None:
    fake = FakePsycopg(["28P01"])  # invalid password
    with pytest.raises(FakeOperationalError):
        direct._connect(fake)
    assert fake.calls == 1
