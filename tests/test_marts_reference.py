"""Every mart equals an independent computation (tests/reference_marts.py), on both backends.

The data set: three days of generated clickstream (every fourth hour, so the windows stay
few) plus hand-made clicks for the rules the generator never exercises:

* a journey of more than 24 h with pages on both sides of the look-back, and a second
  purchase of the same click whose journey starts at the first purchase;
* an event_id copied into another hour (counts in each) and re-delivered in the next window
  with the same stamp (counts once);
* a user with two e-mails, and an e-mail shared by two users, buying in different hours, so
  that counting e-mails instead of users changes the buyers of those hours;
* clicks whose device lines, or geo lines, are missing;
* purchases stamped by wrong client clocks (1970, 2099, Unix seconds): out of window, in no mart.

Loaded out of order (day 3, day 1, day 2) with an incremental refresh after each day, then
rebuilt in full: both must equal the reference. Nothing of the project's SQL computes the
expected values.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from fake_clickhouse import member_sidecar_key
from reference_marts import ReferenceMarts, as_counts, read_marts, reference_marts
from source_objects import put_object, zip_bytes
from synthetic_clickstream import generate_hour

from clickstream.loading import WindowLoader, ensure_schema, source_bucket
from clickstream.marts import FULL, INCREMENTAL, MARTS, full_rebuild, refresh
from clickstream.source import member_name
from clickstream.warehouse import ClickHouseHook

DAY1 = datetime(2024, 5, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SITE = "http://www.dummywebsite.com"
GENERATED_HOURS = [DAY1 + HOUR * offset for offset in range(0, 72, 4)]
EVENTS_PER_HOUR = 10
SEED = 4242
STRAY_WINDOW = GENERATED_HOURS[2]
STRAY_STAMPS = ("1970-01-01 00:00:00.000000", "2099-12-31 23:59:59.000000", "100000")


def _id(kind: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"reference-marts/{kind}/{name}"))


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


class Windows:
    """The source lines of each window, table by table, as the objects will hold them."""

    def __init__(self):
        self.rows: dict[datetime, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))

    def add_generated(self, settings) -> None:
        for window_start in GENERATED_HOURS:
            for event in generate_hour(window_start, EVENTS_PER_HOUR, SEED):
                for table in settings.tables:
                    self.rows[window_start][table.name].append(event.row(table))

    def add_view(
        self,
        name: str,
        click: str,
        at: datetime,
        path: str,
        *,
        window: datetime | None = None,
        user: str | None = "",
        email: str = "",
        geo: bool = True,
        browser: str = "Chrome",
        event_id: str | None = None,
        utm: tuple[str, str, str] = ("google", "cpc", "campaign_1"),
        stamp: str | None = None,
    ) -> str:
        """Write one page view's lines into ``window`` (default: the hour it is stamped in).

        :param user: the user_domain_id name; None writes no device line.
        :param stamp: the event_timestamp as written, when it is not ``at`` (a wrong clock).
        """
        window = window or at.replace(minute=0, second=0, microsecond=0)
        event_id = event_id or _id("event", name)
        click_id = _id("click", click)
        tables = self.rows[window]
        tables["browser_events"].append(
            {
                "event_id": event_id,
                "event_timestamp": stamp or _stamp(at),
                "event_type": "pageview",
                "click_id": click_id,
                "browser_name": browser,
                "browser_user_agent": "Mozilla/5.0",
                "browser_language": "en_US",
            }
        )
        tables["location_events"].append(
            {
                "event_id": event_id,
                "page_url": SITE + path,
                "page_url_path": path,
                "referer_url": f"www.{utm[0]}.com",
                "referer_medium": "internal",
                "utm_medium": utm[1],
                "utm_source": utm[0],
                "utm_content": "ad_1",
                "utm_campaign": utm[2],
            }
        )
        if user is not None:
            tables["device_events"].append(
                {
                    "click_id": click_id,
                    "os": "iOS 16",
                    "os_name": "iOS",
                    "os_timezone": "UTC",
                    "device_type": "Mobile",
                    "device_is_mobile": True,
                    "user_custom_id": email or f"{user}@example.com",
                    "user_domain_id": _id("user", user),
                }
            )
        if geo:
            tables["geo_events"].append(
                {
                    "click_id": click_id,
                    "geo_latitude": "55.75",
                    "geo_longitude": "37.61",
                    "geo_country": "Russia",
                    "geo_timezone": "Europe/Moscow",
                    "geo_region_name": "Moscow",
                    "ip_address": "10.0.0.1",
                }
            )
        return event_id


def build_windows(settings) -> Windows:
    windows = Windows()
    windows.add_generated(settings)
    day2 = DAY1 + timedelta(days=1)

    # A journey of 25.5 h: /product_a falls outside the purchase's 24 h look-back, /home and
    # /product_b inside. The second purchase's journey starts at the first purchase.
    long = {"click": "long-journey", "user": "long", "browser": "Firefox"}
    windows.add_view("long-1", at=DAY1 + timedelta(hours=10, minutes=5), path="/product_a", **long)
    windows.add_view("long-2", at=DAY1 + timedelta(hours=13, minutes=10), path="/home", **long)
    windows.add_view("long-3", at=day2 + timedelta(hours=11), path="/product_b", **long)
    windows.add_view("long-4", at=day2 + timedelta(hours=11, minutes=20), path="/cart", **long)
    windows.add_view("long-5", at=day2 + timedelta(hours=11, minutes=30), path="/payment", **long)
    windows.add_view("long-6", at=day2 + timedelta(hours=11, minutes=40), path="/confirmation", **long)
    windows.add_view("long-7", at=day2 + timedelta(hours=13), path="/product_a", **long)
    # Written late, into the next hour's window, as the source does.
    windows.add_view(
        "long-8",
        at=day2 + timedelta(hours=13, minutes=59),
        window=day2 + timedelta(hours=14),
        path="/confirmation",
        **long,
    )

    # One event_id stamped in two hours counts in each; re-delivered with the same stamp in
    # the next window, it counts once.
    copied = _id("event", "copied")
    first = DAY1 + timedelta(hours=5, minutes=10)
    windows.add_view("copied", "copier", first, "/home", user="copier", event_id=copied)
    windows.add_view("copied", "copier", first, "/home", user="copier", event_id=copied, window=first + HOUR)
    windows.add_view("copied", "copier", first + 2 * HOUR, "/home", user="copier", event_id=copied)

    # A user with two e-mails buys twice in one hour; two users sharing an e-mail buy in another.
    two_mails = DAY1 + timedelta(days=2, hours=15)
    for number, email in enumerate(("first@example.com", "second@example.com")):
        windows.add_view(
            f"two-mails-{number}", f"two-mails-{number}", two_mails + timedelta(minutes=10 + number),
            "/confirmation", user="two-mails", email=email, utm=("bing", "organic", "campaign_2"),
        )  # fmt: skip
    shared = two_mails + 2 * HOUR
    for number in range(2):
        windows.add_view(
            f"shared-{number}", f"shared-{number}", shared + timedelta(minutes=5 + number),
            "/confirmation", user=f"shared-{number}", email="shared@example.com",
            utm=("bing", "organic", "campaign_2"),
        )  # fmt: skip

    # No device lines at all (no user, no device type), and no geo lines.
    no_device = DAY1 + timedelta(hours=21)
    windows.add_view("no-device-1", "no-device", no_device + timedelta(minutes=1), "/product_b", user=None)
    windows.add_view("no-device-2", "no-device", no_device + timedelta(minutes=9), "/confirmation", user=None)
    no_geo = DAY1 + timedelta(hours=22)
    windows.add_view("no-geo-1", "no-geo", no_geo + timedelta(minutes=2), "/home", user="no-geo", geo=False)
    windows.add_view(
        "no-geo-2", "no-geo", no_geo + timedelta(minutes=7), "/confirmation", user="no-geo", geo=False
    )
    # Client clocks gone wrong, in a window of generated events: purchases stamped at 1970,
    # in 2099, and "100000" (Unix seconds, 1970-01-02). Out of window: loaded, in no mart.
    stray_window = STRAY_WINDOW
    for number, stamp in enumerate(STRAY_STAMPS):
        windows.add_view(
            f"stray-{number}", f"stray-{number}", stray_window + timedelta(minutes=30), "/confirmation",
            window=stray_window, user=f"stray-{number}", stamp=stamp,
        )  # fmt: skip
    return windows


def expected(settings, windows: Windows, user_of=None) -> ReferenceMarts:
    options = {} if user_of is None else {"user_of": user_of}
    return reference_marts(
        windows.rows,
        settings.marts.purchase_page_path,
        settings.marts.checkout_paths,
        timedelta(hours=settings.marts.journey_lookback_hours),
        timedelta(hours=settings.source.event_time_tolerance_hours),
        **options,
    )


def put_window(s3_client, bucket: str, window_start: datetime, tables, for_server: bool) -> None:
    """Write every table's object of the window; a table without lines gets an empty member."""
    for table in ("browser_events", "device_events", "geo_events", "location_events"):
        lines = [json.dumps(row) for row in tables.get(table, ())]
        key = put_object(s3_client, bucket, window_start, table, zip_bytes(member_name(table), lines))
        if for_server:
            # The stand-in server's engine has no ZIP reader: it reads the member beside the object.
            body = "".join(line + "\n" for line in lines).encode()
            s3_client.put_object(
                Bucket=bucket, Key=member_sidecar_key(key, member_name(table)), Body=gzip.compress(body)
            )


