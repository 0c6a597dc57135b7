"""The purchase marts computed in plain Python from the source lines, for the tests to compare with.

Written from the README's marts contract, not from the project's SQL, so a wrong mart
definition (not only a wrong choice of hours to recompute) shows as a difference:

* an event is a browser line joined with the location line of the same event_id in the same
  window; copies of an event_id stamped in the same hour count once (the copy from the
  earliest window wins), copies stamped in different hours count in each hour;
* an event's device and geo attributes come from the lines with its click_id in the same
  window, the smallest value of each when there are several, '' when there is none;
* an event stamped more than the tolerance before its window or after it is no event of the
  marts (a digit string is Unix seconds, as the engine reads it);
* the user is user_domain_id; a purchase is a view of the purchase page;
* the journey of a purchase P of click C at t is C's events in (s, t), s = the time of C's
  previous purchase, or t - look-back if there is none or it is earlier; a page leads to P
  if a journey event shows it and its path is not a checkout path, once per purchase.

Distinct users are returned as sets, so a test can merge them over any range of hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

Rows = Mapping[str, Iterable[dict]]  # table name -> the JSON records of one window's object


@dataclass(frozen=True, order=True)
class ReferenceEvent:
    window_start: datetime
    timestamp: datetime
    click_id: str
    page_url: str
    page_url_path: str
    browser_name: str
    device_type: str
    user_domain_id: str
    geo_country: str
    geo_region_name: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    event_id: str

    @property
    def hour(self) -> datetime:
        return self.timestamp.replace(minute=0, second=0, microsecond=0)


def _timestamp(text: str, tz) -> datetime:
    if text.isdigit():
        return datetime.fromtimestamp(int(text), tz)
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=tz)


def _smallest_per_click(rows: Iterable[dict], columns: tuple[str, ...]) -> dict[str, dict[str, str]]:
    smallest: dict[str, dict[str, str]] = {}
    for row in rows:
        found = smallest.setdefault(row["click_id"], {column: str(row[column]) for column in columns})
        for column in columns:
            found[column] = min(found[column], str(row[column]))
    return smallest


def reference_events(windows: Mapping[datetime, Rows], tolerance: timedelta) -> list[ReferenceEvent]:
    """Return the events the marts count: one per (event_id, hour), the earliest window's copy,
    of those stamped within ``tolerance`` of their window."""
    chosen: dict[tuple[str, datetime], ReferenceEvent] = {}
    for window_start, tables in windows.items():
        locations: dict[str, list[dict]] = defaultdict(list)
        for row in tables.get("location_events", ()):
            locations[row["event_id"]].append(row)
        devices = _smallest_per_click(tables.get("device_events", ()), ("device_type", "user_domain_id"))
        geos = _smallest_per_click(tables.get("geo_events", ()), ("geo_country", "geo_region_name"))
        for browser in tables.get("browser_events", ()):
            device = devices.get(browser["click_id"], {"device_type": "", "user_domain_id": ""})
            geo = geos.get(browser["click_id"], {"geo_country": "", "geo_region_name": ""})
            for location in locations.get(browser["event_id"], ()):
                event = ReferenceEvent(
                    window_start=window_start,
                    timestamp=_timestamp(browser["event_timestamp"], window_start.tzinfo),
                    click_id=browser["click_id"],
                    page_url=location["page_url"],
                    page_url_path=location["page_url_path"],
                    browser_name=browser["browser_name"],
                    device_type=device["device_type"],
                    user_domain_id=device["user_domain_id"],
                    geo_country=geo["geo_country"],
                    geo_region_name=geo["geo_region_name"],
                    utm_source=location["utm_source"],
                    utm_medium=location["utm_medium"],
                    utm_campaign=location["utm_campaign"],
                    event_id=browser["event_id"],
                )
                if (
                    not window_start - tolerance
                    <= event.timestamp
                    < window_start + timedelta(hours=1) + tolerance
                ):
                    continue
                key = (event.event_id, event.hour)
                if key not in chosen or event < chosen[key]:
                    chosen[key] = event
    return sorted(chosen.values(), key=lambda event: (event.timestamp, event.event_id))


@dataclass
class ReferenceMarts:
    """Each mart as {key: measures}; distinct users as sets of ids."""

    hourly_events: dict[tuple, int]
    leading_pages: dict[tuple, int]
    purchases_by_source: dict[tuple, tuple[int, set[str]]]
    users_by_source: dict[tuple, tuple[int, set[str]]]
    purchases_by_region: dict[tuple, tuple[int, set[str]]]


def reference_marts(
    windows: Mapping[datetime, Rows],
    purchase_page_path: str,
    checkout_paths: Iterable[str],
    lookback: timedelta,
    tolerance: timedelta,
    user_of=lambda event: event.user_domain_id,
) -> ReferenceMarts:
    """Compute every mart from the windows' source lines.

    :param tolerance: how far outside its window an event may be stamped and still count.
    :param user_of: who counts as a distinct user (the contract: user_domain_id); a test
        passes another rule to show the data tells the two apart.
    """
    events = reference_events(windows, tolerance)
    checkout = set(checkout_paths)
    hourly: dict[tuple, int] = defaultdict(int)
    users_by_source: dict[tuple, tuple[int, set[str]]] = {}
    by_click: dict[str, list[ReferenceEvent]] = defaultdict(list)
    for event in events:
        hourly[(event.hour, event.page_url_path, event.browser_name, event.device_type)] += 1
        _count(
            users_by_source,
            (event.hour, event.utm_source, event.utm_medium, event.utm_campaign),
            user_of(event),
        )
        by_click[event.click_id].append(event)

    leading: dict[tuple, set[str]] = defaultdict(set)
    purchases_by_source: dict[tuple, tuple[int, set[str]]] = {}
    purchases_by_region: dict[tuple, tuple[int, set[str]]] = {}
    for click_events in by_click.values():
        previous_purchase: datetime | None = None
        for purchase in click_events:
            if purchase.page_url_path != purchase_page_path:
                continue
            journey_start = purchase.timestamp - lookback
            if previous_purchase is not None and previous_purchase > journey_start:
                journey_start = previous_purchase
            previous_purchase = purchase.timestamp
            pages = {
                event.page_url
                for event in click_events
                if journey_start < event.timestamp < purchase.timestamp
                and event.page_url_path not in checkout
            }
            for page in pages:
                leading[(purchase.hour, page, purchase.browser_name, purchase.device_type)].add(
                    purchase.event_id
                )
            buyer = user_of(purchase)
            _count(
                purchases_by_source,
                (purchase.hour, purchase.utm_source, purchase.utm_medium, purchase.utm_campaign),
                buyer,
            )
            _count(
                purchases_by_region, (purchase.hour, purchase.geo_country, purchase.geo_region_name), buyer
            )
    return ReferenceMarts(
        hourly_events=dict(hourly),
        leading_pages={key: len(ids) for key, ids in leading.items()},
        purchases_by_source=purchases_by_source,
        users_by_source=users_by_source,
        purchases_by_region=purchases_by_region,
    )


def _count(mart: dict[tuple, tuple[int, set[str]]], key: tuple, user: str) -> None:
    count, users = mart.get(key, (0, set()))
    if user:  # an event without a device line has no user: it counts, its user does not
        users = users | {user}
    mart[key] = (count + 1, users)


MART_QUERIES = {
    "hourly_events": "SELECT hour, page_url_path, browser_name, device_type, events FROM {db}.mart_hourly_events",
    "leading_pages": "SELECT hour, page_url, browser_name, device_type, purchases FROM {db}.mart_leading_pages",
    "purchases_by_source": (
        "SELECT hour, utm_source, utm_medium, utm_campaign, purchases, finalizeAggregation(buyers) "
        "FROM {db}.mart_purchases_by_source"
    ),
    "users_by_source": (
        "SELECT hour, utm_source, utm_medium, utm_campaign, events, finalizeAggregation(users) "
        "FROM {db}.mart_users_by_source"
    ),
    "purchases_by_region": (
        "SELECT hour, geo_country, geo_region_name, purchases, finalizeAggregation(buyers) "
        "FROM {db}.mart_purchases_by_region"
    ),
}


def _hour(value) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def read_marts(hook, settings) -> dict[str, dict[tuple, object]]:
    """Each mart as the views show it: {key: count} or {key: (count, distinct users)}."""
    found = {}
    for mart, query in MART_QUERIES.items():
        rows = hook.backend.execute(query.format(db=settings.warehouse.database), {})
        if mart in ("hourly_events", "leading_pages"):
            found[mart] = {(_hour(row[0]), *row[1:-1]): int(row[-1]) for row in rows}
        else:
            found[mart] = {(_hour(row[0]), *row[1:-2]): (int(row[-2]), int(row[-1])) for row in rows}
    return found


def as_counts(reference: ReferenceMarts) -> dict[str, dict[tuple, object]]:
    return {
        "hourly_events": reference.hourly_events,
        "leading_pages": reference.leading_pages,
        **{
            mart: {key: (count, len(users)) for key, (count, users) in getattr(reference, mart).items()}
            for mart in ("purchases_by_source", "users_by_source", "purchases_by_region")
        },
    }
