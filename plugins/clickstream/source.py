"""Source objects: one ZIP archive per table and hour in an S3-compatible bucket.

A ZIP archive keeps its directory at the end, so the body cannot be unzipped as it
streams. Each object is spooled to a temporary file in fixed-size chunks, which keeps
memory flat whatever the object's size.

The member is then handed over without being decompressed here: a deflated ZIP member is
a raw deflate stream, and a gzip file is the same stream between a 10-byte header and a
trailer of CRC-32 and length, both of which the ZIP directory already holds. Rewrapping
costs a copy of the compressed bytes; ClickHouse then inflates and checks the CRC itself,
in native code, while it parses. A stored (uncompressed) member has no such trailer, so
its CRC-32 is computed here while it is copied, before any of its rows can be staged.

Every check is also a step of its own (``inspect_archive``, ``verify_member``) for a
backend that reads the member some other way.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException
from botocore.exceptions import ClientError, NoCredentialsError

log = logging.getLogger(__name__)

CHUNK_BYTES = 8 * 1024 * 1024
# Compressed bytes inflated at a time when a member is verified here: bounds the memory of
# one step (JSON lines inflate about tenfold) and the search for where damage starts.
_INFLATE_CHUNK_BYTES = 1024 * 1024
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}

# ZIP compression methods (APPNOTE 4.4.5) an archiver may choose; the loader reads two.
_READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_METHOD_NAMES = {
    1: "shrink",
    6: "implode",
    9: "Deflate64",
    12: "bzip2",
    14: "LZMA",
    93: "Zstandard",
    95: "XZ",
    98: "PPMd",
    99: "AES encryption",
}
_ENCRYPTED_FLAG = 0x1
_STRONG_ENCRYPTION_FLAG = 0x40
_UTF8_NAME_FLAG = 0x800
_AES_METHOD = 99

# What an object that is not a ZIP archive most often is, by its first bytes.
_OTHER_FORMATS = (
    (b"\x1f\x8b", "gzip data"),
    (b"BZh", "bzip2 data"),
    (b"\xfd7zXZ\x00", "xz data"),
    (b"\x28\xb5\x2f\xfd", "Zstandard data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"%PDF", "a PDF document"),
)
_ZIP_START = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"
# The end-of-directory record is 22 bytes plus a comment of up to 64 KiB.
_ZIP_END_SEARCH_BYTES = 22 + 0xFFFF


class SourceError(Exception):
    """A source object could not be used; the message names the object."""


class SourceSetupError(SourceError, AirflowFailException):
    """The bucket cannot be reached as configured (no such connection or bucket, no
    credentials): the message names what to fix, and the task fails without retries."""


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
class ArchiveMember:
    """Where a member's bytes lie in a spooled archive, and what the archive's directory says of them."""

    name: str
    method: int
    crc: int
    compressed_size: int
    size: int
    data_offset: int


@dataclass(frozen=True)
class FetchedObject:
    """A source object's member on local disk (gzip or plain JSON lines), and its version.

    ``archive_path`` is the spooled object itself, for checks that read the member again.
    """

    bucket: str
    key: str
    etag: str
    size_bytes: int
    member_path: Path
    archive_path: Path
    member: str


@dataclass(frozen=True)
class ObjectVersion:
    """What a HEAD request says about an object: the version a load records."""

    etag: str
    size_bytes: int


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

        try:
            S3Hook.get_connection(self.conn_id)
        except AirflowNotFoundException as error:
            # Without it the AWS hook would go on with whatever credentials the machine has,
            # and fail later with NoCredentialsError, naming nothing.
            raise SourceSetupError(
                f"the Airflow connection {self.conn_id!r} of the bucket (source.conn_id) is not defined: "
                f"{error}"
            ) from None
        return S3Hook(aws_conn_id=self.conn_id).get_conn()

    def check_connection(self) -> None:
        """Raise :class:`SourceSetupError` now if the bucket's Airflow connection is not defined."""
        _ = self._client

    @contextmanager
    def _named_failures(self) -> Iterator[None]:
        """Name the bucket and the connection where S3 refuses them."""
        try:
            yield
        except NoCredentialsError:
            raise SourceSetupError(
                f"the Airflow connection {self.conn_id!r} (source.conn_id) gives no S3 credentials for "
                f"bucket {self.bucket!r}"
            ) from None
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchBucket":
                raise SourceSetupError(
                    f"bucket {self.bucket!r} (source.bucket) does not exist at the endpoint of connection "
                    f"{self.conn_id!r}"
                ) from None
            raise

    def version(self, key: str) -> ObjectVersion:
        """Return the ETag and size of ``key`` without reading it.

        :raises SourceObjectMissing: the key does not exist.
        """
        try:
            with self._named_failures():
                head = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_CODES:
                raise SourceObjectMissing(self.bucket, key) from None
            raise
        return ObjectVersion(head.get("ETag", "").strip('"'), int(head.get("ContentLength", 0)))

    def object_url(self, key: str, endpoint_url: str | None = None) -> str:
        """Return the path-style HTTP URL of ``key``: on ``endpoint_url``, else the connection's endpoint."""
        endpoint = (endpoint_url or self._client.meta.endpoint_url).rstrip("/")
        return f"{endpoint}/{quote(self.bucket, safe='')}/{quote(key, safe='/')}"

    def keys_under(self, prefix: str) -> set[str]:
        """Return every key that starts with ``prefix``, over as many list pages as it takes."""
        return set(self.etags_under(prefix)[0])

    def etags_under(self, prefix: str) -> tuple[dict[str, str], int]:
        """Return ``{key: ETag}`` of every key that starts with ``prefix``, and the LIST calls it took."""
        paginator = self._client.get_paginator("list_objects_v2")
        etags: dict[str, str] = {}
        calls = 0
        with self._named_failures():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                calls += 1
                etags.update(
                    (entry["Key"], entry.get("ETag", "").strip('"')) for entry in page.get("Contents", ())
                )
        return etags, calls

    @contextmanager
    def fetch_member(self, key: str, member: str) -> Iterator[FetchedObject]:
        """Download ``key``, put ``member`` in a temporary gzip (or plain) file and yield it.

        :raises SourceObjectMissing: the key does not exist.
        :raises SourceFormatError: the object is not a ZIP archive, lacks ``member``, holds it
            in a form the loader cannot read, or (a stored member) fails its CRC-32 check.
        """
        with tempfile.TemporaryDirectory(prefix="clickstream-") as workdir:
            archive_path = Path(workdir) / "object.zip"
            try:
                with self._named_failures():
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
            announced = response.get("ContentLength")
            if announced is not None and announced != size:
                # A transfer problem, not the object's: a plain SourceError, so the load is retried.
                raise SourceError(
                    f"s3://{self.bucket}/{key}: download ended after {size} of {announced} bytes (connection cut?)"
                )
            member_path = unwrap_member(archive_path, member, Path(workdir), self.bucket, key)
            log.info("Fetched s3://%s/%s (etag %s, %d bytes)", self.bucket, key, etag, size)
            yield FetchedObject(self.bucket, key, etag, size, member_path, archive_path, member)


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