@pytest.fixture(params=["embedded", "server"])
def backend(request, s3_connection):
    """An open hook on a fresh warehouse: embedded chdb, or the native-protocol stand-in."""
    if request.param == "embedded":
        request.getfixturevalue("chdb_path")
    else:
        request.getfixturevalue("clickhouse_server")
    with ClickHouseHook() as hook:
        yield request.param, hook


def test_every_mart_equals_the_reference_incrementally_and_in_full(s3_client, bucket, settings, backend):
    name, hook = backend
    ensure_schema(hook, settings)
    windows = build_windows(settings)
    loader = WindowLoader(hook, source_bucket(settings), settings)
    by_day: dict[int, list[datetime]] = defaultdict(list)
    for window_start in windows.rows:
        by_day[(window_start - DAY1).days].append(window_start)
    assert sorted(by_day) == [0, 1, 2], "three days of windows"

    modes = []
    for day in (2, 0, 1):  # history arrives out of order
        for window_start in sorted(by_day[day]):
            put_window(
                s3_client, bucket, window_start, windows.rows[window_start], for_server=name == "server"
            )
            for table in settings.tables:
                loader.load(table, window_start)
        modes.append(refresh(hook, settings).mode)
    assert modes == [FULL, INCREMENTAL, INCREMENTAL]
    reference = as_counts(expected(settings, windows))
    assert read_marts(hook, settings) == reference

    full_rebuild(hook, settings)
    assert read_marts(hook, settings) == reference
    assert set(reference) == {mart.removeprefix("mart_") for mart in MARTS}


