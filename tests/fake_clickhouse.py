"""A ClickHouse server on loopback for the server backend's tests and benchmark.

No ClickHouse server runs on our build machines, so this one speaks the server side of the
native TCP protocol (hello, queries with settings and server-side parameters, external data,
ping, exceptions, optional compression) and runs every query on the embedded engine (chdb,
the same 25.8 engine). The real clickhouse-driver connects to it over a socket: its handling
of parameters, databases, reconnects and typed results is the driver's own. Results are
encoded with the driver's block writer from the rows the engine returns in Native format.

What it does not do like a server:

* chdb has no minizip, so it cannot read ``'<url> :: <member>'``. The fake stands in for it:
  such a URL is read from ``<url>.<member>.gz``, which the caller puts beside the archive
  (the member rewrapped as gzip: the bytes a server's minizip inflates).
* The engine reaches S3 with the credentials of this process's environment, as a server uses
  its own; the clients never send any.
* One chdb session serves every connection, one query at a time.

Run alone (for the benchmark): ``python tests/fake_clickhouse.py --port P --chdb-path DIR``.
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clickhouse_driver import defines
from clickhouse_driver.block import ColumnOrientedBlock
from clickhouse_driver.bufferedreader import BufferedSocketReader, CompressedBufferedReader
from clickhouse_driver.bufferedwriter import BufferedSocketWriter
from clickhouse_driver.connection import ServerInfo
from clickhouse_driver.context import Context
from clickhouse_driver.protocol import ClientPacketTypes, ServerPacketTypes
from clickhouse_driver.reader import read_binary_str, read_binary_uint8, read_binary_uint64
from clickhouse_driver.streams.native import BlockInputStream, BlockOutputStream
from clickhouse_driver.varint import read_varint, write_varint
from clickhouse_driver.writer import write_binary_int32, write_binary_str, write_binary_uint8

# Parameters (54459) but neither password rules nor the nonce of later revisions.
SERVER_REVISION = defines.DBMS_MIN_PROTOCOL_VERSION_WITH_SERVER_QUERY_TIME_IN_PROGRESS
_ERROR = re.compile(r"Code: (\d+)\. (DB::Exception: )?(.*)", re.DOTALL)
_MEMBER_URL = re.compile(r"^'(.*) :: ([^/]+)'$", re.DOTALL)
_UNBOUND = "'\t'"

log = logging.getLogger(__name__)


@dataclass
class ReceivedQuery:
    """A query as the server received it: text, settings, parameters and the connection's database."""

    query: str
    settings: dict[str, str]
    params: dict[str, str]
    database: str
    compression: bool


