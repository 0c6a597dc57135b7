"""Deterministic synthetic clickstream, written in the real bucket layout.

Each hour becomes one ZIP archive per source table at ``object_key(key_template, hour,
table)``, holding one member ``<table>.jsonl``. Line N of the four members describes the
same page view, as in the real source. Values follow the published generator's
distributions (``shared/docs/domain.md``): pages move along its Markov chain and an event is
emitted only when the page changes (2.4 page views per session on average, which gives the
long-run page counts); utm, browser, OS and device shares are its shares.

A click (``click_id``) is one session of one user: its browser, device, geo and utm values
never change. Users come from a pool derived from the seed (sized by the volume), so a
returning user keeps ``user_domain_id`` and ``user_custom_id`` (``userN@example.com`` or
``userN@example.org``) across hours.

The hour-tail rule
------------------
The sessions *starting* in hour S form the stream of S: exactly ``n`` page views (``n`` is
``events_per_hour``, or that volume shaped by the visits-per-hour curve when asked), ordered
by event time, drawn from random generators seeded by ``(seed, S)`` only. Session starts
follow the visits-per-hour curve within the hour; page views follow each other by seconds
to minutes, so sessions run past the end of their hour.

The last ``round(n * late_fraction)`` page views of the stream of S, and any page view
stamped at or after S + 1h, are *written late*: they go to the partition of S + 1h. The
others go to the partition of S. So the partition of hour H holds the late tail of the
stream of H - 1h (stamped mostly in the previous hour; about a quarter of the lines by
default, as in the real sample) followed by the on-time part of the stream of H. Its
content is a function of ``(seed, H)`` alone: generating hours 3..5 gives the same bytes as
generating 0..5 and keeping 3..5. With the curve off, each partition holds exactly
``events_per_hour`` lines whenever the late tail outnumbers the page views stamped past
their hour (about 2 % of them): with the default quarter that holds from about 100 page
views per hour up (at 10 per hour a few hours are off by one or two), not with a zero tail.

Everything random comes from ``random.Random`` instances seeded by SHA-256 of the seed and
the hour (never the clock, never ``uuid4``); ZIP entries carry the hour as their time stamp,
so the same arguments give byte-identical objects. Memory stays bounded whatever the
volume: events are produced in time order from a heap of the sessions in progress and
streamed into the archives.

Command line (uploads through the Airflow connection, e.g. ``AIRFLOW_CONN_CLICKSTREAM_S3``)::

    python scripts/synthetic_clickstream.py --conn-id clickstream_s3 --bucket clickstream \\
        --start 2024-04-10T23:00:00+00:00 --hours 3 --events-per-hour 1000 --seed 7
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import sys
import tempfile
import threading
import zipfile
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from functools import cache
from heapq import heappop, heappush, heapreplace
from itertools import accumulate
from json.encoder import encode_basestring_ascii as encode_string
from pathlib import Path
from queue import Queue
from typing import TYPE_CHECKING, NamedTuple

# Run as a script (the compose stack's seed service) the package is not on the path yet.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from clickstream.config import SourceTable, get_settings, utc_hour
from clickstream.source import member_name, object_key

if TYPE_CHECKING:
    from botocore.client import BaseClient

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
LATE_FRACTION = 0.25
"""Share of an hour's page views written into the next hour's partition (real sample: 0.256)."""

SITE_URL = "http://www.dummywebsite.com"
END = "end"
PAGE_TRANSITIONS: dict[str, dict[str, float]] = {
    "home": {"home": 0.45, "product_a": 0.17, "product_b": 0.12, END: 0.26},
    "product_a": {"product_a": 0.5, "home": 0.18, "cart": 0.12, END: 0.2},
    "product_b": {"product_b": 0.4, "home": 0.22, "cart": 0.14, END: 0.24},
    "cart": {"cart": 0.25, "payment": 0.5, "home": 0.15, END: 0.1},
    "payment": {"payment": 0.45, "confirmation": 0.4, "cart": 0.1, END: 0.05},
    "confirmation": {"confirmation": 0.4, END: 0.6},
}
LANDING_PAGES = {"home": 0.6, "product_a": 0.25, "product_b": 0.15}
VISITS_PER_HOUR = (
    0.0273, 0.0185, 0.0108, 0.0106, 0.0050, 0.0105, 0.0192, 0.0297, 0.0382, 0.0426, 0.0549, 0.0583,
    0.0647, 0.0627, 0.0572, 0.0521, 0.0590, 0.0667, 0.0718, 0.0662, 0.0696, 0.0428, 0.0329, 0.0287,
)  # fmt: skip
"""Share of a day's visits starting in each UTC hour (lowest 04:00, highest 18:00)."""
UTM_SOURCES = {"google": 0.15, "facebook": 0.3, "bing": 0.05, "instagram": 0.2, "mailchimp": 0.3}
UTM_MEDIUMS = {"cpc": 0.25, "affiliate": 0.1, "organic": 0.4, "social": 0.25}
UTM_CONTENTS = {"ad_1": 0.05, "ad_2": 0.3, "ad_3": 0.2, "ad_4": 0.25, "ad_5": 0.2}
UTM_CAMPAIGNS = {"campaign_1": 0.8, "campaign_2": 0.2}
SEARCH_SOURCES = frozenset({"google", "bing"})
BROWSERS = {"Chrome": 0.5, "Firefox": 0.25, "InternetExplorer": 0.05, "Safari": 0.1, "Opera": 0.1}
OPERATING_SYSTEMS = {"Windows": 0.1, "MacOS": 0.15, "Linux": 0.05, "Android": 0.3, "iOS": 0.4}
MOBILE_OS = frozenset({"Android", "iOS"})

