"""Telegram alerts on final task failure: the message, the retry guard, and real DAG runs.

The DAG-run tests run a tiny DAG with ``dag.test()`` in this process against a fake Bot API
server on loopback (``tests/telegram_server.py``). ``dag.test()`` needs a migrated metadata DB
and the DAG inside the configured DAG bundle, so each of those tests writes its DAG file into a
fresh folder and points the ``dags-folder`` bundle at it.
"""

from __future__ import annotations

import html
import json
import logging
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryPolicy, RetryRule
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowTaskTerminated
from telegram_server import FakeTelegramServer, connection_uri_json

from clickstream.alerts import (
    MESSAGE_LIMIT,
    TelegramFailureNotifier,
    escape_within,
    notify_task_failure,
    send_telegram_message,
)

LOGICAL_DATE = datetime(2026, 1, 1, 5, tzinfo=UTC)
ALERTS_LOGGER = "clickstream.alerts"


# --- fixtures for running DAGs with dag.test() ------------------------------------------------


@pytest.fixture
def dags_folder(airflow_db, tmp_path, monkeypatch):
    """A fresh folder that is the ``dags-folder`` bundle for this test; write DAG files into it."""
    folder = tmp_path / "dags"
    folder.mkdir()
    use_dags_folder(folder, monkeypatch)
    return folder


