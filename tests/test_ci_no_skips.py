"""Nothing skips silently in CI: under ``CI=true`` a skip fails the run with its reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

SKIPPING_MODULE = """
import pytest

def test_needs_a_fixture_that_is_not_here():
    pytest.skip("the real sample is not present at /nowhere")

@pytest.mark.xfail(reason="a known bug, tracked elsewhere", strict=True)
def test_known_bug():
    assert False

def test_that_runs():
    pass
"""


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_module.py").write_text(SKIPPING_MODULE)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(TESTS_DIR)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "ci_no_skips",
            "-p",
            "no:cacheprovider",
            "test_module.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skip_fails_under_ci_with_its_reason(tmp_path):
    completed = run_pytest(tmp_path, ci="true")

    assert completed.returncode == 1, completed.stdout
    assert "skipped under CI=true, where every test must run" in completed.stdout
    assert "the real sample is not present at /nowhere" in completed.stdout
    assert "1 failed, 1 passed, 1 xfailed" in completed.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_a_skip_is_a_skip_outside_ci(tmp_path, ci):
    completed = run_pytest(tmp_path, ci=ci)

    assert completed.returncode == 0, completed.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in completed.stdout
