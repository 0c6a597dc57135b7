"""The input contract of a source line, and the reference reader that follows it.

The engine parses source files on both backends (``file()`` embedded, ``s3()`` on a
server), with the settings below: they are the contract. The rules, as the README states
them:

* **timestamps** (``DateTime64`` columns) are JSON strings ``YYYY-MM-DD hh:mm:ss``, with or
  without a fraction, in UTC; digits after the sixth of the fraction are dropped. ``T`` may
  stand for the space. A zone designator (``Z``, ``+03:00``) is rejected: the contract is UTC
  wall-clock time. A date alone means midnight; a string of 5 to 10 digits is Unix seconds,
  of more digits ticks of the column's precision; fewer digits are rejected.
  A JSON number in a timestamp field is rejected (its unit is ambiguous).
* **numbers in string fields**: a ``String`` or ``UUID`` field takes a JSON string only; a
  number, boolean, object or array there is rejected. A ``Float64`` field takes a JSON number
  or a JSON string holding one (the source writes coordinates as strings), including an
  exponent, ``nan`` and ``inf``, and stores the double nearest to it; an empty string there
  is rejected, as a null is (it holds no number).
* **booleans**: a ``Bool`` field takes ``true``/``false`` or the numbers ``1``/``0``; a string
  (``"true"``, ``"1"``) is rejected, and so is a boolean in a ``Float64`` field.
* **unknown extra keys** are ignored; **empty lines** (or blank ones) are skipped but
  counted in line numbers; a **missing key** or a **null** is rejected.

The engine reads a timestamp column as text and converts it on insert: reading it as a
``DateTime64`` directly would take a JSON number for ticks of the column's precision.

The reader below names the exact line and key once the engine has rejected a file (the
engine's own message points at a row of a parallel parser). It follows the same rules; the
tests run every rule through both and check that they agree.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clickstream.config import SourceTable

# Settings of every statement that parses source lines, on both backends.
ENGINE_SETTINGS = {
    # A number, boolean, object or array is not a string.
    "input_format_json_read_numbers_as_strings": 0,
    "input_format_json_read_bools_as_strings": 0,
    "input_format_json_read_objects_as_strings": 0,
    "input_format_json_read_arrays_as_strings": 0,
    # A boolean is not a number.
    "input_format_json_read_bools_as_numbers": 0,
    # Keys the table does not declare are ignored.
    "input_format_skip_unknown_fields": 1,
    # Timestamps: ClickHouse's basic text format (no best-effort guessing of other layouts).
    "date_time_input_format": "basic",
    "cast_string_to_date_time_mode": "basic",
    # Every column is read as Nullable: a missing key or a null arrives as NULL, and the
    # insert rejects it instead of storing a default.
    "insert_null_as_default": 0,
    "input_format_allow_errors_num": 0,
    "input_format_allow_errors_ratio": 0,
}

_DATETIME64 = re.compile(r"^DateTime64\(\s*(\d+)\s*(,\s*'UTC'\s*)?\)$")
_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?)?$", re.ASCII)
# A string of digits, as the engine's basic format reads it: 5 to 10 digits are Unix seconds,
# more are ticks of the column's precision, fewer are no timestamp.
_UNIX_SECONDS = re.compile(r"^\d{5,10}$", re.ASCII)
_UNIX_TICKS = re.compile(r"^\d{11,}$", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.IGNORECASE)
# The engine's number syntax in a JSON string: sign, digits, fraction, exponent, nan, inf.
_DECIMAL_TEXT = re.compile(r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)$", re.IGNORECASE)


def is_timestamp_type(clickhouse_type: str) -> bool:
    """Return whether ``clickhouse_type`` is a timestamp the engine reads as text, then converts."""
    return bool(_DATETIME64.match(clickhouse_type))


def json_structure(table: SourceTable) -> str:
    """Return the ClickHouse structure that reads one JSON line of ``table`` under the contract.

    Every column is Nullable (a missing key or a null fails the insert); timestamp columns
    are read as text and converted by the insert, so that a JSON number cannot pass.
    """
    return ", ".join(f"{c.name} Nullable({_read_type(c.type)})" for c in table.columns)


def _read_type(clickhouse_type: str) -> str:
    return "String" if is_timestamp_type(clickhouse_type) else clickhouse_type


@dataclass(frozen=True)
class EngineRead:
    """How the engine reads one table's lines: what a load's statements bind.

    The JSON reader parses a ``Float64`` by a fast path that can land one ulp away from the
    decimal in the source (``-10.95817`` read as ``-10.958169999999999``), whatever
    ``precise_float_parsing`` says; a cast of the text honours it. So a table with a
    ``Float64`` column is read with its numbers as written (``structure``: those columns as
    text, ``settings``: numbers read as strings) and each row cast to ``row_type``; that read
    would take a number in a ``String`` field, so ``contract_structure`` checks the other
    columns first, over the same lines, with ``ENGINE_SETTINGS``. A table without one is read
    under the contract at once.
    """

    structure: str
    row_type: str
    settings: dict[str, object]
    contract_structure: str | None


# The nearest double to each decimal, in the cast of the text to Float64.
_EXACT_CAST_SETTINGS = {"precise_float_parsing": 1}


def engine_read(table: SourceTable) -> EngineRead:
    """Return how the engine reads ``table``'s lines (see :class:`EngineRead`)."""
    contract = json_structure(table)
    row_type = f"Tuple({contract})"
    if not any(c.type == "Float64" for c in table.columns):
        return EngineRead(contract, row_type, {**ENGINE_SETTINGS, **_EXACT_CAST_SETTINGS}, None)
    as_written = ", ".join(
        f"{c.name} Nullable({'String' if c.type == 'Float64' else _read_type(c.type)})" for c in table.columns
    )
    settings = {**ENGINE_SETTINGS, "input_format_json_read_numbers_as_strings": 1, **_EXACT_CAST_SETTINGS}
    # The as-written read and the cast hold the Float64 columns to the contract themselves (a
    # boolean, object or array is no string; text that is no number fails the cast): the
    # check reads the other columns only, and skips the decimals as unknown keys.
    others = ", ".join(
        f"{c.name} Nullable({_read_type(c.type)})" for c in table.columns if c.type != "Float64"
    )
    return EngineRead(as_written, row_type, settings, others or None)


