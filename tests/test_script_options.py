"""Every script behind a make target takes its options through ARGS and shows each default."""

from __future__ import annotations

import re
import subprocess
import sys

import local_stack
import pytest

SCRIPTS = (
    "demo",
    "standalone",
    "benchmark_ingest",
    "benchmark_marts",
    "benchmark_catchup",
    "suite_under_load",
    "airflow_local",
)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_the_default_of_every_option(script):
    completed = subprocess.run(
        [sys.executable, str(local_stack.PROJECT_ROOT / "scripts" / f"{script}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    options = completed.stdout.split("\noptions:\n", 1)[1]
    # One entry per option: it starts at two spaces and a dash, up to the next one.
    entries = [entry for entry in re.split(r"\n(?=  -)", options) if entry.strip()]
    without = [entry.split()[0] for entry in entries if "(default:" not in entry and "--help" not in entry]
    assert entries and without == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_make_passes_args_to_the_script(script):
    makefile = (local_stack.PROJECT_ROOT / "Makefile").read_text()
    assert re.search(rf"scripts/{script}\.py \$\(ARGS\)\n", makefile)


def test_make_airflow_points_the_cli_at_the_standalone_stack(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            str(local_stack.PROJECT_ROOT / "scripts" / "airflow_local.py"),
            "--home",
            str(tmp_path),
            "config",
            "get-value",
            "database",
            "sql_alchemy_conn",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert completed.stdout.strip() == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