def use_dags_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``folder`` the configured DAGs folder and the ``dags-folder`` bundle."""
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    monkeypatch.setenv(
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        json.dumps(
            [
                {
                    "name": "dags-folder",
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(folder)},
                }
            ]
        ),
    )


def run_dag_file(folder: Path, dag_id: str, source: str, logical_date: datetime = LOGICAL_DATE):
    """Write ``source`` as ``<dag_id>.py`` into ``folder``, parse it and run it with ``dag.test()``.

    :return: the finished DagRun
    """
    from airflow.dag_processing.dagbag import DagBag

    (folder / f"{dag_id}.py").write_text(textwrap.dedent(source))
    bag = DagBag(dag_folder=str(folder))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id).test(logical_date=logical_date)


def task_instances(dag_run) -> dict[tuple[str, int], object]:
    return {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances()}


def alert_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ALERTS_LOGGER and r.levelno == logging.WARNING]


def assert_no_token(token: str, caplog, capfd) -> None:
    """Neither the token nor its secret part is in any log record, on stdout or on stderr."""
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err, *(r.getMessage() for r in caplog.records)):
        assert token not in text
        assert token.split(":", 1)[1] not in text


# --- the rendered message ----------------------------------------------------------------------


def make_context(
    error: BaseException | str | None = None,
    *,
    map_index: int = -1,
    op_kwargs: dict | None = None,
    try_number: int = 2,
    max_tries: int = 1,
    retries: int = 1,
    interval: tuple[datetime, datetime] | None = (LOGICAL_DATE, LOGICAL_DATE.replace(hour=6)),
    params: dict | None = None,
) -> dict:
    task = SimpleNamespace(retries=retries, op_kwargs=op_kwargs or {})
    ti = SimpleNamespace(
        dag_id="clickstream_ingest",
        task_id="load_table",
        run_id="scheduled__2026-01-01T05:00:00+00:00",
        map_index=map_index,
        rendered_map_index=None,
        try_number=try_number,
        max_tries=max_tries,
        task=task,
        log_url="http://airflow.example/dags/clickstream_ingest/runs/r1/tasks/load_table?try_number=2",
    )
    context = {
        "ti": ti,
        "task": task,
        "run_id": ti.run_id,
        "exception": error if error is not None else ValueError("boom"),
        "params": params or {},
        "data_interval_start": interval[0] if interval else None,
        "data_interval_end": interval[1] if interval else None,
    }
    return context


def pre_body(message: str) -> str:
    match = re.search(r"<pre>(.*)</pre>", message, re.S)
    assert match, message
    return match.group(1)


def assert_valid_escaped(text: str) -> None:
    """Only the entities &lt; &gt; &amp; and no bare <, > or &; escaping round-trips."""
    assert "<" not in text and ">" not in text
    assert re.search(r"&(?!(lt|gt|amp);)", text) is None, text
    assert html.escape(html.unescape(text), quote=False) == text


def test_message_has_all_fields():
    message = TelegramFailureNotifier().render_message(make_context(KeyError("no such column")))

    assert "<code>clickstream_ingest</code>" in message
    assert "<code>load_table</code>" in message
    assert "2026-01-01T05:00:00+00:00 → 2026-01-01T06:00:00+00:00" in message
    assert "<b>Try:</b> 2 of 2" in message
    assert "<code>KeyError</code>" in message
    assert "no such column" in message
    assert "http://airflow.example/dags/clickstream_ingest/runs/r1/tasks/load_table?try_number=2" in message


def test_exception_text_is_html_escaped():
    message = TelegramFailureNotifier().render_message(make_context(ValueError("a < b > c & <script>")))

    body = pre_body(message)
    assert body == "a &lt; b &gt; c &amp; &lt;script&gt;"
    assert "<script>" not in message


def test_long_exception_is_cut_to_the_limit_and_keeps_header_and_log_url():
    error = ValueError("<&>" * 3334)  # 10,002 chars, each one escapes to 4-5
    context = make_context(error)
    message = TelegramFailureNotifier().render_message(context)

    assert len(message) <= MESSAGE_LIMIT
    assert len(message.encode("utf-16-le")) // 2 <= MESSAGE_LIMIT
    assert message.startswith("❌ <b>Airflow task failed</b>\n<b>DAG:</b> <code>clickstream_ingest</code>")
    assert "<b>Try:</b> 2 of 2" in message
    assert message.endswith(f"<b>Log:</b> {context['ti'].log_url}")
    body = pre_body(message)
    assert body.endswith("…")
    assert_valid_escaped(body[:-1])
    assert len(body) > 3000  # cut only as far as needed


def test_only_the_first_lines_of_the_exception_are_sent():
    error = RuntimeError("\n".join(f"line {n}" for n in range(100)))
    body = pre_body(TelegramFailureNotifier().render_message(make_context(error)))

    assert body.splitlines() == [f"line {n}" for n in range(20)]


def test_escape_within_never_splits_an_entity():
    for limit in range(1, 30):
        cut = escape_within("a&b<c>d" * 5, limit)
        assert len(cut) <= limit
        assert_valid_escaped(cut.removesuffix("…"))


def test_mapped_task_shows_map_index_and_table():
    context = make_context(map_index=3, op_kwargs={"table": "events"})
    message = TelegramFailureNotifier().render_message(context)

    assert "<code>load_table</code> [3] table <code>events</code>" in message


def test_mapped_task_without_table_shows_map_index():
    message = TelegramFailureNotifier().render_message(make_context(map_index=3))

    assert "<code>load_table</code> [3]\n" in message


@pytest.mark.parametrize(
    ("interval", "params", "expected"),
    [
        (None, {"window_start": "2026-01-01T05:00:00+00:00"}, "window_start 2026-01-01T05:00:00+00:00"),
        (None, {}, "run scheduled__2026-01-01T05:00:00+00:00"),
    ],
)
def test_window_falls_back_to_param_then_run_id(interval, params, expected):
    message = TelegramFailureNotifier().render_message(make_context(interval=interval, params=params))

    assert f"<b>Window:</b> {html.escape(expected, quote=False)}\n" in message


# --- sending and the retry guard -----------------------------------------------------------------


def test_notifier_sends_one_message_through_the_connection(telegram_server, caplog):
    caplog.set_level(logging.INFO)
    notify_task_failure(make_context(ValueError("x < y")))

    [sent] = telegram_server.messages
    assert sent.token == telegram_server.token
    assert sent.chat_id == telegram_server.chat_id
    assert sent.parse_mode == "HTML"
    assert "x &lt; y" in sent.text
    assert not alert_warnings(caplog)


def test_notifier_skips_a_failure_that_will_be_retried(telegram_server, caplog):
    caplog.set_level(logging.INFO)
    notify_task_failure(make_context(try_number=1, max_tries=1, retries=1))

    assert telegram_server.messages == []
    assert any("will be retried" in r.getMessage() for r in caplog.records if r.name == ALERTS_LOGGER)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(AirflowSensorTimeout("Sensor has timed out"), id="sensor-timeout"),
        pytest.param(AirflowFailException("gone for good"), id="fail-exception"),
        pytest.param(AirflowTaskTerminated("terminated"), id="task-terminated"),
    ],
)
def test_notifier_alerts_on_a_failure_the_runner_never_retries(error, telegram_server):
    # Try 1 of 3: by the try count a retry would come, but the task runner fails these at once.
    notify_task_failure(make_context(error, try_number=1, max_tries=2, retries=2))

    [sent] = telegram_server.messages
    assert f"<code>{type(error).__module__}.{type(error).__qualname__}</code>" in sent.text
    assert "<b>Try:</b> 1 of 3" in sent.text


@pytest.mark.parametrize(
    ("action", "alerts"),
    [
        pytest.param(RetryAction.FAIL, 1, id="policy-fail"),
        pytest.param(RetryAction.RETRY, 0, id="policy-retry"),
        pytest.param(RetryAction.DEFAULT, 0, id="policy-default"),
    ],
)
def test_notifier_follows_the_tasks_retry_policy(action, alerts, telegram_server):
    context = make_context(PermissionError("denied"), try_number=1, max_tries=2, retries=2)
    context["task"].retry_policy = ExceptionRetryPolicy(
        rules=[RetryRule(exception=PermissionError, action=action)]
    )

    notify_task_failure(context)

    assert len(telegram_server.messages) == alerts


def test_notifier_falls_back_to_the_try_count_when_the_policy_raises(telegram_server):
    class BrokenPolicy(RetryPolicy):
        def evaluate(self, exception, try_number, max_tries, context=None):
            raise RuntimeError("policy bug")

    context = make_context(try_number=1, max_tries=2, retries=2)
    context["task"].retry_policy = BrokenPolicy()

    notify_task_failure(context)

    assert telegram_server.messages == []


def test_notifier_alerts_after_the_last_try_without_an_exception(telegram_server):
    # A heartbeat-timeout callback from the scheduler carries no exception: the try count decides.
    context = make_context(try_number=3, max_tries=2, retries=2)
    context.pop("exception")

    notify_task_failure(context)

    [sent] = telegram_server.messages
    assert "<b>Try:</b> 3 of 3" in sent.text


def test_error_reply_is_one_warning_and_one_attempt(telegram_server, caplog, capfd):
    telegram_server.error_reply = (400, "Bad Request: chat not found")
    assert send_telegram_message("hello") is False

    assert len(telegram_server.requests) == 1, "a permanent error is not retried"
    [warning] = alert_warnings(caplog)
    assert "Chat not found" in warning.getMessage()
    assert_no_token(telegram_server.token, caplog, capfd)


def test_missing_connection_is_one_warning_and_nothing_raised(airflow_db, monkeypatch, caplog, capfd):
    monkeypatch.delenv("AIRFLOW_CONN_TELEGRAM_DEFAULT", raising=False)

    notify_task_failure(make_context())

    [warning] = alert_warnings(caplog)
    assert "telegram_default" in warning.getMessage()
    assert "isn't defined" in warning.getMessage()


def test_http_client_log_lines_carry_no_token(telegram_server, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    logging.getLogger("telegram").setLevel(logging.DEBUG)
    try:
        assert send_telegram_message("hello") is True
    finally:
        logging.getLogger("httpx").setLevel(logging.NOTSET)
        logging.getLogger("telegram").setLevel(logging.NOTSET)

    assert any(r.name == "httpx" and "/bot***/sendMessage" in r.getMessage() for r in caplog.records)
    assert any(r.name == "telegram.Bot" and "/bot***" in r.getMessage() for r in caplog.records)
    assert_no_token(telegram_server.token, caplog, capfd)


# --- real task failures through Airflow ---------------------------------------------------------

FAILING_DAG = """
from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, task