class RecordError(ValueError):
    """A line of a source file that does not fit its table; ``line`` counts from 1."""

    def __init__(self, line: int, reason: str):
        self.line, self.reason = line, reason
        super().__init__(f"line {line}: {reason}")


# Each converter's error says what is wrong with the value, then what is expected, once;
# RecordReader.parse puts the line and the key before it.
_EXPECTED_TIMESTAMP = (
    "expected a string 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, or Unix seconds of 5 to 10 digits"
)
_ZONE_DESIGNATOR = re.compile(r"(Z|[+-]\d{2}:?\d{2})$", re.ASCII)


def _json_kind(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "an object", list: "an array"}.get(type(value), "a string")


def _to_string(value):
    if not isinstance(value, str):
        raise TypeError(f"{_json_kind(value)}; expected a JSON string")
    return value


def _to_uuid(value):
    text = _to_string(value)
    if not _UUID.match(text):
        raise ValueError("not a UUID; expected 32 hex digits such as '0f8fad5b-d9cb-469f-a165-70867728950e'")
    return text.replace("-", "").lower()


def _to_float(value):
    if isinstance(value, bool):
        raise TypeError("a boolean; expected a decimal number or a string holding one")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value == "":
            raise ValueError("an empty string; expected a decimal number or a string holding one")
        if _DECIMAL_TEXT.match(value):
            return float(value) if "nan" not in value.lower() else math.nan
        raise ValueError("not a decimal number; expected a decimal number or a string holding one")
    raise TypeError(f"{_json_kind(value)}; expected a decimal number or a string holding one")


def _to_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{_json_kind(value)}; expected true, false, 1 or 0")


