"""Warehouse hooks that run something else at a chosen step of a load: the interleavings
of concurrent tasks, made deterministic."""

from __future__ import annotations


class InterleavingHook:
    """Runs ``during_stage`` once, after a load has staged its rows and before it commits."""

    def __init__(self, hook, during_stage):
        self._hook = hook
        self._during_stage = during_stage

    def __getattr__(self, name):
        return getattr(self._hook, name)

    def load_json_lines(self, *args, **kwargs):
        self._hook.load_json_lines(*args, **kwargs)
        during_stage, self._during_stage = self._during_stage, None
        if during_stage:
            during_stage()
