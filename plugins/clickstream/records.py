"""Typed records of a source table: one JSON line in, one tuple of typed values out.

The embedded engine parses source files itself (much faster than Python); this module is
the reference reader that names the exact line and key at fault when a file is rejected,
and the reader for backends that receive rows from the client.
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from clickstream.config import SourceTable

_DATETIME64 = re.compile(r"^DateTime64\(\s*\d+\s*(,\s*'UTC'\s*)?\)$")
_TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S")


class RecordError(ValueError):
    """A line of a source file that does not fit its table; ``line`` counts from 1."""

    def __init__(self, line: int, reason: str):
        self.line, self.reason = line, reason
        super().__init__(f"line {line}: {reason}")


def _to_string(value):
    if not isinstance(value, str):
        raise TypeError("expected a JSON string")
    return value


def _to_uuid(value):
    return uuid.UUID(_to_string(value))


def _to_float(value):
    if isinstance(value, bool):
        raise TypeError("expected a decimal number")
    if isinstance(value, str | int | float):
        return float(value)
    raise TypeError("expected a decimal number or a string holding one")


def _to_bool(value):
    if not isinstance(value, bool):
        raise TypeError("expected a JSON boolean")
    return value


def _to_datetime(value):
    text = _to_string(value)
    for pattern in _TIMESTAMP_FORMATS:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError("expected a timestamp 'YYYY-MM-DD HH:MM:SS.ffffff'")


_CONVERTERS: dict[str, Callable] = {
    "String": _to_string,
    "UUID": _to_uuid,
    "Float64": _to_float,
    "Bool": _to_bool,
}


def converter_for(clickhouse_type: str) -> Callable:
    """Return the function that turns a JSON value into ``clickhouse_type``."""
    if _DATETIME64.match(clickhouse_type):
        return _to_datetime
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

        :raises RecordError: the line is not a JSON object, lacks a key or holds a value of
            the wrong type.
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
                raise RecordError(
                    line, f"key {name!r} holds {value!r}: {error}; expected {type_name}"
                ) from None
        return tuple(values)

    def read(self, path: Path) -> Iterator[tuple]:
        """Yield the typed values of every non-empty line of ``path`` (plain or gzip)."""
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
