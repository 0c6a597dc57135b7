"""The tests run the ClickHouse version production runs: the compose stack's image tag."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from clickstream.warehouse import ClickHouseHook

ROOT = Path(__file__).resolve().parents[1]


def compose_clickhouse_version() -> str:
    services = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]
    [image] = [s["image"] for s in services.values() if str(s.get("image", "")).startswith("clickhouse/")]
    repository, _, tag = image.partition(":")
    assert repository == "clickhouse/clickhouse-server"
    assert re.fullmatch(r"\d+\.\d+", tag), f"pin the LTS line (major.minor), not {tag!r}"
    return tag


def embedded_pin() -> str:
    text = (ROOT / "requirements-embedded.txt").read_text()
    return re.search(r"^chdb==([\w.]+)$", text, re.MULTILINE).group(1)


def test_the_embedded_engine_is_the_version_of_the_compose_stack(chdb_path):
    with ClickHouseHook() as hook:
        [[version]] = hook.backend.execute("SELECT version()", {})
    assert version.startswith(compose_clickhouse_version() + "."), version


def test_the_readme_names_the_tested_version():
    readme = (ROOT / "README.md").read_text()
    line = compose_clickhouse_version()
    assert f"ClickHouse {line} LTS" in readme
    assert f"chdb {embedded_pin()}" in readme, "the README's test section names the embedded engine"
