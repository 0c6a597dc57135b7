"""The demo's output handling (the terminal gets the summary, the log file everything else),
and its stop on a signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import local_stack
import pytest
from processes import ProcessTree, fresh_shell_environment, ignore_sigint

# Runs in a fresh interpreter: pytest's own capture would stand in for sys.stdout here.
PROGRAM = textwrap.dedent(
    """
    import logging, subprocess, sys
    sys.path.insert(0, {scripts!r})
    import demo

    with demo.output_to(demo.Path({log_file!r})) as terminal:
        subprocess.run([sys.executable, "-c", "import sys; print('child stdout'); print('child stderr', file=sys.stderr)"])
        print("own stdout")
        logging.basicConfig()
        logging.getLogger("library").warning("library warning")
        print("summary line", file=terminal)
    print("after the block")
    """
)


def test_child_processes_and_own_output_go_to_the_log_and_the_summary_to_the_terminal(tmp_path):
    log_file = tmp_path / "demo.log"
    program = PROGRAM.format(scripts=str(local_stack.PROJECT_ROOT / "scripts"), log_file=str(log_file))

    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )

    assert completed.stdout == "summary line\nafter the block\n"
    assert completed.stderr == ""
    logged = log_file.read_text()
    for line in ("child stdout", "child stderr", "own stdout", "library warning"):
        assert line in logged
    assert "summary line" not in logged


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda signum: signum.name)
def test_the_demo_stops_everything_it_started_on_a_signal(tmp_path, signum):
    """Started with SIGINT ignored, as a background job of a CI shell is, and signalled by
    PID while an `airflow dags test` child runs: the demo says why it stopped, and neither
    that child nor moto_server outlives it."""
    terminal = tmp_path / "terminal.txt"
    command = [
        sys.executable,
        str(local_stack.PROJECT_ROOT / "scripts" / "demo.py"),
        *("--home", str(tmp_path / "demo"), "--hours", "1", "--events-per-hour", "20"),
    ]
    with terminal.open("wb") as sink:
        process = subprocess.Popen(
            command,
            env=fresh_shell_environment(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=ignore_sigint,
        )
    tree = ProcessTree(process)
    try:
        deadline = time.monotonic() + 300
        while not any(" dags test " in f"{line} " for line in tree.commands()):
            assert process.poll() is None, terminal.read_text()
            assert time.monotonic() < deadline, "no `airflow dags test` within 300 s"
            time.sleep(0.2)
            tree.remember()
        assert any("moto_server" in line for line in tree.commands())

        process.send_signal(signum)

        assert process.wait(timeout=90) == 1, terminal.read_text()
        assert f"Demo stopped: KeyboardInterrupt: {signum.name}" in terminal.read_text()
        assert tree.commands() == []
    finally:
        tree.kill_all()


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("warehouse__conn_id", "WarehouseConnectionUndefined: the Airflow connection 'clickhouse_prod'"),
        ("source__conn_id", "SourceSetupError: the Airflow connection 'clickhouse_prod'"),
    ],
)
def test_a_connection_that_is_not_defined_stops_the_demo_at_once_naming_it(
    tmp_path, project_config, key, named
):
    config = project_config(**{key: '"clickhouse_prod"'})
    completed = subprocess.run(
        [
            sys.executable,
            str(local_stack.PROJECT_ROOT / "scripts" / "demo.py"),
            "--home",
            str(tmp_path / "demo"),
        ],
        env={**fresh_shell_environment(), "CLICKSTREAM_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 1
    assert f"Demo stopped: {named}" in completed.stdout, completed.stdout
    assert "DAG runs" not in completed.stdout, "it stops before any DAG runs"