from clickstream.alerts import notify_task_failure


@dag(
    dag_id="{dag_id}",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={{
        "retries": {retries},
        "retry_delay": timedelta(0),
        "on_failure_callback": notify_task_failure,
        # Also on retry, as after a restart (apache/airflow #56942): the notifier must stay quiet.
        "on_retry_callback": notify_task_failure,
    }},
)
def failing():
    @task
    def explode():
        raise ValueError("bad row <b> & more")

    @task
    def load(table):
        raise RuntimeError(f"cannot load {{table}}")

    explode()
    load.expand(table=["events", "users"])


failing()
"""


def test_real_task_failure_alerts_once_after_the_last_try(dags_folder, telegram_server, caplog, capfd):
    caplog.set_level(logging.INFO)
    dag_run = run_dag_file(dags_folder, "alerts_retry", FAILING_DAG.format(dag_id="alerts_retry", retries=1))

    tis = task_instances(dag_run)
    explode = tis[("explode", -1)]
    assert explode.state == "failed"
    assert explode.try_number == 2
    alerts = [m for m in telegram_server.messages if "<code>explode</code>" in m.text]
    assert len(alerts) == 1  # none for try 1, one for try 2
    text = alerts[0].text
    assert "<code>alerts_retry</code>" in text
    assert "<b>Try:</b> 2 of 2" in text
    assert "<code>ValueError</code>" in text
    assert "bad row &lt;b&gt; &amp; more" in text
    start, end = dag_run.data_interval_start.isoformat(), dag_run.data_interval_end.isoformat()
    assert f"<b>Window:</b> {start} → {end}" in text
    assert "/dags/alerts_retry/runs/" in text and "/tasks/explode?try_number=2" in text
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "alerts_retry.explode failed on try 1 of 2 and will be retried" in logged
    assert "alerts_retry.explode failed for good (try 2)" in logged
    assert telegram_server.token not in logged


def test_real_mapped_failure_names_the_table(dags_folder, telegram_server):
    dag_run = run_dag_file(
        dags_folder, "alerts_mapped", FAILING_DAG.format(dag_id="alerts_mapped", retries=0)
    )

    tis = task_instances(dag_run)
    assert {tis[("load", 0)].state, tis[("load", 1)].state} == {"failed"}
    loads = sorted(m.text for m in telegram_server.messages if "<code>load</code>" in m.text)
    assert len(loads) == 2
    assert "<code>load</code> [0] table <code>events</code>" in loads[0]
    assert "cannot load events" in loads[0]
    assert "<code>load</code> [1] table <code>users</code>" in loads[1]
    assert "/tasks/load/mapped/1?try_number=1" in loads[1]


def test_unreachable_api_leaves_the_task_failed_with_one_warning(
    dags_folder, telegram_unreachable, caplog, capfd
):
    # DEBUG, so that the HTTP client's and the bot's own lines (which name the URL) are checked too.
    # Stdlib records land in caplog, Airflow's structlog lines in capfd: check both.
    caplog.set_level(logging.DEBUG)
    source = FAILING_DAG.format(dag_id="alerts_unreachable", retries=0).replace(
        'load.expand(table=["events", "users"])', ""
    )

    dag_run = run_dag_file(dags_folder, "alerts_unreachable", source)

    assert task_instances(dag_run)[("explode", -1)].state == "failed"
    [warning] = alert_warnings(caplog)
    assert "NetworkError" in warning.getMessage()
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "Failed to run task callback" not in logged
    token = telegram_unreachable.token
    assert token not in logged
    assert token.split(":", 1)[1] not in logged


def test_missing_connection_in_a_real_task_is_one_warning(dags_folder, monkeypatch, caplog, capfd):
    caplog.set_level(logging.INFO)
    monkeypatch.delenv("AIRFLOW_CONN_TELEGRAM_DEFAULT", raising=False)
    source = FAILING_DAG.format(dag_id="alerts_no_conn", retries=0).replace(
        'load.expand(table=["events", "users"])', ""
    )

    dag_run = run_dag_file(dags_folder, "alerts_no_conn", source)

    assert task_instances(dag_run)[("explode", -1)].state == "failed"
    [warning] = alert_warnings(caplog)
    assert "AirflowNotFoundException" in warning.getMessage()
    out, err = capfd.readouterr()
    assert "Failed to run task callback" not in caplog.text + out + err


# --- every kind of final failure, under the real task runner -----------------------------------

FINAL_FAILURES_DAG = """
from datetime import datetime, timedelta

