"""Source objects: one ZIP archive per table and hour in an S3-compatible bucket.

A ZIP archive keeps its directory at the end, so the body cannot be unzipped as it
streams. Each object is spooled to a temporary file in fixed-size chunks and its one
member is extracted next to it, which keeps memory flat whatever the object's size.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
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
    """A source object extracted to local disk, with what identifies the version read."""

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


class SourceBucket:
    """Read-only access to the source bucket through an Airflow AWS connection."""

    def __init__(self, conn_id: str, bucket: str):
        if not bucket:
            raise ValueError("bucket must be a non-empty string")
        self.conn_id = conn_id
        self.bucket = bucket

    @property
    def _client(self):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.conn_id).get_conn()

    def exists(self, key: str) -> bool:
        """Return whether ``key`` exists in the bucket."""
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return False
            raise
        return True

    @contextmanager
    def fetch_member(self, key: str, member: str) -> Iterator[FetchedObject]:
        """Download ``key``, extract ``member`` to a temporary file and yield it.

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
            member_path = Path(workdir) / member
            _extract_member(archive_path, member, member_path, self.bucket, key)
            log.info("Fetched s3://%s/%s (etag %s, %d bytes)", self.bucket, key, etag, size)
            yield FetchedObject(self.bucket, key, etag, size, member_path)


def _extract_member(archive_path: Path, member: str, target: Path, bucket: str, key: str) -> None:
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = archive.namelist()
            if member not in names:
                raise SourceFormatError(
                    bucket,
                    key,
                    f"ZIP archive has no member {member!r} (members: {', '.join(names) or 'none'})",
                )
            with archive.open(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, CHUNK_BYTES)
    except zipfile.BadZipFile as error:
        raise SourceFormatError(bucket, key, f"not a ZIP archive ({error})") from None
