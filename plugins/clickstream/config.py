"""Declarative settings of the bundle, read from ``config/clickstream.toml``.

The file describes what the product moves (tables, columns and their types, the object
layout, the first window) and which Airflow connections it uses. It never holds secrets.
``CLICKSTREAM_CONFIG`` points at another file, for a deployment or a test.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "clickstream.toml"
SQL_DIR = PROJECT_ROOT / "include" / "sql"
CONFIG_ENV_VAR = "CLICKSTREAM_CONFIG"

ABSENT_OBJECT_OUTCOMES = ("fail", "skip")
# Names that go into SQL text (the database of `USE`) must be plain identifiers.
_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """The configuration file is missing a key or holds a value the product cannot use."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: tuple[Column, ...]
    event_time_column: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def loads_table(self) -> str:
        """Name of the physical table holding every load's rows (committed or not)."""
        return f"{self.name}_loads"


@dataclass(frozen=True)
class WarehouseSettings:
    conn_id: str
    database: str
    pool: str


@dataclass(frozen=True)
class SourceSettings:
    conn_id: str
    bucket: str
    key_template: str
    lateness_horizon_seconds: int
    absent_object_outcome: str
    poke_interval_seconds: int
    event_time_tolerance_hours: int
    recheck_days: int

    @property
    def lateness_horizon(self) -> timedelta:
        return timedelta(seconds=self.lateness_horizon_seconds)


@dataclass(frozen=True)
class IngestSettings:
    retries: int
    retry_delay_seconds: int
    load_deadline_seconds: int


@dataclass(frozen=True)
class CatchupSettings:
    batch_seconds: int
    failed_window_retry_seconds: int
    failed_window_max_retry_seconds: int


@dataclass(frozen=True)
class PrioritySettings:
    """Priority weights of the tasks that share the warehouse pool."""

    live: int
    marts: int
    catchup: int


@dataclass(frozen=True)
class MartSettings:
    purchase_page_path: str
    checkout_paths: tuple[str, ...]
    journey_lookback_hours: int
    chunk_hours: int
    retries: int
    retry_delay_seconds: int
    refresh_deadline_seconds: int


@dataclass(frozen=True)
class Settings:
    start_date: datetime
    warehouse: WarehouseSettings
    source: SourceSettings
    ingest: IngestSettings
    catchup: CatchupSettings
    priorities: PrioritySettings
    marts: MartSettings
    tables: tuple[SourceTable, ...]

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(table.name for table in self.tables)

    def table(self, name: str) -> SourceTable:
        for table in self.tables:
            if table.name == name:
                return table
        raise ConfigError(f"unknown source table {name!r}; configured: {', '.join(self.table_names)}")


def _require(section: dict, key: str, where: str):
    try:
        return section[key]
    except KeyError:
        raise ConfigError(f"{where}: missing required key {key!r}") from None


def _non_negative(section: dict, key: str, where: str) -> int:
    value = _require(section, key, where)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}.{key} is {value!r}; expected a whole number >= 0")
    return value


def _positive(section: dict, key: str, where: str) -> int:
    value = _non_negative(section, key, where)
    if value == 0:
        raise ConfigError(f"{where}.{key} is 0; expected a whole number >= 1")
    return value


def utc_hour(value: datetime) -> datetime:
    """Return ``value`` in UTC, checking that it is timezone-aware and on an hour boundary.

    :raises ValueError: naive, or not on an hour boundary.
    """
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} must carry a UTC offset")
    value = value.astimezone(UTC)
    if (value.minute, value.second, value.microsecond) != (0, 0, 0):
        raise ValueError(f"{value.isoformat()} is not on an hour boundary")
    return value


def _parse_start_date(raw: str) -> datetime:
    try:
        return utc_hour(datetime.fromisoformat(raw))
    except ValueError as error:
        raise ConfigError(f"start_date {raw!r}: {error}") from None


def _parse_tables(raw: dict) -> tuple[SourceTable, ...]:
    tables = []
    for name, spec in raw.items():
        columns = tuple(
            Column(name=_require(c, "name", f"tables.{name}"), type=_require(c, "type", f"tables.{name}"))
            for c in _require(spec, "columns", f"tables.{name}")
        )
        if not columns:
            raise ConfigError(f"tables.{name}: no columns")
        time_column = spec.get("event_time_column")
        if time_column is not None and time_column not in {c.name for c in columns}:
            raise ConfigError(f"tables.{name}: event_time_column {time_column!r} is not one of its columns")
        tables.append(SourceTable(name=name, columns=columns, event_time_column=time_column))
    if not tables:
        raise ConfigError("no source tables configured")
    return tuple(tables)


# Each section's keys are its settings class's fields: one place says what a key is.
_SECTION_KEYS = {
    "warehouse": WarehouseSettings,
    "source": SourceSettings,
    "ingest": IngestSettings,
    "catchup": CatchupSettings,
    "priorities": PrioritySettings,
    "marts": MartSettings,
}
_TABLE_KEYS = ("columns", "event_time_column")
_COLUMN_KEYS = ("name", "type")