_OS_VERSIONS = {
    "Windows": ("Windows NT 10.0; Win64; x64", "Windows NT 6.3; Win64; x64", "Windows NT 6.1; WOW64"),
    "MacOS": (
        "Macintosh; Intel Mac OS X 10_15_7",
        "Macintosh; Intel Mac OS X 13_4",
        "Macintosh; Intel Mac OS X 12_6",
    ),
    "Linux": ("X11; Linux x86_64", "X11; Ubuntu; Linux x86_64", "X11; Linux i686"),
    "Android": ("Android 14", "Android 13", "Android 12", "Android 11", "Android 10"),
    "iOS": (
        "iPhone; CPU iPhone OS 17_4 like Mac OS X",
        "iPhone; CPU iPhone OS 16_6 like Mac OS X",
        "iPhone; CPU iPhone OS 15_7 like Mac OS X",
        "iPad; CPU OS 16_6 like Mac OS X",
    ),
}
_USER_AGENTS = {
    "Chrome": "Mozilla/5.0 ({os}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.{build}.0 {mobile}Safari/537.36",
    "Firefox": "Mozilla/5.0 ({os}; rv:{major}.0) Gecko/20100101 Firefox/{major}.0",
    "InternetExplorer": "Mozilla/5.0 ({os}; Trident/7.0; rv:11.0) like Gecko",
    "Safari": "Mozilla/5.0 ({os}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{safari}.0 {mobile}Safari/605.1.15",
    "Opera": "Mozilla/5.0 ({os}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.{build}.0 {mobile}Safari/537.36 OPR/{opera}.0.0.0",
}  # fmt: skip
# name, latitude, longitude, country, timezone, browser language, weight
_CITIES = (
    ("New York", "40.71427", "-74.00597", "US", "America/New_York", "en_US", 5),
    ("Los Angeles", "34.05223", "-118.24368", "US", "America/Los_Angeles", "en_US", 4),
    ("Chicago", "41.85003", "-87.65005", "US", "America/Chicago", "en_US", 3),
    ("Houston", "29.76328", "-95.36327", "US", "America/Chicago", "es_US", 2),
    ("Phoenix", "33.44838", "-112.07404", "US", "America/Phoenix", "en_US", 2),
    ("Sao Paulo", "-23.5475", "-46.63611", "BR", "America/Sao_Paulo", "pt_BR", 5),
    ("Rio de Janeiro", "-22.90642", "-43.18223", "BR", "America/Sao_Paulo", "pt_BR", 3),
    ("Moscow", "55.75222", "37.61556", "RU", "Europe/Moscow", "ru_RU", 4),
    ("Saint Petersburg", "59.93863", "30.31413", "RU", "Europe/Moscow", "ru_RU", 2),
    ("Paris", "48.85341", "2.3488", "FR", "Europe/Paris", "fr_FR", 4),
    ("Lyon", "45.74846", "4.84671", "FR", "Europe/Paris", "fr_FR", 2),
    ("Mumbai", "19.07283", "72.88261", "IN", "Asia/Kolkata", "hi_IN", 3),
    ("Bengaluru", "12.97194", "77.59369", "IN", "Asia/Kolkata", "en_IN", 2),
    ("Madrid", "40.4165", "-3.70256", "ES", "Europe/Madrid", "es_ES", 3),
    ("Barcelona", "41.38879", "2.15899", "ES", "Europe/Madrid", "ca_ES", 2),
    ("London", "51.50853", "-0.12574", "GB", "Europe/London", "en_GB", 3),
    ("Manchester", "53.48095", "-2.23743", "GB", "Europe/London", "en_GB", 2),
    ("Mexico City", "19.42847", "-99.12766", "MX", "America/Mexico_City", "es_MX", 3),
    ("Guadalajara", "20.66682", "-103.39182", "MX", "America/Mexico_City", "es_MX", 2),
    ("Shanghai", "31.22222", "121.45806", "CN", "Asia/Shanghai", "zh_CN", 2),
    ("Beijing", "39.9075", "116.39723", "CN", "Asia/Shanghai", "zh_CN", 2),
    ("Tokyo", "35.6895", "139.69171", "JP", "Asia/Tokyo", "ja_JP", 3),
    ("Osaka", "34.69374", "135.50218", "JP", "Asia/Tokyo", "ja_JP", 1),
    ("Berlin", "52.52437", "13.41053", "DE", "Europe/Berlin", "de_DE", 2),
    ("Munich", "48.13743", "11.57549", "DE", "Europe/Berlin", "de_DE", 1),
    ("Rome", "41.89193", "12.51133", "IT", "Europe/Rome", "it_IT", 2),
    ("Toronto", "43.70011", "-79.4163", "CA", "America/Toronto", "en_CA", 2),
    ("Sydney", "-33.86785", "151.20732", "AU", "Australia/Sydney", "en_AU", 1),
)