def inspect_archive(archive_path: Path, member: str, bucket: str, key: str) -> ArchiveMember:
    """Check that the spooled object is a ZIP archive holding ``member`` in a form the loader reads.

    Checks the archive's directory, that ``member`` is in it, is not encrypted, is stored or
    deflated, that its local header agrees with the directory, and that its bytes lie inside
    the object. It does not decompress the member: see ``verify_member``.

    :return: where the member's bytes lie and what the directory says of them.
    :raises SourceFormatError: any of the above fails; the message says what the object is.
    """
    size = archive_path.stat().st_size
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
        raise SourceFormatError(bucket, key, _describe_non_zip(archive_path, size, member, error)) from None
    if info.flag_bits & (_ENCRYPTED_FLAG | _STRONG_ENCRYPTION_FLAG) or info.compress_type == _AES_METHOD:
        raise SourceFormatError(
            bucket, key, f"member {member!r} is encrypted; the loader reads only unencrypted members"
        )
    if info.compress_type not in _READABLE_METHODS:
        method = info.compress_type
        named = f" ({_METHOD_NAMES[method]})" if method in _METHOD_NAMES else ""
        raise SourceFormatError(
            bucket,
            key,
            f"member {member!r} uses ZIP compression method {method}{named}, which the loader does not "
            "read; expected stored (0) or deflate (8)",
        )
    with archive_path.open("rb") as archive:
        archive.seek(info.header_offset)
        raw_header = archive.read(_LOCAL_HEADER.size)
        if len(raw_header) < _LOCAL_HEADER.size:
            raise SourceFormatError(
                bucket, key, f"member {member!r}: its local header lies past the end of the object"
            )
        fields = _LOCAL_HEADER.unpack(raw_header)
        name_length, extra_length = fields[-2:]
        stored_name = archive.read(name_length)
    expected_name = info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_NAME_FLAG else "cp437")
    if fields[0] != _ZIP_START or fields[3] != info.compress_type or stored_name != expected_name:
        raise SourceFormatError(
            bucket, key, f"member {member!r} has a corrupt local header (it disagrees with the directory)"
        )
    data_offset = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    if data_offset + info.compress_size > size:
        raise SourceFormatError(
            bucket,
            key,
            f"member {member!r} is truncated: its {info.compress_size} bytes from offset {data_offset} "
            f"run past the end of the object ({size} bytes)",
        )
    return ArchiveMember(
        member, info.compress_type, info.CRC, info.compress_size, info.file_size, data_offset
    )


