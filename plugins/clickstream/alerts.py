"""Telegram alerts for tasks that failed for good.

Wire the ready callback into a DAG's ``default_args`` so that every task gets it::

    from clickstream.alerts import notify_task_failure

    @dag(..., default_args={"on_failure_callback": notify_task_failure})

Airflow 3 calls ``on_failure_callback`` only on a final failure, but a callback has been
reported to fire on a retry after restarts (apache/airflow #56942), so the notifier decides
itself whether a retry is coming, by the rule of the task runner
(``airflow.sdk.execution_time.task_runner``): ``AirflowFailException``,
``AirflowSensorTimeout`` (a sensor that timed out) and ``AirflowTaskTerminated`` are never
retried, whatever ``retries`` says; a task's ``retry_policy`` that answers ``FAIL`` is not
retried either; any other failure is retried while the try number is at most the max tries.
It alerts exactly when no retry is coming, and stays quiet otherwise.

The message goes out through the Telegram provider's hook, connection ``telegram_default``
(password: bot token, host: chat id). An optional connection extra ``base_url`` points the
client at another Bot API server (tests use a local one); production leaves it out.

Sending is best effort: whatever goes wrong (no connection, unreachable API, an error reply)
ends in one warning and never changes the task's outcome. The bot token is part of every Bot
API URL; it is scrubbed from the log records of the HTTP client and from every warning here.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping
from typing import Any

import telegram
import tenacity
from airflow.providers.telegram.hooks.telegram import TelegramHook
from airflow.sdk import BaseNotifier, RetryAction
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowTaskTerminated

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "telegram_default"
MESSAGE_LIMIT = 4096
"""Telegram's limit for a message text. Counted here on the HTML source in UTF-16 code units,
which is never less than what Telegram counts (the text after entity parsing)."""
EXCEPTION_LINES = 20
FIELD_LIMIT = 300
URL_LIMIT = 1000
NEVER_RETRIED = (AirflowFailException, AirflowSensorTimeout, AirflowTaskTerminated)
"""Exceptions the task runner fails a task on at once, without consulting retries or a retry policy."""

# The Bot API URL is ``<base_url><token>/<method>``, base_url ending in ``/bot``.
_TOKEN_IN_URL = re.compile(r"(?<=/bot)[^/\s'\"`]+")
# Loggers that write the Bot API URL: httpx logs every request at INFO, python-telegram-bot
# logs the URL it was configured with at DEBUG when a Bot is created.
_URL_LOGGERS = ("httpx", "telegram.Bot")


def scrub(text: str, token: str | None = None) -> str:
    """Return ``text`` without the bot token, neither literally nor as the token part of a Bot API URL.

    :param text: any text that may contain the token
    :param token: the token itself, if known
    """
    if token:
        text = text.replace(token, "***")
    return _TOKEN_IN_URL.sub("***", text)


class _ScrubBotTokenFilter(logging.Filter):
    """Rewrite log records that carry a Bot API URL so that the token never reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def _install_token_scrubber() -> None:
    for name in _URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _ScrubBotTokenFilter) for existing in logger.filters):
            logger.addFilter(_ScrubBotTokenFilter())


_install_token_scrubber()


class BaseUrlTelegramHook(TelegramHook):
    """``TelegramHook`` that honours a connection extra ``base_url`` (another Bot API server).

    :param telegram_conn_id: Airflow connection: password = bot token, host = chat id,
        optional extra ``base_url`` such as ``http://127.0.0.1:8081/bot``
    """

    def __init__(self, telegram_conn_id: str = DEFAULT_CONN_ID) -> None:
        self._base_url_conn_id = telegram_conn_id
        super().__init__(telegram_conn_id=telegram_conn_id)

    def get_conn(self) -> telegram.Bot:
        """Return the bot client, talking to the extra's ``base_url`` if the connection sets one."""
        base_url = self.get_connection(self._base_url_conn_id).extra_dejson.get("base_url")
        if base_url:
            return telegram.Bot(self.token, base_url=base_url)
        return super().get_conn()