def _to_datetime(value, precision: int = 6):
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise TypeError(f"a number, whose unit (seconds or milliseconds) is ambiguous; {_EXPECTED_TIMESTAMP}")
    if not isinstance(value, str):
        raise TypeError(f"{_json_kind(value)}; {_EXPECTED_TIMESTAMP}")
    text = value
    if _UNIX_SECONDS.match(text):
        return _EPOCH + timedelta(seconds=int(text))
    if _UNIX_TICKS.match(text):
        ticks = int(text)
        return _EPOCH + timedelta(
            microseconds=ticks * 10 ** (6 - precision) if precision <= 6 else ticks // 10 ** (precision - 6)
        )
    match = _TIMESTAMP.match(text)
    if not match:
        zone = _ZONE_DESIGNATOR.search(text)
        if zone and _TIMESTAMP.match(text[: zone.start()]):
            raise ValueError(
                f"zone designator {zone.group()!r}, which UTC times leave out; {_EXPECTED_TIMESTAMP}"
            )
        if text.isdigit():
            raise ValueError(f"too few digits ({len(text)}) for Unix seconds; {_EXPECTED_TIMESTAMP}")
        raise ValueError(f"not a timestamp; {_EXPECTED_TIMESTAMP}")
    year, month, day, hour, minute, second, fraction = match.groups()
    microseconds = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
            microseconds, tzinfo=UTC,
        )  # fmt: skip
    except ValueError as error:
        raise ValueError(f"no such time ({error}); {_EXPECTED_TIMESTAMP}") from None


_CONVERTERS: dict[str, Callable] = {
    "String": _to_string,
    "UUID": _to_uuid,
    "Float64": _to_float,
    "Bool": _to_bool,
}


def converter_for(clickhouse_type: str) -> Callable:
    """Return the function that turns a JSON value into ``clickhouse_type`` under the contract."""
    if is_timestamp_type(clickhouse_type):
        precision = int(_DATETIME64.match(clickhouse_type).group(1))
        return lambda value: _to_datetime(value, precision)
    try:
        return _CONVERTERS[clickhouse_type]
    except KeyError:
        raise ValueError(f"no reader for ClickHouse type {clickhouse_type!r}") from None


def _json_problem(error: json.JSONDecodeError) -> str:
    """Say where in its line a JSON document breaks, by column: the line number is the caller's.

    json's own message counts lines inside the document ("line 2 column 1" when a line
    ends too early), which would sit beside the file's real line number.
    """
    text = error.doc.decode("utf-8", "replace") if isinstance(error.doc, bytes) else error.doc
    where = "the end of the line" if error.pos >= len(text.rstrip("\r\n")) else f"column {error.pos + 1}"
    return f"{error.msg} {where}" if error.msg.endswith(" at") else f"{error.msg} at {where}"


@dataclass(frozen=True)
class RecordReader:
    """Reads the lines of one source table into typed tuples in the configured column order."""

    table: SourceTable

    def __post_init__(self):
        object.__setattr__(
            self, "_columns", tuple((c.name, c.type, converter_for(c.type)) for c in self.table.columns)
        )

    def parse(self, raw: bytes | str, line: int) -> tuple:
        """Return the typed values of one line.

        :raises RecordError: the line is not a JSON object, lacks a key or holds a value the
            contract rejects.
        """
        try:
            document = json.loads(raw)
        except json.JSONDecodeError as error:
            raise RecordError(line, f"malformed JSON ({_json_problem(error)})") from None
        except ValueError as error:
            raise RecordError(line, f"malformed JSON ({error})") from None
        if not isinstance(document, dict):
            raise RecordError(line, "expected a JSON object")
        values = []
        for name, type_name, convert in self._columns:
            if name not in document:
                raise RecordError(line, f"missing required key {name!r}")
            value = document[name]
            if value is None:
                raise RecordError(line, f"key {name!r} is null; expected {type_name}")
            try:
                values.append(convert(value))
            except (TypeError, ValueError) as error:
                raise RecordError(line, f"key {name!r} holds {value!r}: {error}") from None
        return tuple(values)

    def read(self, path: Path) -> Iterator[tuple]:
        """Yield the typed values of every non-blank line of ``path`` (plain or gzip)."""
        number = 0
        try:
            with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as lines:
                for number, raw in enumerate(lines, start=1):
                    if raw.strip():
                        yield self.parse(raw, number)
        except (OSError, EOFError, zlib.error) as error:
            raise RecordError(number + 1, f"corrupt compressed data ({error})") from None

    def first_error(self, path: Path) -> RecordError | None:
        """Return the first line of ``path`` that does not fit the table, or None."""
        try:
            for _ in self.read(path):
                pass
        except RecordError as error:
            return error
        return None