def test_the_data_set_exercises_every_rule(settings):
    """The reference data holds what the rules are about; otherwise equality proves little."""
    windows = build_windows(settings)
    reference = expected(settings, windows)
    day2 = DAY1 + timedelta(days=1)
    purchase_hour = day2 + timedelta(hours=11)
    long_pages = {
        key[1] for key in reference.leading_pages if key[0] == purchase_hour and key[2] == "Firefox"
    }
    assert long_pages == {f"{SITE}/home", f"{SITE}/product_b"}, "the 24 h look-back cuts /product_a"
    second = {key[1] for key in reference.leading_pages if key[0] == day2 + timedelta(hours=13)}
    assert f"{SITE}/product_a" in second and f"{SITE}/home" not in second, (
        "journey starts at the last purchase"
    )
    copied_hours = {
        key[0] for key, count in reference.hourly_events.items() if key[1] == "/home" and key[2] == "Chrome"
    }
    assert {DAY1 + timedelta(hours=5), DAY1 + timedelta(hours=7)} <= copied_hours
    no_device = [key for key in reference.purchases_by_region if key[0] == DAY1 + timedelta(hours=21)]
    assert reference.purchases_by_region[no_device[0]][1] == set(), "a purchase without a user has no buyer"
    no_geo = {key[1:] for key in reference.purchases_by_region if key[0] == DAY1 + timedelta(hours=22)}
    assert ("", "") in no_geo, "a purchase without geo lines counts in the empty region"
    counting_strays = reference_marts(
        windows.rows,
        settings.marts.purchase_page_path,
        settings.marts.checkout_paths,
        timedelta(hours=settings.marts.journey_lookback_hours),
        timedelta(days=365 * 200),
    )
    assert len(counting_strays.purchases_by_source) > len(reference.purchases_by_source), (
        "the stray stamps would be purchases of their own hours"
    )


