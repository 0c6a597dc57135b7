"""The demo's output handling: the terminal gets the summary, the log file everything else."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import local_stack

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