@dataclass
class _Engine:
    """The chdb session behind the fake, one query at a time."""

    path: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    bound: set[str] = field(default_factory=set)
    skipped_settings: list[str] = field(default_factory=list)
    known_settings: set[str] = field(default_factory=set)

    def __post_init__(self):
        from chdb import session

        Path(self.path).mkdir(parents=True, exist_ok=True)
        self.session = session.Session(self.path)
        self.current = "default"

    def query(self, text: str, fmt: str = "Native"):
        result = self.session.query(text, fmt)
        return result.bytes() if result is not None else b""

    def applicable(self, flagged: dict[str, tuple[str, bool]]) -> dict[str, str]:
        """The settings a server applies: as a server does, an unknown one that is not flagged
        important is skipped with a warning (its log only); an important one is kept, and
        fails the statement as UNKNOWN_SETTING."""
        if not self.known_settings:
            with self.lock:
                self.known_settings = set(
                    self.query("SELECT name FROM system.settings", "TSVRaw").decode().split()
                )
        known = self.known_settings
        kept = {}
        for name, (value, important) in flagged.items():
            if important or name in known:
                kept[name] = value
            else:
                self.skipped_settings.append(name)
                log.warning("Unknown setting %s, skipped: it is not flagged important", name)
        return kept

    def run(
        self, database: str, query: str, settings: dict[str, str], params: dict[str, str]
    ) -> tuple[bytes, str]:
        """Run ``query`` in ``database``; return its Native output and the database after it."""
        with self.lock:
            if database and database != self.current:
                self.query(f"USE `{database}`")
                self.current = database
            assignments = [f"{name} = '{_quote(value)}'" for name, value in settings.items()]
            assignments += [f"param_{name} = {value}" for name, value in params.items()]
            assignments += [f"param_{name} = {_UNBOUND}" for name in self.bound - set(params)]
            self.bound = set(params)
            if assignments:
                self.query("SET " + ", ".join(assignments))
            output = self.query(query)
            if query.strip().upper().startswith("USE "):
                self.current = self.query("SELECT currentDatabase()", "TSVRaw").decode().strip()
            return output, self.current

    def database_exists(self, name: str) -> bool:
        with self.lock:
            found = self.query(
                f"SELECT count() FROM system.databases WHERE name = '{_quote(name)}'", "TSVRaw"
            )
            return found.decode().strip() == "1"

    def close(self) -> None:
        self.session.close()


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _context(revision: int) -> Context:
    context = Context()
    context.server_info = ServerInfo("ClickHouse", 25, 8, 2, revision, "UTC", "fake", revision)
    context.settings = {}
    context.client_settings = {
        "strings_as_bytes": False,
        "strings_encoding": "utf-8",
        "use_numpy": False,
        "input_format_null_as_default": False,
        "namedtuple_as_json": True,
        "server_side_params": True,
        "quota_key": "",
        "opentelemetry_traceparent": None,
        "opentelemetry_tracestate": "",
        "insert_block_size": 1048576,
    }
    return context


def _native_blocks(data: bytes):
    """Yield the blocks of the engine's Native output, decoded by the driver's column readers."""
    if not data:
        return
    chunks = [data]
    reader = CompressedBufferedReader(lambda: chunks.pop() if chunks else b"", len(data))
    stream = BlockInputStream(reader, _context(0))
    while True:
        yield stream.read()
        if not chunks and reader.position >= reader.current_buffer_size:
            return


_SETTING_IMPORTANT = 0x1


def _read_settings(fin) -> dict[str, str]:
    return {name: value for name, (value, _) in _read_flagged_settings(fin).items()}