def _describe_non_zip(archive_path: Path, size: int, member: str, error: Exception) -> str:
    """Say what an object that ``zipfile`` refused is, with its size and what was expected."""
    expected = f"expected a ZIP archive holding {member!r}"
    if size == 0:
        return f"not a ZIP archive: the object is empty (0 bytes); {expected}"
    with archive_path.open("rb") as spooled:
        head = spooled.read(512)
        spooled.seek(max(0, size - _ZIP_END_SEARCH_BYTES))
        tail = spooled.read()
    if head.startswith(_ZIP_START):
        if _ZIP_END not in tail:
            return (
                f"truncated ZIP archive: the object ({size} bytes) starts like a ZIP archive but lacks "
                f"the directory that ends a complete one; {expected}"
            )
        return f"damaged ZIP archive ({size} bytes): {error}; {expected}"
    return f"not a ZIP archive: the object ({size} bytes) is {_what_bytes_are(head)}; {expected}"


def _what_bytes_are(head: bytes) -> str:
    for signature, name in _OTHER_FORMATS:
        if head.startswith(signature):
            return name
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text:
        return "an HTML page"
    if text.startswith(b"<"):
        return "XML or HTML text"
    if text.startswith(b"{"):
        return "JSON text, not compressed"
    return f"of unknown format (it starts with bytes {head[:8].hex(' ')})"


def verify_member(archive_path: Path, member: str, bucket: str, key: str) -> ArchiveMember:
    """Check ``member`` whole: decompress it and compare its CRC-32 and size with the directory.

    The load runs this check itself only for what the engine does not check (a stored
    member, while copying it); it runs this function to explain why the engine rejected a
    deflated member, and a backend that reads members some other way can run it first.

    :return: the member, as ``inspect_archive`` returns it.
    :raises SourceFormatError: the archive fails ``inspect_archive``, the member's compressed
        data is damaged (the message names the line where decoding stops) or incomplete, or
        its CRC-32 or size differ from the directory's.
    """
    found = inspect_archive(archive_path, member, bucket, key)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if found.method == zipfile.ZIP_DEFLATED else None
    digest = _Digest()
    with archive_path.open("rb") as archive:
        archive.seek(found.data_offset)
        remaining = found.compressed_size
        while remaining:
            chunk = archive.read(min(_INFLATE_CHUNK_BYTES, remaining))
            remaining -= len(chunk)
            if inflater is None:
                digest.update(chunk)
                continue
            before = inflater.copy()
            try:
                digest.update(inflater.decompress(chunk))
            except zlib.error as error:
                digest.update(_inflate_until_damage(before, chunk))
                raise SourceFormatError(
                    bucket,
                    key,
                    f"member {member!r} is damaged: its compressed data stops decoding in this line "
                    f"({_zlib_reason(error)})",
                    line=digest.lines + 1,
                ) from None
            if inflater.eof and (inflater.unused_data or remaining):
                raise SourceFormatError(
                    bucket, key, f"member {member!r} is damaged: bytes follow the end of its compressed data"
                )
    if inflater is not None and not inflater.eof:
        raise SourceFormatError(
            bucket,
            key,
            f"member {member!r} is damaged: its compressed data ends before its end marker",
            line=digest.lines + 1,
        )
    digest.check(found, bucket, key)
    return found


