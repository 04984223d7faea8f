"""Every tier: a skipped or xfailed test counts as FAILED (the project never skips silently).

A skip marker, `pytest.skip()` or `xfail` added by mistake (or by a fixture that cannot find what
it needs) would make `-ra` report "skipped" while CI says green; here it fails with the reason.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.skipped or hasattr(report, "wasxfail"):
        why = getattr(report, "wasxfail", "") or str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} was skipped or xfailed ({why}): this project never skips"
    return report