EVENT_COLUMNS = ("event_id", "event_timestamp", "page_url", "page_url_path")
"""Columns that change with every page view; every other column is constant per click."""
CLICK_COLUMNS = (
    "event_type", "click_id", "browser_name", "browser_user_agent", "browser_language", "os",
    "os_name", "os_timezone", "device_type", "device_is_mobile", "user_custom_id", "user_domain_id",
    "geo_latitude", "geo_longitude", "geo_country", "geo_timezone", "geo_region_name", "ip_address",
    "referer_url", "referer_medium", "utm_medium", "utm_source", "utm_content", "utm_campaign",
)  # fmt: skip

_HOUR_US = 3_600_000_000
_MAX_SESSION_US = 45 * 60 * 1_000_000
_DWELL_MEDIAN_SECONDS = 15.0
_DWELL_SIGMA = 1.0
_DWELL_BOUNDS_SECONDS = (0.5, 900.0)
_FLUSH_EVENTS = 4096
# zlib level 1: a quarter larger than the default 6 and about twice as fast, which at 1M
# page views per hour saves more time than the larger upload costs
_COMPRESS_LEVEL = 1
_ZIP64_THRESHOLD_BYTES = 1 << 30
_BYTES_PER_LINE_BOUND = 400
_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_SET = (0x4 << 76) | (0x2 << 62)
_MASK_128 = (1 << 128) - 1
_MIX_MULTIPLIER = 0x9E3779B97F4A7C15F39CC0605CEDC835
_ATTRIBUTE_BITS = 128 + 64 + 32 + 9 * 16
_KNOWN_COLUMNS = frozenset(EVENT_COLUMNS) | frozenset(CLICK_COLUMNS)


class _Choice:
    """A categorical distribution sampled with one uniform number in [0, 1)."""

    __slots__ = ("cumulative", "values")

    def __init__(self, weights: dict):
        total = sum(weights.values())
        self.values = tuple(weights)
        self.cumulative = [w / total for w in accumulate(weights.values())]
        self.cumulative[-1] = 1.0

    def pick(self, uniform: float):
        return self.values[bisect_right(self.cumulative, uniform)]


# The chain of page *changes*: a self-loop becomes time spent on the page.
_LANDING = _Choice(LANDING_PAGES)
_JUMPS = {
    page: _Choice({nxt: w for nxt, w in moves.items() if nxt != page})
    for page, moves in PAGE_TRANSITIONS.items()
}
_LOG_STAY = {page: math.log(moves[page]) for page, moves in PAGE_TRANSITIONS.items()}
_UTM_SOURCE = _Choice(UTM_SOURCES)
_UTM_MEDIUM = _Choice(UTM_MEDIUMS)
_UTM_CONTENT = _Choice(UTM_CONTENTS)
_UTM_CAMPAIGN = _Choice(UTM_CAMPAIGNS)
_BROWSER = _Choice(BROWSERS)
_OS = _Choice(OPERATING_SYSTEMS)
_CITY = _Choice({city: city[-1] for city in _CITIES})
_PAGE_URL_JSON = {page: json.dumps(f"{SITE_URL}/{page}") for page in PAGE_TRANSITIONS}
_PAGE_PATH_JSON = {page: json.dumps(f"/{page}") for page in PAGE_TRANSITIONS}


class Click:
    """One session of one user: the values that every page view of the click shares.

    :param values: column name -> JSON value, for every name in ``CLICK_COLUMNS``.
    """

    __slots__ = ("_lines", "values")

    def __init__(self, values: dict[str, object]):
        self.values = values
        self._lines: tuple[object, list[str | list[str]]] | None = None

    @property
    def click_id(self) -> str:
        return self.values["click_id"]

    def __repr__(self) -> str:
        return f"Click({self.values!r})"