def _zlib_reason(error: zlib.error) -> str:
    # "Error -3 while decompressing data: invalid block type": the code says nothing more.
    return str(error).rpartition(": ")[2] or str(error)


def _inflate_until_damage(inflater, chunk: bytes) -> bytes:
    """Return what ``inflater`` yields from the longest prefix of ``chunk`` it decodes without error.

    Damage is found where the decoder meets it: every longer prefix fails, every shorter one
    decodes, so a binary search finds the point in a few dozen tries.
    """
    decodes, fails = 0, len(chunk)
    while fails - decodes > 1:
        middle = (decodes + fails) // 2
        try:
            inflater.copy().decompress(chunk[:middle])
            decodes = middle
        except zlib.error:
            fails = middle
    return inflater.copy().decompress(chunk[:decodes])


class _Digest:
    """CRC-32, size and line count of a member's bytes, as they go by."""

    def __init__(self):
        self.crc = 0
        self.size = 0
        self.lines = 0

    def update(self, data: bytes) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self.lines += data.count(b"\n")

    def check(self, member: ArchiveMember, bucket: str, key: str) -> None:
        """Compare with the directory; a mismatch concerns the whole member, so no line is named."""
        if self.size != member.size:
            raise SourceFormatError(
                bucket,
                key,
                f"member {member.name!r} is damaged: it holds {self.size} bytes, the archive's directory "
                f"says {member.size}",
            )
        if self.crc != member.crc:
            raise SourceFormatError(
                bucket,
                key,
                f"member {member.name!r} is damaged: its CRC-32 is {self.crc:08x}, the archive's directory "
                f"says {member.crc:08x}",
            )


def unwrap_member(archive_path: Path, member: str, workdir: Path, bucket: str, key: str) -> Path:
    """Copy ``member``'s bytes out of the archive: a deflated one as gzip, a stored one as is.

    A deflated member's CRC-32 and size go into the gzip trailer, which the engine checks as
    it inflates; a stored member's CRC-32 and size are checked here, during the copy.

    :raises SourceFormatError: ``inspect_archive`` fails, or a stored member is damaged.
    """
    found = inspect_archive(archive_path, member, bucket, key)
    if found.method == zipfile.ZIP_STORED:
        target = workdir / member
        digest = _Digest()
        with archive_path.open("rb") as archive, target.open("wb") as sink:
            archive.seek(found.data_offset)
            remaining = found.compressed_size
            while remaining:
                chunk = archive.read(min(CHUNK_BYTES, remaining))
                remaining -= len(chunk)
                digest.update(chunk)
                sink.write(chunk)
        digest.check(found, bucket, key)
        return target
    target = workdir / f"{member}.gz"
    with archive_path.open("rb") as archive, target.open("wb") as sink:
        sink.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        sink.flush()
        # The kernel copies the compressed bytes file to file, without passing them through Python.
        offset, remaining = found.data_offset, found.compressed_size
        while remaining:
            copied = os.sendfile(sink.fileno(), archive.fileno(), offset, min(CHUNK_BYTES, remaining))
            if copied == 0:
                raise SourceFormatError(bucket, key, f"member {member!r} is truncated")
            offset += copied
            remaining -= copied
        sink.write(struct.pack("<2L", found.crc, found.size & 0xFFFFFFFF))
    return target
