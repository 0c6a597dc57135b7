"""Source objects: one ZIP archive per table and hour in an S3-compatible bucket.

A ZIP archive keeps its directory at the end, so the body cannot be unzipped as it
streams. Each object is spooled to a temporary file in fixed-size chunks, which keeps
memory flat whatever the object's size.

The member is then handed over without being decompressed here: a deflated ZIP member is
a raw deflate stream, and a gzip file is the same stream between a 10-byte header and a
trailer of CRC-32 and length, both of which the ZIP directory already holds. Rewrapping
costs a copy of the compressed bytes; ClickHouse then inflates and checks the CRC itself,
in native code, while it parses.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

CHUNK_BYTES = 8 * 1024 * 1024
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class SourceError(Exception):
    """A source object could not be used; the message names the object."""


class SourceObjectMissing(SourceError):
    def __init__(self, bucket: str, key: str):
        self.bucket, self.key = bucket, key
        super().__init__(f"s3://{bucket}/{key}: object does not exist")


class SourceFormatError(SourceError):
    """The object's bytes are not what the layout promises: names bucket, key and line."""

    def __init__(self, bucket: str, key: str, reason: str, line: int | None = None):
        self.bucket, self.key, self.reason, self.line = bucket, key, reason, line
        where = f"s3://{bucket}/{key}" + (f" line {line}" if line is not None else "")
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class FetchedObject:
    """A source object's member on local disk (gzip or plain JSON lines), and its version."""

    bucket: str
    key: str
    etag: str
    size_bytes: int
    member_path: Path


def object_key(key_template: str, window_start: datetime, table: str) -> str:
    """Return the key of ``table``'s object for the hour starting at ``window_start``."""
    return window_start.strftime(key_template).format(table=table)


def member_name(table: str) -> str:
    return f"{table}.jsonl"


# strftime fields that do not change within a UTC day.
_DAY_FIELDS = frozenset("YmdyjbBaAuwUWVGCe%")


def day_prefix(key_template: str, window_start: datetime) -> str:
    """Return the longest key prefix shared by every object of the day of ``window_start``.

    Listing it (paginated) finds what exists for a whole day with one or a few requests,
    instead of one request per table and hour.
    """
    end = key_template.find("{table}")
    end = len(key_template) if end < 0 else end
    position = key_template.find("%")
    while 0 <= position < end:
        field = key_template[position + 1 : position + 2]
        if field not in _DAY_FIELDS:
            end = position
            break
        position = key_template.find("%", position + 2)
    return window_start.strftime(key_template[:end])


class SourceBucket:
    """Read-only access to the source bucket through an Airflow AWS connection."""

    def __init__(self, conn_id: str, bucket: str):
        if not bucket:
            raise ValueError("bucket must be a non-empty string")
        self.conn_id = conn_id
        self.bucket = bucket

    @cached_property
    def _client(self):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.conn_id).get_conn()

    def keys_under(self, prefix: str) -> set[str]:
        """Return every key that starts with ``prefix``, over as many list pages as it takes."""
        paginator = self._client.get_paginator("list_objects_v2")
        return {
            entry["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for entry in page.get("Contents", ())
        }

    @contextmanager
    def fetch_member(self, key: str, member: str) -> Iterator[FetchedObject]:
        """Download ``key``, put ``member`` in a temporary gzip (or plain) file and yield it.

        :raises SourceObjectMissing: the key does not exist.
        :raises SourceFormatError: the object is not a ZIP archive or lacks ``member``.
        """
        with tempfile.TemporaryDirectory(prefix="clickstream-") as workdir:
            archive_path = Path(workdir) / "object.zip"
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in _MISSING_CODES:
                    raise SourceObjectMissing(self.bucket, key) from None
                raise
            with archive_path.open("wb") as spool:
                body = response["Body"]
                for chunk in iter(lambda: body.read(CHUNK_BYTES), b""):
                    spool.write(chunk)
            etag = response.get("ETag", "").strip('"')
            size = archive_path.stat().st_size
            member_path = unwrap_member(archive_path, member, Path(workdir), self.bucket, key)
            log.info("Fetched s3://%s/%s (etag %s, %d bytes)", self.bucket, key, etag, size)
            yield FetchedObject(self.bucket, key, etag, size, member_path)


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"


def unwrap_member(archive_path: Path, member: str, workdir: Path, bucket: str, key: str) -> Path:
    """Copy ``member``'s bytes out of the archive: a deflated one as gzip, a stored one as is."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = archive.namelist()
            if member not in names:
                raise SourceFormatError(
                    bucket,
                    key,
                    f"ZIP archive has no member {member!r} (members: {', '.join(names) or 'none'})",
                )
            info = archive.getinfo(member)
    except zipfile.BadZipFile as error:
        raise SourceFormatError(bucket, key, f"not a ZIP archive ({error})") from None
    if info.compress_type == zipfile.ZIP_DEFLATED:
        target = workdir / f"{member}.gz"
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        trailer = struct.pack("<2L", info.CRC, info.file_size & 0xFFFFFFFF)
    elif info.compress_type == zipfile.ZIP_STORED:
        target = workdir / member
        header = trailer = b""
    else:
        raise SourceFormatError(
            bucket, key, f"member {member!r} uses unsupported ZIP compression {info.compress_type}"
        )
    with archive_path.open("rb") as archive, target.open("wb") as sink:
        archive.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(archive.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_HEADER_SIGNATURE:
            raise SourceFormatError(bucket, key, f"member {member!r} has a corrupt local header")
        name_length, extra_length = fields[-2:]
        archive.seek(name_length + extra_length, 1)
        sink.write(header)
        sink.flush()
        # The kernel copies the compressed bytes file to file, without passing them through Python.
        offset, remaining = archive.tell(), info.compress_size
        while remaining:
            copied = os.sendfile(sink.fileno(), archive.fileno(), offset, min(CHUNK_BYTES, remaining))
            if copied == 0:
                raise SourceFormatError(bucket, key, f"member {member!r} is truncated")
            offset += copied
            remaining -= copied
        sink.write(trailer)
    return target
