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
    "dashboards",
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
    # A script with modes gets the mode first: scripts/dashboards.py serve $(ARGS).
    assert re.search(rf"scripts/{script}\.py (\w+ )?\$\(ARGS\)\n", makefile)


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


def test_scripts_use_only_names_their_helper_scripts_define():
    """A helper renamed in local_stack.py or standalone.py breaks its callers only when they
    run (benchmark_catchup.py once did, long after the rename): read every use instead."""
    import ast
    import importlib

    scripts = local_stack.PROJECT_ROOT / "scripts"
    helpers = {path.stem for path in scripts.glob("*.py")}
    missing = []
    for path in sorted(scripts.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in helpers & imported
                and not hasattr(importlib.import_module(node.value.id), node.attr)
            ):
                missing.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert missing == []
