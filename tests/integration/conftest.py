"""Integration tier: a real PostgreSQL 15 server, started once per session, always stopped.

Missing PostgreSQL binaries make the tests FAIL (the fixture raises), they are never skipped.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `components` is imported from the repository root, as Pulumi does
    sys.path.insert(0, str(REPO))

from .helpers import AppPair  # noqa: E402
from .pg_server import PgServer, PgServerError, drop_app, harden, provision_app  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    try:
        server = PgServer.start()
    except PgServerError as exc:
        pytest.fail(f"cannot start the test PostgreSQL: {exc}", pytrace=False)
    try:
        harden(server)  # as the stack hardens it: only then can a good case pass isolation
        yield server
    finally:
        server.stop()


_counter = itertools.count(1)


@pytest.fixture
def apps(pg: PgServer) -> Iterator[AppPair]:
    n = next(_counter)
    pid = os.getpid()
    a = provision_app(pg, f"it-{pid}-{n}-app")
    b = provision_app(pg, f"it-{pid}-{n}-other")
    try:
        yield AppPair(a, b)
    finally:
        for app in (a, b):
            drop_app(pg, app)