def _read_flagged_settings(fin) -> dict[str, tuple[str, bool]]:
    """Settings as sent: name -> (value, whether the client flagged it important)."""
    settings = {}
    while name := read_binary_str(fin):
        flags = read_binary_uint8(fin)
        settings[name] = (read_binary_str(fin), bool(flags & _SETTING_IMPORTANT))
    return settings


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fin = BufferedSocketReader(self.request, defines.BUFFER_SIZE)
        self.fout = BufferedSocketWriter(self.request, defines.BUFFER_SIZE)

    def handle(self):
        try:
            if not self._hello():
                return
            while True:
                packet = read_varint(self.fin)
                if packet == ClientPacketTypes.PING:
                    write_varint(ServerPacketTypes.PONG, self.fout)
                    self.fout.flush()
                elif packet == ClientPacketTypes.QUERY:
                    self._query()
                elif packet == ClientPacketTypes.CANCEL:
                    continue
                else:
                    return
        except (EOFError, ConnectionError, OSError):
            return

    def _hello(self) -> bool:
        if read_varint(self.fin) != ClientPacketTypes.HELLO:
            return False
        read_binary_str(self.fin)  # client name
        read_varint(self.fin)
        read_varint(self.fin)
        client_revision = read_varint(self.fin)
        self.database = read_binary_str(self.fin)
        user, password = read_binary_str(self.fin), read_binary_str(self.fin)
        self.revision = min(client_revision, SERVER_REVISION)
        self.server.hellos.append(self.database)
        if (user, password) != (self.server.user, self.server.password):
            self._exception(
                516,
                f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
            )
            return False
        if self.database and not self.server.engine.database_exists(self.database):
            self._exception(81, f"Database `{self.database}` does not exist")
            return False
        write_varint(ServerPacketTypes.HELLO, self.fout)
        write_binary_str("ClickHouse", self.fout)
        write_varint(25, self.fout)
        write_varint(8, self.fout)
        write_varint(SERVER_REVISION, self.fout)
        write_binary_str("UTC", self.fout)
        write_binary_str("fake", self.fout)
        write_varint(2, self.fout)
        self.fout.flush()
        if self.revision >= defines.DBMS_MIN_PROTOCOL_VERSION_WITH_ADDENDUM:
            read_binary_str(self.fin)  # quota key
        self.context = _context(self.revision)
        return True

    def _skip_client_info(self):
        fin, revision = self.fin, self.revision
        if read_binary_uint8(fin) == 0:  # query kind: no query
            return
        for _ in range(3):  # initial user, query id, address
            read_binary_str(fin)
        if revision >= defines.DBMS_MIN_PROTOCOL_VERSION_WITH_INITIAL_QUERY_START_TIME:
            read_binary_uint64(fin)
        read_binary_uint8(fin)  # interface
        for _ in range(3):  # os user, hostname, client name
            read_binary_str(fin)
        for _ in range(3):  # version major, minor, revision
            read_varint(fin)
        if revision >= defines.DBMS_MIN_REVISION_WITH_QUOTA_KEY_IN_CLIENT_INFO:
            read_binary_str(fin)
        if revision >= defines.DBMS_MIN_PROTOCOL_VERSION_WITH_DISTRIBUTED_DEPTH:
            read_varint(fin)
        if revision >= defines.DBMS_MIN_REVISION_WITH_VERSION_PATCH:
            read_varint(fin)
        if revision >= defines.DBMS_MIN_REVISION_WITH_OPENTELEMETRY and read_binary_uint8(fin):
            read_binary_uint64(fin)
            read_binary_uint64(fin)
            read_binary_uint64(fin)
            read_binary_str(fin)
            read_binary_uint8(fin)
        if revision >= defines.DBMS_MIN_REVISION_WITH_PARALLEL_REPLICAS:
            for _ in range(3):
                read_varint(fin)

    def _block_in(self):
        if self.compression:
            from clickhouse_driver.streams.compressed import CompressedBlockInputStream

            return CompressedBlockInputStream(self.fin, self.context)
        return BlockInputStream(self.fin, self.context)

    def _block_out(self):
        if self.compression:
            from clickhouse_driver.compression import get_compressor_cls
            from clickhouse_driver.streams.compressed import CompressedBlockOutputStream

            return CompressedBlockOutputStream(
                get_compressor_cls(self.server.compression_method), defines.DEFAULT_COMPRESS_BLOCK_SIZE,
                self.fout, self.context,
            )  # fmt: skip
        return BlockOutputStream(self.fout, self.context)

    def _query(self):
        read_binary_str(self.fin)  # query id
        self._skip_client_info()
        settings = self.server.engine.applicable(_read_flagged_settings(self.fin))
        if self.revision >= defines.DBMS_MIN_REVISION_WITH_INTERSERVER_SECRET:
            read_binary_str(self.fin)
        read_varint(self.fin)  # stage
        self.compression = bool(read_varint(self.fin))
        query = read_binary_str(self.fin)
        # Parameters arrive as the literals the driver writes ('value', escaped): chdb takes
        # the same literals in SET param_<name>.
        params = (
            _read_settings(self.fin)
            if self.revision >= defines.DBMS_MIN_PROTOCOL_VERSION_WITH_PARAMETERS
            else {}
        )
        while True:  # external tables, then an empty block
            if read_varint(self.fin) != ClientPacketTypes.DATA:
                raise ConnectionError("expected a data packet after the query")
            read_binary_str(self.fin)
            block = self._block_in().read()
            if not block.num_columns and not block.num_rows:
                break
        self.server.received.append(
            ReceivedQuery(query, settings, dict(params), self.database, self.compression)
        )
        params = {name: self.server.archive_member(value) for name, value in params.items()}
        try:
            output, self.database = self.server.engine.run(self.database, query, settings, params)
        except RuntimeError as error:
            match = _ERROR.search(str(error))
            code, message = (int(match.group(1)), match.group(3)) if match else (1001, str(error))
            self._exception(code, message)
            return
        held = self.server.held_reply
        if held is not None and held.matches(query, params):
            # The statement has run and its effects are the engine's: only the reply waits.
            self.server.held_reply = None
            held.executed.set()
            held.released.wait()
        for block in _native_blocks(output):
            write_varint(ServerPacketTypes.DATA, self.fout)
            write_binary_str("", self.fout)
            columns = [list(column) for column in block.get_columns()]  # writers fill items in place
            self._block_out().write(ColumnOrientedBlock(block.columns_with_types, columns))
        write_varint(ServerPacketTypes.END_OF_STREAM, self.fout)
        self.fout.flush()

    def _exception(self, code: int, message: str):
        write_varint(ServerPacketTypes.EXCEPTION, self.fout)
        write_binary_int32(code, self.fout)
        write_binary_str("DB::Exception", self.fout)
        write_binary_str(message, self.fout)
        write_binary_str("", self.fout)
        write_binary_uint8(0, self.fout)
        self.fout.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class HeldReply:
    """The reply to the first statement that ``matches`` waits until ``released`` is set.

    ``executed`` is set once the engine has run that statement: a test then knows the client
    is blocked inside the statement, after the server did its work and before the client
    heard of it.
    """

    matches: Any
    executed: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


