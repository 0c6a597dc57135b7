"""Run the whole test suite several times in a row while CPU-bound processes run beside it.

The check that no test depends on being scheduled in time: on a 2-core machine one busy
loop beside the suite leaves it half a core less than it expects, and a test that races a
deadline, a clock or a sleep fails here long before it flakes in CI. Each run gets a fresh
temporary directory and ``CI=true`` (a missing fixture fails instead of skipping); the
busy loops are stopped by their PIDs however the script ends.

Prints one line per run (exit code, tests passed, seconds) and exits non-zero if any run
failed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from local_stack import PROJECT_ROOT, HelpFormatter, interrupted_by_signals, run_to_end

BUSY_LOOP = "x = 0\nwhile True:\n    x += 1\n"
SUMMARY = re.compile(r"=+ (.*?) in [\d.]+s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of the whole suite, one after the other")
    parser.add_argument("--busy-loops", type=int, default=1, help="CPU-bound processes beside the suite")
    parser.add_argument("pytest_args", nargs="*", default=[], help="more arguments for pytest, after --")
    options = parser.parse_args()

    environment = {**os.environ, "CI": "true"}
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(options.busy_loops)]
    print(f"{options.busy_loops} busy loop(s) beside the suite: PIDs {[process.pid for process in busy]}")
    failed = 0
    try:
        with interrupted_by_signals():
            for number in range(1, options.runs + 1):
                with tempfile.TemporaryDirectory(prefix=f"suite-run-{number}-") as workdir:
                    log_path = Path(workdir) / "pytest.log"
                    started = time.monotonic()
                    with log_path.open("w") as log:
                        code = _run_suite(Path(workdir), options.pytest_args, environment, log)
                    seconds = time.monotonic() - started
                    summary = _summary(log_path.read_text())
                    print(f"run {number}: exit {code}, {summary}, {seconds:.0f} s", flush=True)
                    if code != 0:
                        failed += 1
                        print(log_path.read_text()[-20000:], file=sys.stderr)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    return 1 if failed else 0


def _run_suite(workdir: Path, pytest_args: list[str], environment: dict[str, str], log) -> int:
    command = [sys.executable, "-m", "pytest", f"--basetemp={workdir / 'basetemp'}", *pytest_args]
    return run_to_end(command, env=environment, output=log)


def _summary(output: str) -> str:
    found = SUMMARY.findall(output)
    return found[-1] if found else "no pytest summary"


if __name__ == "__main__":
    os.chdir(PROJECT_ROOT)
    try:
        sys.exit(main())
    except KeyboardInterrupt as interrupt:
        print(f"interrupted ({interrupt}): the suite and the busy loops are stopped", file=sys.stderr)
        sys.exit(130)
