"""SQL files of ``include/sql``: one file per object it creates or fills.

Values are never pasted into the text: each statement carries ClickHouse query
parameters (``{name:Type}``, ``{name:Identifier}`` for names) bound by the warehouse.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from clickstream.config import SQL_DIR


@cache
def statements(name: str, directory: Path = SQL_DIR) -> tuple[str, ...]:
    """Return the statements of ``<directory>/<name>.sql``, split on a ``;`` that ends a line.

    :param directory: ``include/sql`` unless a script runs SQL of its own (the benchmarks').
    """
    path = directory / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"SQL file {path} does not exist")
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    parts = [part.strip() for part in text.split(";\n")]
    return tuple(part.rstrip(";").strip() for part in parts if part.strip())


def statement(name: str) -> str:
    """Return the single statement of ``include/sql/<name>.sql``."""
    found = statements(name)
    if len(found) != 1:
        raise ValueError(f"SQL file {name}.sql holds {len(found)} statements; expected exactly one")
    return found[0]
