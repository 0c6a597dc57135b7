"""Under ``CI=true`` a skipped test fails, with the reason it would have been skipped for.

A skip is how a test says it could not check what it names (a fixture outside the project,
a missing dependency). Locally that is worth a line in the summary; in CI nobody reads the
summary, so a check that silently stopped running would look the same as one that passed.
"""

from __future__ import annotations

import os

import pytest


def skips_fail() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if skips_fail() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"