def test_no_mart_counts_or_shows_e_mail_addresses(s3_client, bucket, settings, chdb_path):
    """user_custom_id (an e-mail) never enters the marts: counting it would change the buyers."""
    windows = build_windows(settings)
    by_user = as_counts(expected(settings, windows))
    by_email = as_counts(expected(settings, windows, user_of=_email_of(windows)))
    assert by_user["purchases_by_source"] != by_email["purchases_by_source"], (
        "the data tells users from e-mails"
    )
    assert by_user["purchases_by_region"] != by_email["purchases_by_region"]
    assert by_user["users_by_source"] != by_email["users_by_source"]

    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        loader = WindowLoader(hook, source_bucket(settings), settings)
        for window_start, tables in windows.rows.items():
            put_window(s3_client, bucket, window_start, tables, for_server=False)
            for table in settings.tables:
                loader.load(table, window_start)
        refresh(hook, settings)
        found = read_marts(hook, settings)
        assert found == by_user
        emails = {
            row["user_custom_id"]
            for tables in windows.rows.values()
            for row in tables.get("device_events", ())
        }
        for mart in MARTS:
            columns = hook.backend.execute(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {mart:String}",
                {"db": settings.warehouse.database, "mart": mart},
            )
            names = {column for column, _ in columns}
            assert names and not any("custom" in column or "mail" in column for column in names), (
                mart,
                names,
            )
            # A state cannot be read as it is: its finalized value is what a reader gets from it.
            readable = ", ".join(
                f"toString(finalizeAggregation({column}))"
                if kind.startswith("AggregateFunction")
                else f"toString({column})"
                for column, kind in columns
            )
            values = hook.backend.execute(f"SELECT {readable} FROM {settings.warehouse.database}.{mart}", {})
            shown = {value for row in values for value in row}
            assert values and not any("@" in value for value in shown), f"{mart} shows an e-mail address"
            assert not shown & emails


def _email_of(windows: Windows):
    emails = {}
    for window_start, tables in windows.rows.items():
        for row in tables.get("device_events", ()):
            emails.setdefault((window_start, row["click_id"]), row["user_custom_id"])

    def email(event) -> str:
        return emails.get((event.window_start, event.click_id), "")

    return email


def test_distinct_buyers_over_several_hours_merge_states_not_hourly_counts(
    s3_client, bucket, settings, chdb_path
):
    windows = build_windows(settings)
    reference = expected(settings, windows)
    start, end = DAY1, DAY1 + timedelta(days=3)
    buyers = set().union(*(users for _, users in reference.purchases_by_source.values()))
    hourly_sum = sum(len(users) for _, users in reference.purchases_by_source.values())
    assert len(buyers) < hourly_sum, "some buyer buys in several hours"

    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        loader = WindowLoader(hook, source_bucket(settings), settings)
        for window_start, tables in windows.rows.items():
            put_window(s3_client, bucket, window_start, tables, for_server=False)
            for table in settings.tables:
                loader.load(table, window_start)
        refresh(hook, settings)
        [[merged]] = hook.backend.execute(
            f"SELECT uniqExactMerge(buyers) FROM {settings.warehouse.database}.mart_purchases_by_source "
            "WHERE hour >= {start:DateTime('UTC')} AND hour < {end:DateTime('UTC')}",
            {"start": start.strftime("%Y-%m-%d %H:%M:%S"), "end": end.strftime("%Y-%m-%d %H:%M:%S")},
        )
    assert int(merged) == len(buyers)


def test_stray_stamps_are_loaded_counted_and_cost_a_refresh_no_more_than_their_window(
    s3_client, bucket, settings, chdb_path
):
    windows = build_windows(settings)
    lookback = settings.marts.journey_lookback_hours
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        loader = WindowLoader(hook, source_bucket(settings), settings)
        for window_start in (*GENERATED_HOURS[:2], STRAY_WINDOW):
            put_window(s3_client, bucket, window_start, windows.rows[window_start], for_server=False)
        for window_start in GENERATED_HOURS[:2]:
            for table in settings.tables:
                loader.load(table, window_start)
        assert refresh(hook, settings).mode == FULL
        for table in settings.tables:
            loader.load(table, STRAY_WINDOW)
        result = refresh(hook, settings)
        [[out_of_window, first, last]] = hook.backend.execute(
            "SELECT out_of_window_rows, toString(min_event_time), toString(max_event_time) "
            "FROM clickstream.ingest_log WHERE table_name = 'browser_events' AND status = 'loaded' "
            "AND window_start = {window:DateTime('UTC')}",
            {"window": STRAY_WINDOW.strftime("%Y-%m-%d %H:%M:%S")},
        )
        [[stored]] = hook.backend.execute(
            "SELECT count() FROM clickstream.browser_events "
            "WHERE event_timestamp < '2000-01-01 00:00:00' OR event_timestamp >= '2099-01-01 00:00:00'",
            {},
        )

    assert (out_of_window, stored) == (len(STRAY_STAMPS), len(STRAY_STAMPS)), "loaded as written, counted"
    # The range of the window's other events: the hour before it (late lines) and its own.
    assert datetime.fromisoformat(first).replace(tzinfo=UTC) >= STRAY_WINDOW - HOUR
    assert datetime.fromisoformat(last).replace(tzinfo=UTC) < STRAY_WINDOW + HOUR
    # What a window of ordinary events costs: its two hours, the next one, and the look-back.
    assert result.hours <= 2 + 1 + lookback, result.ranges
