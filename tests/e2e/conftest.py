"""End-to-end tier: the engine and kubernetes provider built from Pulumi's modules, the project's
stand-in postgresql/random plugins and Python language host (localenv/toolchain/), the real API
server, PostgreSQL (and node, in pod mode).

If any part is missing the whole tier FAILS with what is missing; it is never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import EnvironmentNotReadyError, check_environment, purge_suite_leftovers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def real_environment() -> Iterator[None]:
    try:
        check_environment()
    except EnvironmentNotReadyError as exc:
        pytest.fail(f"the end-to-end environment is not ready: {exc}", pytrace=False)
    dropped = purge_suite_leftovers()
    if dropped:
        print(f"\ne2e: dropped leftovers of an earlier session: {', '.join(dropped)}")
    yield