from airflow.sdk import (
    CronDataIntervalTimetable,
    ExceptionRetryPolicy,
    PokeReturnValue,
    RetryAction,
    RetryRule,
    dag,
    task,
)
from airflow.sdk.exceptions import AirflowFailException

from clickstream.alerts import notify_task_failure


@dag(
    dag_id="alerts_final",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(0),
        "on_failure_callback": notify_task_failure,
        # Also on retry, as after a restart (apache/airflow #56942): the notifier must stay quiet.
        "on_retry_callback": notify_task_failure,
    },
)
def final_failures():
    @task
    def load(table):
        raise RuntimeError(f"cannot load {table}")

    @task
    def flaky(ti=None):
        if ti.try_number == 1:
            raise RuntimeError("first try fails")

    # Like the ingest DAG's wait_for_object: mapped, reschedule mode (no worker slot held).
    @task.sensor(mode="reschedule", poke_interval=1, timeout=2)
    def wait_for_object(table):
        return PokeReturnValue(is_done=False)

    @task.sensor(mode="poke", poke_interval=0.2, timeout=1)
    def wait_poking():
        return False

    @task(retries=0)
    def no_retries():
        raise ValueError("no second chance")

    @task
    def give_up():
        raise AirflowFailException("the source is gone for good")

    @task(retry_policy=ExceptionRetryPolicy(rules=[RetryRule(exception=PermissionError, action=RetryAction.FAIL)]))
    def refused():
        raise PermissionError("access denied")

    load.expand(table=["events", "users"])
    flaky()
    wait_for_object.expand(table=["events", "users"])
    wait_poking()
    no_retries()
    give_up()
    refused()