class GeneratedEvent(NamedTuple):
    """One page view: one line of each source table.

    :param event_id: UUID shared by ``browser_events`` and ``location_events``.
    :param event_timestamp: UTC time as ``YYYY-MM-DD HH:MM:SS.ffffff``.
    :param page: page name without the slash, e.g. ``product_a``.
    :param click: the session the page view belongs to.
    """

    event_id: str
    event_timestamp: str
    page: str
    click: Click

    def value(self, column: str) -> object:
        """Return the JSON value of ``column`` for this page view."""
        if column == "event_id":
            return self.event_id
        if column == "event_timestamp":
            return self.event_timestamp
        if column == "page_url":
            return f"{SITE_URL}/{self.page}"
        if column == "page_url_path":
            return f"/{self.page}"
        return self.click.values[column]

    def row(self, table: SourceTable) -> dict[str, object]:
        """Return the page view's line of ``table`` as a dict, keys in the table's column order."""
        return {name: self.value(name) for name in table.column_names}


def _derive_seed(seed: int, hour: datetime, purpose: str) -> int:
    text = f"clickstream-generator/1/{seed}/{hour:%Y-%m-%dT%H}/{purpose}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")


def _uuid(bits: int) -> str:
    """Format the low 128 bits of ``bits`` as a version-4 UUID string."""
    text = ((bits & _UUID_CLEAR) | _UUID_SET).to_bytes(16, "big").hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _sample_path(uniform) -> list[str]:
    """Return the pages of one session, one entry per page change."""
    page = _LANDING.pick(uniform())
    path = [page]
    while (page := _JUMPS[page].pick(uniform())) != END:
        path.append(page)
    return path


class _StartShape:
    """Inverse CDF of session starts within an hour: piecewise linear along the daily curve."""

    def __init__(self, hour_of_day: int):
        share = VISITS_PER_HOUR
        here = share[hour_of_day]
        self.knots = ((share[hour_of_day - 1] + here) / 2, here, (here + share[(hour_of_day + 1) % 24]) / 2)
        left, middle, right = self.knots
        self.first_area = (left + middle) / 4
        self.total_area = self.first_area + (middle + right) / 4

    @staticmethod
    def _solve(start: float, end: float, area: float) -> float:
        # position in a half hour whose density runs linearly from start to end
        slope = end - start
        if abs(slope) < 1e-12:
            return area / start
        return (-start + math.sqrt(start * start + 4 * slope * area)) / (2 * slope)

    def fraction(self, uniform: float) -> float:
        left, middle, right = self.knots
        area = uniform * self.total_area
        if area < self.first_area:
            return min(self._solve(left, middle, area), 0.5)
        return min(0.5 + self._solve(middle, right, area - self.first_area), 1.0 - 1e-12)


class _Session:
    __slots__ = ("attribute_bits", "click", "id_bits", "pages", "times")

    def __init__(self, times: list[int], pages: list[str], attribute_bits: int, id_bits: int):
        self.times, self.pages = times, pages
        self.attribute_bits, self.id_bits = attribute_bits, id_bits
        self.click: Click | None = None


