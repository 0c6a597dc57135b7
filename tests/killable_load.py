"""One load in a process of its own that stops at a named point, for tests that SIGKILL it.

Run as ``python killable_load.py TABLE WINDOW_START POINT REPORT_FD``, with the environment
of the test (the Airflow connections of the local S3 server and the chdb path, and
``CLICKSTREAM_CONFIG`` naming the test's config). It runs the production loader through a
hook that writes ``at <point>`` to the file descriptor REPORT_FD (stdout carries Airflow's
logs) when the load reaches the point and then waits for a line on stdin, so the test can
kill it there. The points:

* ``started``: the started row is written, nothing is staged;
* ``mid-insert``: the insert has written MID_INSERT_ROWS rows in whole parts and waits for
  more input: the engine reads the member through a FIFO that stops after those rows (and
  the block it keeps in flight), so it is blocked inside the statement;
* ``staged``: the rows are staged (the insert returned), the commit not written;
* ``committing``: the commit is about to be written; a line on stdin lets it go on (then it
  runs to the end: on the server backend a test can hold the commit's reply, see
  ``FakeClickHouse.hold_reply``, to stop it inside the commit);
* ``committed``: the commit is written, the clean-up of older loads has not run;
* ``cleaning``: the insert staged the rows, then failed (the hook raises, as the engine
  would on a bad row past the first blocks); the load recorded the failure, its staged rows
  are not deleted yet.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from clickstream import records
from clickstream.config import get_settings
from clickstream.loading import WindowLoader, parse_window_start, source_bucket
from clickstream.warehouse import ClickHouseHook

# The insert's block (max_insert_block_size), and the rows the child lets reach parts: two
# blocks. The engine keeps one whole block in flight until it reads past it, so the FIFO
# carries one block more, and a line, than the rows that are to land.
INSERT_BLOCK_ROWS = 65536
MID_INSERT_ROWS = 2 * INSERT_BLOCK_ROWS


class PausingHook:
    """The real hook, with stops at the named point of a load."""

    def __init__(self, hook: ClickHouseHook, point: str, report):
        self._hook = hook
        self._point = point
        self._report = report

    def __getattr__(self, name):
        return getattr(self._hook, name)

    def _say(self, line: str) -> None:
        self._report.write(line + "\n")
        self._report.flush()

    def _stop(self, point: str) -> None:
        self._say(f"at {point}")
        sys.stdin.readline()

    def run(self, name, params=None):
        status = {
            "insert_ingest_log": (params or {}).get("status"),
            "insert_ingest_log_commit": "loaded",
        }.get(name)
        if self._point == "committing" and status == "loaded":
            self._stop("committing")
        if self._point == "cleaning" and name == "delete_load_rows":
            self._stop("cleaning")
        rows = self._hook.run(name, params)
        if self._point == "started" and status == "started":
            self._stop("started")
        if self._point == "committed" and status == "loaded":
            self._stop("committed")
        return rows

    @contextmanager
    def stage(self, bucket, key, member):
        with self._hook.stage(bucket, key, member) as staged:
            if self._point == "mid-insert":
                staged = self._through_fifo(staged)
            yield staged

    def _through_fifo(self, staged):
        """Let the engine read the member from a FIFO that stops once MID_INSERT_ROWS can land."""
        fetched = staged.local_copy()
        [[table_path]] = self._hook.backend.execute(
            "SELECT data_paths[1] FROM system.tables WHERE database = {database:String} AND name = {name:String}",
            {"database": get_settings().warehouse.database, "name": f"{member_table(staged.member)}_loads"},
        )
        parts_before = _parts(Path(table_path))
        fifo = Path(tempfile.mkdtemp(prefix="killable-load-")) / "member.jsonl"
        os.mkfifo(fifo)
        opener = gzip.open if fetched.member_path.suffix == ".gz" else open

        def feed() -> None:
            try:
                fill()
            except Exception as error:  # the test reads this instead of waiting for the point
                self._say(f"failed to feed the insert: {type(error).__name__}: {error}")

        def fill() -> None:
            with opener(fetched.member_path, "rt") as source, fifo.open("w") as sink:
                for _ in range(MID_INSERT_ROWS + INSERT_BLOCK_ROWS + 1):
                    sink.write(source.readline())
                sink.flush()
                # Wait for the parts of exactly those rows, then hold the FIFO open: the engine
                # waits for the next line, inside its INSERT, until the test kills the process.
                while _rows_in(Path(table_path), parts_before) < MID_INSERT_ROWS:
                    threading.Event().wait(0.01)
                self._say(f"at mid-insert {_rows_in(Path(table_path), parts_before)}")
                threading.Event().wait()

        threading.Thread(target=feed, daemon=True).start()
        # One block at a time, so that the engine writes a part as soon as a block is read;
        # parallel parsing would wait for a large segment of input first.
        records.ENGINE_SETTINGS = {
            **records.ENGINE_SETTINGS,
            "input_format_parallel_parsing": 0,
            "max_block_size": INSERT_BLOCK_ROWS,
        }
        return replace(staged, _local=replace(fetched, member_path=fifo))

    def load_json_lines(self, *args, **kwargs):
        self._hook.load_json_lines(*args, **kwargs)
        if self._point == "staged":
            self._stop("staged")
        if self._point == "cleaning":
            raise RuntimeError("the engine stopped after staging some blocks")
        if self._point == "cleaning":
            raise RuntimeError("the engine stopped after staging some blocks")


def member_table(member: str) -> str:
    return member.removesuffix(".jsonl")


def _parts(table_path: Path) -> set[str]:
    return {
        entry.name
        for entry in table_path.iterdir()
        if entry.is_dir() and not entry.name.startswith(("tmp", "detached"))
    }


def _rows_in(table_path: Path, parts_before: set[str]) -> int:
    """Rows in the table's active parts written since ``parts_before`` (each part's count.txt)."""
    rows = 0
    for part in _parts(table_path) - parts_before:
        with contextlib.suppress(FileNotFoundError, ValueError):  # a part being renamed into place
            rows += int((table_path / part / "count.txt").read_text())
    return rows


def main(table_name: str, window_start: str, point: str, report_fd: str) -> None:
    settings = get_settings()
    with open(int(report_fd), "w") as report, ClickHouseHook(settings.warehouse.conn_id) as hook:
        pausing = PausingHook(hook, point, report)
        loader = WindowLoader(pausing, source_bucket(settings), settings)
        try:
            loader.load(settings.table(table_name), parse_window_start(window_start), run_id="killable")
        except Exception as error:
            pausing._say(f"failed {type(error).__name__}: {error}")
            raise
        pausing._say("finished")


if __name__ == "__main__":
    main(*sys.argv[1:])
