"""Scripts run as an operator or a supervisor runs them, and every process they start, by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil


def fresh_shell_environment() -> dict[str, str]:
    """The environment of a new shell: no Airflow or bundle settings, no virtualenv on PATH."""
    venv_bins = {Path(sys.executable).parent.resolve(), Path(sys.executable).resolve().parent}
    path = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry]
    path = [entry for entry in path if Path(entry).resolve() not in venv_bins]
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "CLICKSTREAM")) and name not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PATH"] = os.pathsep.join(path or [os.defpath])
    return env


def ignore_sigint() -> None:
    """As a background job of a non-interactive shell starts: with SIGINT ignored (a preexec_fn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ProcessTree:
    """A started process and every process ever seen below it, kept as psutil handles (which
    refuse to signal a PID a new process has taken since)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.seen: dict[int, psutil.Process] = {}

    def remember(self) -> None:
        """Add the processes running below the root now to ``seen``."""
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.process.pid)
            for process in (root, *root.children(recursive=True)):
                self.seen.setdefault(process.pid, process)

    def leftovers(self) -> list[psutil.Process]:
        return [process for process in self.seen.values() if running(process)]

    def commands(self) -> list[str]:
        """Command lines of the processes seen that still run."""
        lines = []
        for process in self.leftovers():
            with contextlib.suppress(psutil.Error):
                lines.append(" ".join(process.cmdline()))
        return lines

    def kill_all(self) -> None:
        """Kill the root and everything seen below it, by PID."""
        self.remember()
        for process in self.leftovers():
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(list(self.seen.values()), timeout=30)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
