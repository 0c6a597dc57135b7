"""Writing source objects into a test bucket in the real layout."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
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


def raw_zip(member: str, payload: bytes, *, method: int, crc: int, size: int, flags: int = 0) -> bytes:
    """A one-member ZIP archive around ``payload`` as given, whatever the directory claims of it.

    ``zipfile`` only writes consistent archives; this writes what a broken or unusual
    producer would: any compression method, encryption flag, CRC-32 and size.
    """
    name = member.encode()
    common = (flags, method, 0, 0x21, crc, len(payload), size, len(name))
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, *common, 0)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, *common, 0, 0, 0, 0, 0, 0)
    directory_offset = len(local) + len(name) + len(payload)
    directory = central + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(directory), directory_offset, 0)
    return local + name + payload + directory + end


def deflate(data: bytes) -> bytes:
    """``data`` as a raw deflate stream, as a ZIP member holds it."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


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