def send_telegram_message(text: str, telegram_conn_id: str = DEFAULT_CONN_ID) -> bool:
    """Send ``text`` (HTML) to the connection's chat once; on any failure log one warning.

    Never raises: an alert must not change the outcome of the task that sends it.

    :param text: message text, HTML parse mode, at most 4096 characters
    :param telegram_conn_id: Airflow connection of the bot and chat
    :return: whether Telegram accepted the message
    """
    token = None
    try:
        hook = BaseUrlTelegramHook(telegram_conn_id=telegram_conn_id)
        token = hook.token
        # TelegramHook.send_message retries 5 times, 1 s apart, on any TelegramError. This runs
        # inside the failing task's own process, so that would hold the worker slot for up to
        # ~5 x (connect/read timeouts + 1 s), retry errors that cannot heal (bad token, unknown
        # chat), and may post duplicates when a reply times out after Telegram took the message.
        # One attempt keeps the alert bounded and at most once; reraise=True hands on the
        # original error instead of tenacity's RetryError.
        send_once = type(hook).send_message.retry_with(stop=tenacity.stop_after_attempt(1), reraise=True)
        send_once(hook, {"text": text})
    except Exception as error:
        log.warning(
            "Telegram alert not sent (connection %s): %s: %s",
            telegram_conn_id,
            type(error).__name__,
            scrub(str(error), token),
        )
        return False
    return True


def escape_within(text: str, limit: int, marker: str = "…") -> str:
    """HTML-escape ``text`` for Telegram; cut it to ``limit`` UTF-16 units, never inside an entity.

    :param text: raw text
    :param limit: maximum length of the escaped result, in UTF-16 code units
    :param marker: appended when the text was cut (counted within ``limit``)
    :return: the escaped, possibly cut text
    """
    escaped = html.escape(text, quote=False)
    if _units(escaped) <= limit:
        return escaped
    budget = limit - _units(marker)
    pieces: list[str] = []
    used = 0
    for char in text:
        piece = html.escape(char, quote=False)
        cost = _units(piece)
        if used + cost > budget:
            break
        pieces.append(piece)
        used += cost
    return "".join(pieces) + marker if budget >= 0 else ""