final_failures()
"""


@pytest.fixture(scope="module")
def final_failures(airflow_db, tmp_path_factory):
    """Run ``FINAL_FAILURES_DAG`` once with ``dag.test()`` against the fake Bot API.

    :return: the task instances by (task_id, map_index), the messages sent, and the number of
        reschedules recorded per (task_id, map_index)
    """
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    folder = tmp_path_factory.mktemp("dags")
    server = FakeTelegramServer().start()
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            use_dags_folder(folder, monkeypatch)
            monkeypatch.setenv("AIRFLOW_CONN_TELEGRAM_DEFAULT", connection_uri_json(server.base_url))
            dag_run = run_dag_file(folder, "alerts_final", FINAL_FAILURES_DAG)
        tis = task_instances(dag_run)
        with create_session() as session:
            reschedules = {
                key: session.scalar(
                    select(func.count()).select_from(TaskReschedule).where(TaskReschedule.ti_id == ti.id)
                )
                for key, ti in tis.items()
            }
    finally:
        server.stop()
    return SimpleNamespace(tis=tis, messages=server.messages, reschedules=reschedules)


def alerts_for(result, task_id: str, map_index: int = -1) -> list[str]:
    """The texts of the messages sent for one task instance of ``final_failures``."""
    task_line = f"<b>Task:</b> <code>{task_id}</code>"
    if map_index >= 0:
        task_line += f" [{map_index}]"
    return [m.text for m in result.messages if re.search(rf"^{re.escape(task_line)}( |$)", m.text, re.M)]


@pytest.mark.parametrize("map_index", [0, 1])
def test_load_failing_every_try_alerts_once_after_the_last(final_failures, map_index):
    ti = final_failures.tis[("load", map_index)]
    assert ti.state == "failed"
    assert ti.try_number == 3

    [alert] = alerts_for(final_failures, "load", map_index)  # none for tries 1 and 2
    assert "<b>Try:</b> 3 of 3" in alert
    assert "<code>RuntimeError</code>" in alert


def test_task_that_succeeds_on_retry_sends_nothing(final_failures):
    ti = final_failures.tis[("flaky", -1)]
    assert ti.state == "success"
    assert ti.try_number == 2

    assert alerts_for(final_failures, "flaky") == []


@pytest.mark.parametrize("map_index", [0, 1])
def test_rescheduled_sensor_timeout_alerts_once(final_failures, map_index):
    ti = final_failures.tis[("wait_for_object", map_index)]
    assert ti.state == "failed"
    assert ti.try_number == 1  # a sensor timeout is never retried, whatever retries says
    assert final_failures.reschedules[("wait_for_object", map_index)] >= 1  # it went the reschedule way

    [alert] = alerts_for(final_failures, "wait_for_object", map_index)
    assert "<b>Try:</b> 1 of 3" in alert
    assert "<code>airflow.sdk.exceptions.AirflowSensorTimeout</code>" in alert
    assert "Sensor has timed out" in alert


def test_poking_sensor_timeout_alerts_once(final_failures):
    ti = final_failures.tis[("wait_poking", -1)]
    assert ti.state == "failed"
    assert ti.try_number == 1
    assert final_failures.reschedules[("wait_poking", -1)] == 0

    [alert] = alerts_for(final_failures, "wait_poking")
    assert "<code>airflow.sdk.exceptions.AirflowSensorTimeout</code>" in alert


def test_task_without_retries_alerts_once(final_failures):
    ti = final_failures.tis[("no_retries", -1)]
    assert ti.state == "failed"
    assert ti.try_number == 1

    [alert] = alerts_for(final_failures, "no_retries")
    assert "<b>Try:</b> 1 of 1" in alert
    assert "no second chance" in alert


def test_fail_exception_with_retries_left_alerts_once(final_failures):
    ti = final_failures.tis[("give_up", -1)]
    assert ti.state == "failed"
    assert ti.try_number == 1

    [alert] = alerts_for(final_failures, "give_up")
    assert "<b>Try:</b> 1 of 3" in alert
    assert "<code>airflow.sdk.exceptions.AirflowFailException</code>" in alert


def test_retry_policy_that_fails_at_once_alerts_once(final_failures):
    ti = final_failures.tis[("refused", -1)]
    assert ti.state == "failed"
    assert ti.try_number == 1

    [alert] = alerts_for(final_failures, "refused")
    assert "<b>Try:</b> 1 of 3" in alert
    assert "<code>PermissionError</code>" in alert


def test_every_final_failure_sent_exactly_one_message(final_failures):
    failed = sorted(key for key, ti in final_failures.tis.items() if ti.state == "failed")
    alerted = sorted(
        (task_id, map_index)
        for task_id, map_index in failed
        for _ in alerts_for(final_failures, task_id, map_index)
    )
    assert failed == [
        ("give_up", -1),
        ("load", 0),
        ("load", 1),
        ("no_retries", -1),
        ("refused", -1),
        ("wait_for_object", 0),
        ("wait_for_object", 1),
        ("wait_poking", -1),
    ]
    assert alerted == failed
    assert len(final_failures.messages) == len(failed)
