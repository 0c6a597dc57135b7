"""What every task of the bundle shares: its owner, its retries, the failure alert, its priority.

One place for the policy the DAG files apply through ``default_args`` and the tests check.
"""

from __future__ import annotations

from datetime import timedelta

from clickstream.alerts import notify_task_failure

OWNER = "data-platform"


def task_defaults(retries: int, retry_delay_seconds: int = 0, priority_weight: int | None = None) -> dict:
    """Return ``default_args`` for a DAG of the bundle.

    :param retries: retries of each task (a task may still set its own, e.g. 0 for checks).
    :param retry_delay_seconds: delay before each retry.
    :param priority_weight: weight in the shared warehouse pool; absolute, so that it does not
        depend on the shape of the DAG. None leaves Airflow's default.
    """
    defaults = {
        "owner": OWNER,
        "retries": retries,
        "retry_delay": timedelta(seconds=retry_delay_seconds),
        "on_failure_callback": notify_task_failure,
    }
    if priority_weight is not None:
        defaults |= {"weight_rule": "absolute", "priority_weight": priority_weight}
    return defaults