def _units(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts."""
    return len(text.encode("utf-16-le")) // 2


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class TelegramFailureNotifier(BaseNotifier):
    """Post a task's final failure to a Telegram chat; usable as ``on_failure_callback``.

    :param telegram_conn_id: Airflow connection of the bot (password) and chat (host)
    :param map_key: name of the mapped argument shown for mapped tasks (the ingest DAG maps over ``table``)
    """

    template_fields = ()

    def __init__(self, telegram_conn_id: str = DEFAULT_CONN_ID, map_key: str = "table") -> None:
        super().__init__()
        self.telegram_conn_id = telegram_conn_id
        self.map_key = map_key

    def notify(self, context: Mapping[str, Any]) -> None:
        """Send the alert unless the task will still be retried; never raise.

        :param context: the task's Airflow context
        """
        ti = context.get("ti")
        name = f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')}"
        try_number, max_tries = self._tries(context)
        if self._will_retry(context, try_number, max_tries):
            log.info(
                "Task %s failed on try %s of %s and will be retried: no Telegram alert",
                name,
                try_number,
                max_tries + 1,
            )
            return
        log.info("Task %s failed for good (try %s): sending a Telegram alert", name, try_number)
        try:
            text = self.render_message(context)
        except Exception as error:
            log.warning("Telegram alert not sent: cannot render it: %s: %s", type(error).__name__, error)
            return
        if send_telegram_message(text, self.telegram_conn_id):
            log.info("Telegram alert sent for task %s", name)

    @staticmethod
    def _tries(context: Mapping[str, Any]) -> tuple[int | None, int]:
        ti = context.get("ti")
        task = getattr(ti, "task", None) or context.get("task")
        try_number = getattr(ti, "try_number", None)
        max_tries = getattr(ti, "max_tries", None)
        if max_tries is None:
            max_tries = getattr(task, "retries", None) or 0
        return try_number, max_tries

    @staticmethod
    def _will_retry(context: Mapping[str, Any], try_number: int | None, max_tries: int) -> bool:
        """Tell whether the task runner retries this failure, by its own rule.

        In the order the runner applies it: an exception in ``NEVER_RETRIED`` fails the task at
        once; a ``retry_policy`` answering ``FAIL`` fails it at once; otherwise it is retried
        while retries are configured and ``try_number <= max_tries`` (the API server's
        ``should_retry``). A failure without an exception (a callback the scheduler sends for a
        task that lost its heartbeat) follows the try count alone.

        :param context: the task's Airflow context (``ti``, ``task``, ``exception``)
        :param try_number: the try that failed, 1-based
        :param max_tries: the task instance's max tries (retries, plus earlier tries when cleared)
        :return: whether another try is coming
        """
        error = context.get("exception")
        if isinstance(error, NEVER_RETRIED):
            return False
        task = getattr(context.get("ti"), "task", None) or context.get("task")
        if task is not None and not getattr(task, "retries", 0):
            return False
        if try_number is None or try_number > max_tries:
            return False
        policy = getattr(task, "retry_policy", None)
        if policy is not None and isinstance(error, BaseException):
            try:
                decision = policy.evaluate(
                    exception=error, try_number=try_number, max_tries=max_tries, context=context
                )
            except Exception:
                # The runner falls back to the try count when its policy raises; so does this.
                return True
            return decision.action != RetryAction.FAIL
        return True

    def render_message(self, context: Mapping[str, Any]) -> str:
        """Return the HTML alert for a failed task, at most 4096 UTF-16 units; no side effects.

        The header (DAG, task, window, try, exception type) and the log URL are kept; only the
        exception text is cut to fit. Every value is HTML-escaped, and cut before escaping
        completes an entity, so a cut never splits one.

        :param context: the task's Airflow context (``ti``, ``exception``, data interval, params, run id)
        :return: the message text for parse mode HTML
        """
        ti = context.get("ti")
        dag = context.get("dag")
        dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", "?")
        try_number, max_tries = self._tries(context)
        error = context.get("exception")
        if isinstance(error, BaseException):
            error_type = type(error).__qualname__
            if type(error).__module__ not in ("builtins", "__main__"):
                error_type = f"{type(error).__module__}.{error_type}"
            error_text = str(error)
        else:
            error_type = "error"
            error_text = "" if error is None else str(error)
        error_text = "\n".join(error_text.splitlines()[:EXCEPTION_LINES])

        def field(value: Any, limit: int = FIELD_LIMIT) -> str:
            return escape_within(str(value), limit)

        task_line = f"<b>Task:</b> <code>{field(getattr(ti, 'task_id', '?'))}</code>"
        map_index = getattr(ti, "map_index", -1)
        if map_index is not None and map_index >= 0:
            task_line += f" [{map_index}]"
            mapped_value = self._mapped_value(ti)
            if mapped_value is not None:
                task_line += f" {field(self.map_key)} <code>{field(mapped_value)}</code>"

        header = "\n".join(
            [
                "❌ <b>Airflow task failed</b>",
                f"<b>DAG:</b> <code>{field(dag_id)}</code>",
                task_line,
                f"<b>Window:</b> {field(self._window(context))}",
                f"<b>Try:</b> {try_number} of {max_tries + 1}",
                f"<b>Error:</b> <code>{field(error_type)}</code>",
            ]
        )
        footer = f"<b>Log:</b> {field(getattr(ti, 'log_url', ''), URL_LIMIT)}"
        if not error_text:
            return f"{header}\n{footer}"
        room = MESSAGE_LIMIT - _units(header) - _units(footer) - _units("\n<pre></pre>\n")
        return f"{header}\n<pre>{escape_within(error_text, room)}</pre>\n{footer}"

    def _mapped_value(self, ti: Any) -> Any:
        """The mapped argument of this task instance: its op_kwargs entry, else the rendered map index."""
        op_kwargs = getattr(getattr(ti, "task", None), "op_kwargs", None)
        if isinstance(op_kwargs, Mapping) and op_kwargs.get(self.map_key) is not None:
            return op_kwargs[self.map_key]
        return getattr(ti, "rendered_map_index", None)

    @staticmethod
    def _window(context: Mapping[str, Any]) -> str:
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if start is not None and end is not None:
            return f"{_iso(start)} → {_iso(end)}"
        params = context.get("params") or {}
        if params.get("window_start"):
            return f"window_start {params['window_start']}"
        return f"run {context.get('run_id') or getattr(context.get('ti'), 'run_id', '?')}"


notify_task_failure = TelegramFailureNotifier()
"""Ready callback for ``default_args["on_failure_callback"]``, sending to ``telegram_default``."""