class FakeClickHouse:
    """A native-protocol server on 127.0.0.1 backed by chdb at ``chdb_path``.

    :param user: the only user it accepts, with ``password``.
    :param compression_method: how it compresses result blocks when a client asks for it.
    """

    def __init__(
        self, chdb_path: Path, user: str = "loader", password: str = "", compression_method: str = "lz4"
    ):
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.engine = _Engine(str(chdb_path))
        self._server.user, self._server.password = user, password
        self._server.compression_method = compression_method
        self._server.received = []
        self._server.hellos = []
        self._server.archive_member = _archive_member
        self._server.held_reply = None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def received(self) -> list[ReceivedQuery]:
        return self._server.received

    @property
    def skipped_settings(self) -> list[str]:
        """Unknown settings it skipped because the client did not flag them important."""
        return self._server.engine.skipped_settings

    @property
    def hellos(self) -> list[str]:
        """The database each connection asked for in its hello, in order."""
        return self._server.hellos

    def hold_reply(self, matches) -> HeldReply:
        """Hold the reply to the next statement for which ``matches(query, params)`` is true."""
        self._server.held_reply = HeldReply(matches)
        return self._server.held_reply

    def start(self) -> FakeClickHouse:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server.held_reply is not None:
            self._server.held_reply.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.engine.close()

    def __enter__(self) -> FakeClickHouse:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _archive_member(literal: str) -> str:
    """Stand in for minizip: ``'<url> :: <member>'`` becomes ``'<url>.<member>.gz'``."""
    match = _MEMBER_URL.match(literal)
    return f"'{match.group(1)}.{match.group(2)}.gz'" if match else literal


def member_sidecar_key(key: str, member: str) -> str:
    """Return the key where the fake reads ``member`` of the archive ``key`` (see the module doc)."""
    return f"{key}.{member}.gz"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chdb-path", required=True)
    parser.add_argument("--user", default="loader")
    parser.add_argument("--password", default="")
    args = parser.parse_args()
    server = FakeClickHouse(Path(args.chdb_path), args.user, args.password)
    print(server.port, flush=True)
    try:
        server._server.serve_forever()
    finally:
        server._server.server_close()
        server._server.engine.close()


if __name__ == "__main__":
    main()