class _Stream:
    """The page views of the sessions starting in one hour, in time order.

    Paths come from one generator (so the number of sessions giving exactly ``events`` page
    views can be counted first), times and attributes from another.
    """

    def __init__(self, seed: int, hour: datetime, events: int, late_fraction: float):
        self.hour, self.events = hour, events
        self.late_from = events - round(events * late_fraction)
        self.path_seed = _derive_seed(seed, hour, "paths")
        self.main_seed = _derive_seed(seed, hour, "sessions")
        self.sessions, self.last_length = self._plan()
        self.prefixes = [f"{hour + offset * HOUR:%Y-%m-%d %H}:" for offset in range(3)]
        self._minute, self._minute_prefix = -1, ""

    def _plan(self) -> tuple[int, int]:
        """Return how many sessions make exactly ``events`` page views, and the last one's length."""
        uniform = random.Random(self.path_seed).random
        total = sessions = length = 0
        while total < self.events:
            length = len(_sample_path(uniform))
            total += length
            sessions += 1
        return sessions, length - (total - self.events)

    def _sessions(self) -> Iterator[_Session]:
        paths = random.Random(self.path_seed).random
        rng = random.Random(self.main_seed)
        uniform, gauss, getrandbits = rng.random, rng.gauss, rng.getrandbits
        fraction = _StartShape(self.hour.hour).fraction
        log, exp, log_stay = math.log, math.exp, _LOG_STAY
        median, sigma = _DWELL_MEDIAN_SECONDS, _DWELL_SIGMA
        low, high = _DWELL_BOUNDS_SECONDS
        count = self.sessions
        for index in range(count):
            pages = _sample_path(paths)
            if index == count - 1:
                pages = pages[: self.last_length]
            start = int(fraction((index + uniform()) / count) * _HOUR_US)
            times = [start]
            if len(pages) > 1:
                dwells = []
                for page in pages[:-1]:
                    steps = 1 + int(log(1.0 - uniform()) / log_stay[page])
                    seconds = steps * median * exp(sigma * gauss())
                    dwells.append(int(min(max(seconds, low), high) * 1_000_000))
                span = sum(dwells)
                if span > _MAX_SESSION_US:
                    dwells = [max(1, dwell * _MAX_SESSION_US // span) for dwell in dwells]
                times = list(accumulate(dwells, initial=start))
            yield _Session(times, pages, getrandbits(_ATTRIBUTE_BITS), getrandbits(128 * len(pages)))

    def __iter__(self) -> Iterator[tuple[int, _Session, int]]:
        """Yield ``(microseconds since the hour, session, index in the session)`` in time order."""
        heap: list = []
        sessions = self._sessions()
        pending = next(sessions, None)
        order = 0
        while heap or pending is not None:
            if pending is not None and (not heap or pending.times[0] < heap[0][0]):
                heappush(heap, (pending.times[0], order, pending, 0))
                order += 1
                pending = next(sessions, None)
                continue
            time_us, rank, session, index = heap[0]
            yield time_us, session, index
            if index + 1 < len(session.times):
                heapreplace(heap, (session.times[index + 1], rank, session, index + 1))
            else:
                heappop(heap)

    def timestamp(self, offset_us: int) -> str:
        """Format a time of the stream; page views come in time order, so the minute is cached."""
        minute, rest = divmod(offset_us, 60_000_000)
        if minute != self._minute:
            hours, minutes = divmod(minute, 60)
            self._minute, self._minute_prefix = minute, f"{self.prefixes[hours]}{minutes:02d}:"
        seconds, micros = divmod(rest, 1_000_000)
        return f"{self._minute_prefix}{seconds:02d}.{micros:06d}"


class _Users:
    """The user base of one seed: ``user_domain_id`` and ``user_custom_id`` by user number.

    A user's UUID is a bijective mix of the number and a key derived from the seed, so it
    is the same in every hour and distinct for every number.
    """

    def __init__(self, seed: int, events_per_hour: int):
        self.key = int.from_bytes(
            hashlib.sha256(f"clickstream-generator/users/{seed}".encode()).digest()[:16], "big"
        )
        self.size = max(1_000, 5 * events_per_hour)

    def user(self, bits: int) -> tuple[str, str]:
        number = bits % self.size
        mixed = (number * _MIX_MULTIPLIER + self.key) & _MASK_128
        mixed ^= mixed >> 67
        mixed = (mixed * _MIX_MULTIPLIER) & _MASK_128
        mixed ^= mixed >> 61
        return _uuid(mixed), f"user{number}@example.{'com' if number % 2 == 0 else 'org'}"


@cache
def _user_agent(browser_name: str, os_name: str, os: str, major: int) -> str:
    return _USER_AGENTS[browser_name].format(
        os=f"Linux; {os}" if os_name == "Android" else os,
        major=major,
        build=4000 + major * 97 % 2500,
        safari=14 + major % 4,
        opera=major - 14,
        mobile="Mobile " if os_name in MOBILE_OS else "",
    )


def _click(bits: int, users: _Users) -> Click:
    """Derive every per-click value from one random integer of ``_ATTRIBUTE_BITS`` bits."""
    click_id = _uuid(bits)
    user_domain_id, user_custom_id = users.user((bits >> 128) & 0xFFFF_FFFF_FFFF_FFFF)
    ip = (bits >> 192) & 0xFFFF_FFFF
    bits >>= 224
    (os_u, os_version_u, browser_u, city_u, source_u, medium_u, content_u, campaign_u) = (
        ((bits >> shift) & 0xFFFF) / 65536.0 for shift in range(0, 128, 16)
    )
    os_name = _OS.pick(os_u)
    os = _OS_VERSIONS[os_name][int(os_version_u * len(_OS_VERSIONS[os_name]))]
    browser_name = _BROWSER.pick(browser_u)
    city_name, latitude, longitude, country, timezone_name, language, _ = _CITY.pick(city_u)
    source = _UTM_SOURCE.pick(source_u)
    mobile = os_name in MOBILE_OS
    user_agent = _user_agent(browser_name, os_name, os, 100 + ((bits >> 128) & 0xFFFF) % 26)
    first_octet = 1 + (ip >> 24) % 223
    if first_octet in (10, 127):
        first_octet += 1
    return Click(
        {
            "event_type": "pageview",
            "click_id": click_id,
            "browser_name": browser_name,
            "browser_user_agent": user_agent,
            "browser_language": language,
            "os": os,
            "os_name": os_name,
            "os_timezone": timezone_name,
            "device_type": "Mobile" if mobile else "Computer",
            "device_is_mobile": mobile,
            "user_custom_id": user_custom_id,
            "user_domain_id": user_domain_id,
            "geo_latitude": latitude,
            "geo_longitude": longitude,
            "geo_country": country,
            "geo_timezone": timezone_name,
            "geo_region_name": city_name,
            "ip_address": f"{first_octet}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}",
            "referer_url": f"www.{source}.com",
            "referer_medium": "search" if source in SEARCH_SOURCES else "internal",
            "utm_medium": _UTM_MEDIUM.pick(medium_u),
            "utm_source": source,
            "utm_content": _UTM_CONTENT.pick(content_u),
            "utm_campaign": _UTM_CAMPAIGN.pick(campaign_u),
        }
    )


def hour_volume(window_start: datetime, events_per_hour: int, daily_curve: bool = False) -> int:
    """Return how many page views the sessions starting in the hour ``window_start`` make.

    :param window_start: start of the hour (UTC).
    :param events_per_hour: the volume of an average hour.
    :param daily_curve: shape the volume by ``VISITS_PER_HOUR`` (the day's mean stays
        ``events_per_hour``); otherwise every hour makes exactly ``events_per_hour``.
    """
    if not daily_curve:
        return events_per_hour
    return max(1, round(events_per_hour * 24 * VISITS_PER_HOUR[window_start.astimezone(UTC).hour]))


def generate_hour(
    window_start: datetime,
    events_per_hour: int,
    seed: int,
    *,
    late_fraction: float = LATE_FRACTION,
    daily_curve: bool = False,
) -> Iterator[GeneratedEvent]:
    """Yield the page views of the partition of hour ``window_start``, in line order.

    The late tail of the previous hour's sessions comes first, then the on-time page views
    of this hour's sessions (the rule is in the module docstring).

    :param window_start: start of the partition's hour, timezone-aware, on an hour boundary.
    :param events_per_hour: page views made by the sessions starting in an hour (>= 1).
    :param seed: any integer; the output is a function of ``(seed, window_start)`` and the
        other arguments alone.
    :param late_fraction: share of an hour's page views written into the next partition.
    :param daily_curve: shape each hour's volume by the visits-per-hour curve.
    """
    if isinstance(events_per_hour, bool) or not isinstance(events_per_hour, int) or events_per_hour < 1:
        raise ValueError(f"events_per_hour must be a positive integer, got {events_per_hour!r}")
    if not 0.0 <= late_fraction < 1.0:
        raise ValueError(f"late_fraction must be in [0, 1), got {late_fraction!r}")
    hour = utc_hour(window_start)
    users = _Users(seed, events_per_hour)
    previous, current = (
        _Stream(seed, start, hour_volume(start, events_per_hour, daily_curve), late_fraction)
        for start in (hour - HOUR, hour)
    )
    for stream, late in ((previous, True), (current, False)):
        late_from, timestamp = stream.late_from, stream.timestamp
        for position, (time_us, session, index) in enumerate(stream):
            if (position >= late_from or time_us >= _HOUR_US) is not late:
                if late:
                    continue
                break
            if session.click is None:
                session.click = _click(session.attribute_bits, users)
            event_id = _uuid(session.id_bits >> (128 * index))
            yield GeneratedEvent(event_id, timestamp(time_us), session.pages[index], session.click)


_SLOT = "\x00"  # never inside a JSON text: encoders escape control characters


def _joiner(slots: tuple[int, ...]) -> Callable[[Sequence[str], Sequence[str]], str] | None:
    """Return ``f(segments, values)`` interleaving the segments with ``values[slot]`` per slot.

    Concatenation is several times faster than ``str.format`` for a line of this size.
    """
    match slots:
        case ():
            return None
        case (a,):
            return lambda s, v: s[0] + v[a] + s[1]
        case (a, b):
            return lambda s, v: s[0] + v[a] + s[1] + v[b] + s[2]
        case (a, b, c):
            return lambda s, v: s[0] + v[a] + s[1] + v[b] + s[2] + v[c] + s[3]
        case (a, b, c, d):
            return lambda s, v: s[0] + v[a] + s[1] + v[b] + s[2] + v[c] + s[3] + v[d] + s[4]
    raise ValueError(f"unexpected per-event columns {slots}")


class _LineRenderer:
    """Renders page views as JSON lines of the given tables, keys in their column order.

    Per click, each table's line is rendered once with a marker where a per-event value
    goes and cut there into segments; each page view only concatenates its values between
    them. Tables without per-event columns (device, geo) repeat the click's line.
    """

    def __init__(self, tables: Sequence[SourceTable]):
        self.templates = []
        self.joiners = []
        for table in tables:
            unknown = [name for name in table.column_names if name not in _KNOWN_COLUMNS]
            if unknown:
                raise ValueError(f"table {table.name}: the generator has no values for column(s) {unknown}")
            parts = [
                f"{json.dumps(name)}: " + (_SLOT if name in EVENT_COLUMNS else f"{{{name}}}")
                for name in table.column_names
            ]
            self.templates.append("{{" + ", ".join(parts) + "}}\n")
            self.joiners.append(
                _joiner(
                    tuple(EVENT_COLUMNS.index(name) for name in table.column_names if name in EVENT_COLUMNS)
                )
            )

    def _click_segments(self, click: Click) -> list[str | list[str]]:
        """Return per table the click's finished line, or its segments between per-event values."""
        encoded = {
            name: encode_string(value) if isinstance(value, str) else json.dumps(value)
            for name, value in click.values.items()
        }
        segments: list[str | list[str]] = []
        for template, joiner in zip(self.templates, self.joiners, strict=True):
            line = template.format_map(encoded)
            segments.append(line if joiner is None else line.split(_SLOT))
        return segments

    def lines(self, event: GeneratedEvent) -> list[str]:
        """Return the page view's line of each table, newline included."""
        click = event.click
        cached = click._lines
        if cached is None or cached[0] is not self:
            cached = click._lines = (self, self._click_segments(click))
        values = (
            f'"{event.event_id}"',
            f'"{event.event_timestamp}"',
            _PAGE_URL_JSON[event.page],
            _PAGE_PATH_JSON[event.page],
        )
        return [
            segments if joiner is None else joiner(segments, values)
            for joiner, segments in zip(self.joiners, cached[1], strict=True)
        ]


class _ArchiveWriter:
    """Compresses chunks into archive members on a background thread (zlib releases the GIL).

    The queue is bounded, so at most a few chunks are held in memory.
    """

    def __init__(self, members: Sequence):
        self.members = members
        self.queue: Queue = Queue(maxsize=8)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="clickstream-zip-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.members[item[0]].write(item[1])
                except BaseException as error:  # re-raised in the producing thread
                    self.error = error

    def write(self, index: int, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((index, data))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _zip_entry(table: str, hour: datetime) -> zipfile.ZipInfo:
    """Return the archive entry of ``table``: stamped with the hour (not the clock), deflated."""
    entry = zipfile.ZipInfo(member_name(table), date_time=(hour.year, hour.month, hour.day, hour.hour, 0, 0))
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o644 << 16
    # ZipFile.open() takes the level from the entry: public ``compress_level`` from Python 3.13
    setattr(
        entry, "compress_level" if hasattr(entry, "compress_level") else "_compresslevel", _COMPRESS_LEVEL
    )
    return entry


def write_hour_archives(
    window_start: datetime,
    events_per_hour: int,
    seed: int,
    directory: str | Path,
    *,
    tables: Sequence[SourceTable] | None = None,
    late_fraction: float = LATE_FRACTION,
    daily_curve: bool = False,
) -> dict[str, Path]:
    """Write the partition of hour ``window_start`` as one ZIP archive per table.

    Lines are streamed into the archives, so memory does not grow with the volume.

    :param window_start: start of the hour, timezone-aware, on an hour boundary.
    :param events_per_hour: page views per hour (see :func:`generate_hour`).
    :param seed: seed of the synthetic source.
    :param directory: existing directory receiving ``<table>.jsonl.zip`` files.
    :param tables: tables to write; default: the configured source tables.
    :param late_fraction: see :func:`generate_hour`.
    :param daily_curve: see :func:`generate_hour`.
    :return: table name -> path of its archive.
    """
    tables = tuple(tables if tables is not None else get_settings().tables)
    renderer = _LineRenderer(tables)
    hour = utc_hour(window_start)
    paths = {table.name: Path(directory) / f"{table.name}.jsonl.zip" for table in tables}
    # a partition holds at most the page views of two streams; lines stay under 400 bytes
    bound = hour_volume(hour - HOUR, events_per_hour, daily_curve) + hour_volume(
        hour, events_per_hour, daily_curve
    )
    zip64 = bound * _BYTES_PER_LINE_BOUND > _ZIP64_THRESHOLD_BYTES
    written = 0
    with ExitStack() as stack:
        members = []
        for table in tables:
            archive = stack.enter_context(zipfile.ZipFile(paths[table.name], "w", zipfile.ZIP_DEFLATED))
            members.append(
                stack.enter_context(archive.open(_zip_entry(table.name, hour), "w", force_zip64=zip64))
            )
        writer = _ArchiveWriter(members)
        try:
            buffers: list[list[str]] = [[] for _ in tables]
            appends = [buffer.append for buffer in buffers]
            events = generate_hour(
                hour, events_per_hour, seed, late_fraction=late_fraction, daily_curve=daily_curve
            )
            for event in events:
                for append, line in zip(appends, renderer.lines(event), strict=True):
                    append(line)
                written += 1
                if written % _FLUSH_EVENTS == 0:
                    _flush(buffers, writer)
            _flush(buffers, writer)
        finally:
            writer.close()
    log.info("Wrote %d lines per table for hour %s into %s", written, hour.isoformat(), directory)
    return paths


def _flush(buffers: list[list[str]], writer: _ArchiveWriter) -> None:
    for index, buffer in enumerate(buffers):
        if buffer:
            writer.write(index, "".join(buffer).encode())
            buffer.clear()


def _s3_client(s3: BaseClient | str) -> BaseClient:
    if isinstance(s3, str):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=s3).get_conn()
    return s3


def upload_hours(
    s3: BaseClient | str,
    bucket: str,
    start: datetime,
    hours: int,
    events_per_hour: int,
    seed: int,
    key_template: str | None = None,
    *,
    tables: Sequence[SourceTable] | None = None,
    late_fraction: float = LATE_FRACTION,
    daily_curve: bool = False,
) -> list[str]:
    """Generate ``hours`` consecutive partitions from ``start`` and upload them.

    Each hour is written to a temporary directory, uploaded with ``upload_file`` and
    removed before the next one, so disk use stays at one hour's archives.

    :param s3: a boto3 S3 client, or the id of an Airflow AWS connection.
    :param bucket: destination bucket (must exist).
    :param start: first hour, timezone-aware, on an hour boundary.
    :param hours: number of hours to write.
    :param events_per_hour: page views per hour (see :func:`generate_hour`).
    :param seed: seed of the synthetic source.
    :param key_template: object key template; default: the configured ``source.key_template``.
    :param tables: tables to write; default: the configured source tables.
    :param late_fraction: see :func:`generate_hour`.
    :param daily_curve: see :func:`generate_hour`.
    :return: the keys written, hour by hour in table order.
    """
    if hours < 0:
        raise ValueError(f"hours must be >= 0, got {hours!r}")
    if key_template is None or tables is None:
        settings = get_settings()
        key_template = key_template or settings.source.key_template
        tables = tables if tables is not None else settings.tables
    client = _s3_client(s3)
    first = utc_hour(start)
    keys = []
    for offset in range(hours):
        hour = first + offset * HOUR
        with tempfile.TemporaryDirectory(prefix="clickstream-generator-") as workdir:
            paths = write_hour_archives(
                hour,
                events_per_hour,
                seed,
                workdir,
                tables=tables,
                late_fraction=late_fraction,
                daily_curve=daily_curve,
            )
            for table, path in paths.items():
                key = object_key(key_template, hour, table)
                client.upload_file(str(path), bucket, key)
                log.info("Uploaded s3://%s/%s (%d bytes)", bucket, key, path.stat().st_size)
                keys.append(key)
    return keys


def _parse_hour(text: str) -> datetime:
    try:
        return utc_hour(datetime.fromisoformat(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: generate hours and upload them through an Airflow connection."""
    parser = argparse.ArgumentParser(
        prog="python scripts/synthetic_clickstream.py",
        description="Upload deterministic synthetic clickstream hours in the source bucket layout.",
    )
    parser.add_argument("--conn-id", help="Airflow AWS connection id (default: source.conn_id of the config)")
    parser.add_argument("--bucket", help="destination bucket (default: source.bucket of the config)")
    parser.add_argument(
        "--start", required=True, type=_parse_hour, help="first hour, e.g. 2024-04-10T23:00:00+00:00"
    )
    parser.add_argument("--hours", type=int, default=1, help="number of hours (default: 1)")
    parser.add_argument(
        "--events-per-hour", type=int, default=1000, help="page views per hour (default: 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument(
        "--late-fraction", type=float, default=LATE_FRACTION, help="share written an hour late"
    )
    parser.add_argument(
        "--daily-curve", action="store_true", help="shape hourly volume by the visits-per-hour curve"
    )
    parser.add_argument(
        "--create-bucket", action="store_true", help="create the bucket when it does not exist"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    settings = get_settings()
    conn_id = args.conn_id or settings.source.conn_id
    bucket = args.bucket or settings.source.bucket
    hook = S3Hook(aws_conn_id=conn_id)
    if args.create_bucket and not hook.check_for_bucket(bucket):
        hook.create_bucket(bucket_name=bucket)
        log.info("Created bucket %s", bucket)
    keys = upload_hours(
        hook.get_conn(),
        bucket,
        args.start,
        args.hours,
        args.events_per_hour,
        args.seed,
        late_fraction=args.late_fraction,
        daily_curve=args.daily_curve,
    )
    print(
        f"Wrote {len(keys)} objects to s3://{bucket}: {args.hours} hour(s) from {args.start.isoformat()}, "
        f"{args.events_per_hour} events per hour, seed {args.seed}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
