"""The warehouse hook: one connection picks the backend, the same SQL runs on both."""

from __future__ import annotations

import pytest

from clickstream.config import get_settings
from clickstream.loading import ensure_schema
from clickstream.warehouse import LOAD_METADATA_COLUMNS, ClickHouseHook


def test_string_parameters_arrive_verbatim_on_the_embedded_engine(chdb_path):
    tricky = 'two\nlines\tand a tab, a "quote", a \\ backslash and a literal \\n'
    with ClickHouseHook() as hook:
        [[value, length]] = hook.backend.execute(
            "SELECT {value:String}, length({value:String})", {"value": tricky}
        )
    assert (value, length) == (tricky, len(tricky.encode()))


@pytest.mark.parametrize("table", get_settings().tables, ids=lambda table: table.name)
def test_loads_table_columns_follow_the_config(chdb_path, table):
    """The loader inserts by position: metadata columns first, then the JSON keys in config order."""
    with ClickHouseHook() as hook:
        ensure_schema(hook, get_settings())
        columns = hook.backend.execute(
            "SELECT name, type FROM system.columns WHERE database = 'clickstream' AND table = {table:String} "
            "ORDER BY position",
            {"table": table.loads_table},
        )
    expected = [*LOAD_METADATA_COLUMNS, *((c.name, c.type) for c in table.columns)]
    assert [name for name, _ in columns] == [name for name, _ in expected]
    for (name, actual), (_, declared) in zip(columns, expected, strict=True):
        assert actual in {declared, f"LowCardinality({declared})"}, name


def test_schema_creation_is_idempotent(chdb_path):
    with ClickHouseHook() as hook:
        ensure_schema(hook, get_settings())
        ensure_schema(hook, get_settings())
        tables = hook.backend.execute(
            "SELECT name FROM system.tables WHERE database = 'clickstream' ORDER BY name", {}
        )
    assert [name for (name,) in tables] == sorted(
        [
            *get_settings().table_names,
            *(t.loads_table for t in get_settings().tables),
            "committed_loads",
            "ingest_log",
            "truncations",
        ]
    )


def test_statement_settings_do_not_outlive_the_statement_on_the_embedded_engine(chdb_path):
    """A server applies a query's settings to that query only; the embedded session does too."""
    query = "SELECT value FROM system.settings WHERE name = 'insert_null_as_default'"
    with ClickHouseHook() as hook:
        assert hook.backend.execute(query, {}, {"insert_null_as_default": 0}) == [["0"]]
        assert hook.backend.execute(query, {}) == [["1"]]


def test_a_parameter_not_bound_again_is_not_reused(chdb_path):
    """The embedded engine keeps bound values per session; a statement must not see an old one."""
    with ClickHouseHook() as hook:
        assert hook.backend.execute("SELECT {value:String}", {"value": "first"}) == [["first"]]
        with pytest.raises(RuntimeError, match="value"):
            hook.backend.execute("SELECT {value:String}", {})
