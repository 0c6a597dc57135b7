"""Writing source objects into a test bucket in the real layout."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from clickstream.config import get_settings
from clickstream.source import member_name, object_key


def zip_bytes(member: str, lines: Iterable[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, "".join(line.rstrip("\n") + "\n" for line in lines))
    return buffer.getvalue()


def put_object(s3_client, bucket: str, window_start: datetime, table: str, body: bytes) -> str:
    key = object_key(get_settings().source.key_template, window_start, table)
    s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    return key


def put_table(s3_client, bucket: str, window_start: datetime, table: str, lines: Iterable[str]) -> str:
    """Write ``lines`` as ``table``'s object for the window; return its key."""
    return put_object(s3_client, bucket, window_start, table, zip_bytes(member_name(table), lines))


def put_sample_window(s3_client, bucket: str, window_start: datetime, sample_dir: Path) -> dict[str, int]:
    """Zip the real sample's four files into one window; return the line count per table."""
    counts = {}
    for table in get_settings().table_names:
        lines = (sample_dir / f"{table}.jsonl").read_text().splitlines()
        put_table(s3_client, bucket, window_start, table, lines)
        counts[table] = len(lines)
    return counts


def device_record(**overrides) -> dict:
    """One valid device_events record; ``overrides`` replace its values."""
    record = {
        "click_id": "10000000-0000-4000-8000-000000000001",
        "os": "Android 1.5",
        "os_name": "Android",
        "os_timezone": "UTC",
        "device_type": "Mobile",
        "device_is_mobile": True,
        "user_custom_id": "someone@example.com",
        "user_domain_id": "20000000-0000-4000-8000-000000000001",
    }
    return record | overrides
