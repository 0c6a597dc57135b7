"""The configuration file: a misspelled or unknown key fails at once, naming it."""

from __future__ import annotations

import tomllib

import pytest

from clickstream.config import DEFAULT_CONFIG_PATH, ConfigError, parse_settings


def default_document() -> dict:
    return tomllib.loads(DEFAULT_CONFIG_PATH.read_text())


def test_the_shipped_configuration_has_no_unknown_key():
    assert parse_settings(default_document()).source.poke_interval_seconds > 0


@pytest.mark.parametrize(
    ("place", "key", "message"),
    [
        pytest.param(
            ("source",),
            "poke_intervall_seconds",
            "source: unknown key 'poke_intervall_seconds'; did you mean 'poke_interval_seconds'?",
            id="misspelled-in-a-section",
        ),
        pytest.param(
            (), "start_dat", "config: unknown key 'start_dat'; did you mean 'start_date'?", id="top-level"
        ),
        pytest.param(
            ("tables", "geo_events"),
            "event_time_colum",
            "tables.geo_events: unknown key 'event_time_colum'; did you mean 'event_time_column'?",
            id="in-a-table",
        ),
        pytest.param(
            ("marts",),
            "colour",
            "marts: unknown key 'colour'; known keys: checkout_paths, chunk_hours",
            id="nothing-close",
        ),
    ],
)
def test_an_unknown_key_is_refused_by_name(place, key, message):
    document = default_document()
    section = document
    for name in place:
        section = section[name]
    section[key] = 1

    with pytest.raises(ConfigError) as raised:
        parse_settings(document)
    assert str(raised.value).startswith(message)