def _reject_unknown_keys(section: dict, known, where: str) -> None:
    """A misspelled key would be ignored and its default used silently: name it instead."""
    for key in section:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")


def _check_keys(raw: dict) -> None:
    _reject_unknown_keys(raw, [field.name for field in fields(Settings)], "config")
    for name, settings_class in _SECTION_KEYS.items():
        if isinstance(raw.get(name), dict):
            _reject_unknown_keys(raw[name], [field.name for field in fields(settings_class)], name)
    for table, spec in (raw.get("tables") or {}).items():
        if isinstance(spec, dict):
            _reject_unknown_keys(spec, _TABLE_KEYS, f"tables.{table}")
            for column in spec.get("columns") or ():
                if isinstance(column, dict):
                    _reject_unknown_keys(column, _COLUMN_KEYS, f"tables.{table}.columns")


def parse_settings(raw: dict) -> Settings:
    """Build settings from the parsed TOML document, validating every value.

    :raises ConfigError: a key is missing or unknown, or a value is unusable; the message
        names the key.
    """
    _check_keys(raw)
    warehouse = _require(raw, "warehouse", "config")
    source = _require(raw, "source", "config")
    ingest = _require(raw, "ingest", "config")
    marts = _require(raw, "marts", "config")
    catchup = _require(raw, "catchup", "config")
    priorities = _require(raw, "priorities", "config")
    outcome = _require(source, "absent_object_outcome", "source")
    if outcome not in ABSENT_OBJECT_OUTCOMES:
        raise ConfigError(
            f"source.absent_object_outcome is {outcome!r}; expected one of {', '.join(ABSENT_OBJECT_OUTCOMES)}"
        )
    database = _require(warehouse, "database", "warehouse")
    if not isinstance(database, str) or not _PLAIN_IDENTIFIER.match(database):
        raise ConfigError(
            f"warehouse.database {database!r} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)"
        )
    template = _require(source, "key_template", "source")
    if "{table}" not in template:
        raise ConfigError(f"source.key_template {template!r} must contain {{table}}")
    return Settings(
        start_date=_parse_start_date(_require(raw, "start_date", "config")),
        warehouse=WarehouseSettings(
            conn_id=_require(warehouse, "conn_id", "warehouse"),
            database=database,
            pool=_require(warehouse, "pool", "warehouse"),
        ),
        source=SourceSettings(
            conn_id=_require(source, "conn_id", "source"),
            bucket=_require(source, "bucket", "source"),
            key_template=template,
            lateness_horizon_seconds=_non_negative(source, "lateness_horizon_seconds", "source"),
            absent_object_outcome=outcome,
            poke_interval_seconds=_positive(source, "poke_interval_seconds", "source"),
            event_time_tolerance_hours=_non_negative(source, "event_time_tolerance_hours", "source"),
            recheck_days=_non_negative(source, "recheck_days", "source"),
        ),
        ingest=IngestSettings(
            retries=int(_require(ingest, "retries", "ingest")),
            retry_delay_seconds=int(_require(ingest, "retry_delay_seconds", "ingest")),
            load_deadline_seconds=_positive(ingest, "load_deadline_seconds", "ingest"),
        ),
        catchup=CatchupSettings(
            batch_seconds=_positive(catchup, "batch_seconds", "catchup"),
            failed_window_retry_seconds=_positive(catchup, "failed_window_retry_seconds", "catchup"),
            failed_window_max_retry_seconds=_positive(catchup, "failed_window_max_retry_seconds", "catchup"),
        ),
        priorities=PrioritySettings(
            live=_positive(priorities, "live", "priorities"),
            marts=_positive(priorities, "marts", "priorities"),
            catchup=_positive(priorities, "catchup", "priorities"),
        ),
        marts=MartSettings(
            purchase_page_path=_require(marts, "purchase_page_path", "marts"),
            checkout_paths=tuple(_require(marts, "checkout_paths", "marts")),
            journey_lookback_hours=int(_require(marts, "journey_lookback_hours", "marts")),
            chunk_hours=_positive(marts, "chunk_hours", "marts"),
            retries=int(_require(marts, "retries", "marts")),
            retry_delay_seconds=int(_require(marts, "retry_delay_seconds", "marts")),
            refresh_deadline_seconds=_positive(marts, "refresh_deadline_seconds", "marts"),
        ),
        tables=_parse_tables(_require(raw, "tables", "config")),
    )


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Read the settings file named by ``path``, ``$CLICKSTREAM_CONFIG`` or the default."""
    config_path = Path(path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)
    try:
        with config_path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {config_path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {config_path}: {error}") from None
    return parse_settings(raw)


@lru_cache(maxsize=1)
def _cached_settings(path: str) -> Settings:
    return load_settings(path)


def get_settings() -> Settings:
    """Return the settings for this process, read once per configuration path."""
    return _cached_settings(os.environ.get(CONFIG_ENV_VAR) or str(DEFAULT_CONFIG_PATH))
