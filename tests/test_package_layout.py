"""The plugin package is imported once, as ``clickstream.*``, and holds only what a deployment runs."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from clickstream.config import PROJECT_ROOT, SQL_DIR

PACKAGE_DIR = PROJECT_ROOT / "plugins" / "clickstream"

# Runs in a fresh interpreter: Airflow loads plugins once per process, and the test session has
# already imported the package the normal way.
LOAD_PLUGINS_AS_AIRFLOW_DOES = """
import json, sys
from airflow import plugins_manager
from airflow.dag_processing.dagbag import DagBag

plugins_manager.ensure_plugins_loaded()
bare = sorted(
    name for name, module in list(sys.modules.items())
    if "." not in name and str(getattr(module, "__file__", "") or "").startswith(sys.argv[1])
)
bag = DagBag(dag_folder=sys.argv[2])
print(json.dumps({"bare": bare, "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "dags": sorted(bag.dag_ids)}))
"""


def _package_modules() -> set[str]:
    return {path.stem for path in PACKAGE_DIR.glob("*.py")} - {"__init__"}


def test_airflow_loads_the_plugins_folder_without_importing_the_package_under_bare_names(tmp_path):
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_PLUGINS_AS_AIRFLOW_DOES, str(PACKAGE_DIR), str(PROJECT_ROOT / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["bare"] == [], (
        f"modules of plugins/clickstream imported under a bare name: {result['bare']}"
    )
    assert result["import_errors"] == {}
    assert {"clickstream_ingest_hourly", "clickstream_ingest_catchup", "clickstream_marts"} <= set(
        result["dags"]
    )


def test_the_airflowignore_names_the_package_directory():
    patterns = [
        line.strip()
        for line in (PROJECT_ROOT / "plugins" / ".airflowignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "clickstream/" in patterns


def test_what_only_the_demo_tests_and_benchmarks_use_lives_outside_the_deployed_folders():
    assert not (PACKAGE_DIR / "generator.py").exists()
    assert (PROJECT_ROOT / "scripts" / "synthetic_clickstream.py").is_file()
    assert not (PROJECT_ROOT / "scripts" / "fake_clickhouse.py").exists()
    assert (PROJECT_ROOT / "tests" / "fake_clickhouse.py").is_file()
    assert sorted(path.name for path in SQL_DIR.glob("benchmark_*")) == []
    assert sorted(path.name for path in (PROJECT_ROOT / "scripts" / "sql").glob("benchmark_*.sql"))
    for module in PACKAGE_DIR.glob("*.py"):
        imported = _imports(module)
        assert not imported & {"synthetic_clickstream", "fake_clickhouse", "local_stack"}, module.name


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "clickstream":
                found.update(f"clickstream.{alias.name}" for alias in node.names)
    return found


def test_the_package_has_no_import_cycles():
    graph = {
        name: {
            imported.removeprefix("clickstream.")
            for imported in _imports(PACKAGE_DIR / f"{name}.py")
            if imported.startswith("clickstream.")
        }
        for name in _package_modules()
    }
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in visiting, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        visiting.add(name)
        for imported in sorted(graph.get(name, ())):
            visit(imported, (*path, name))
        visiting.discard(name)
        done.add(name)

    for name in sorted(graph):
        visit(name, ())
