"""One load in a process of its own that stops at a named point, for tests that SIGKILL it.

Run as ``python killable_load.py TABLE WINDOW_START POINT REPORT_FD``, with the environment
of the test (the Airflow connections of the local S3 server and the chdb path, and
``CLICKSTREAM_CONFIG`` naming the test's config). It runs the production loader through a
hook that writes ``at <point>`` to the file descriptor REPORT_FD (stdout carries Airflow's
logs) when the load reaches the point and then waits for a line on stdin, so the test can
kill it there. The points:

* ``started``: the started row is written, nothing is staged;
* ``inserting``: the insert is about to run (it does not wait here); it waits at ``staged``;
* ``staged``: the rows are staged, the commit not written;
* ``committing``: the commit is about to be written; a line on stdin lets it go on;
* ``committed``: the commit is written, the clean-up of older loads has not run;
* ``cleaning``: the insert staged the rows, then failed (the hook raises, as the engine
  would on a bad row past the first blocks); the load recorded the failure, its staged rows
  are not deleted yet.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from clickstream.config import get_settings
from clickstream.loading import WindowLoader, parse_window_start, source_bucket
from clickstream.warehouse import ClickHouseHook


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
        status = (params or {}).get("status") if name == "insert_ingest_log" else None
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

    def load_json_lines(self, *args, **kwargs):
        if self._point == "inserting":
            self._say("at inserting")
        self._hook.load_json_lines(*args, **kwargs)
        if self._point in ("inserting", "staged"):
            self._stop("staged")
        if self._point == "cleaning":
            raise RuntimeError("the engine stopped after staging some blocks")


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
