"""A fake Telegram Bot API on loopback, and the pytest fixture ``telegram_server`` that serves it.

The server answers ``POST /bot<token>/sendMessage`` the way the real Bot API does, with
``{"ok": true, "result": <Message>}``, so python-telegram-bot parses the reply into a ``Message``.
It records every request (token, method, chat_id, text, parse_mode). Setting
``server.error_reply = (400, "Bad Request: chat not found")`` makes it answer with an API error
instead.

``telegram_unreachable`` points the same connection at a loopback port nothing listens on.
Register the fixtures with ``pytest_plugins = ["telegram_server"]`` (``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs

import local_stack
import pytest

TOKEN = "123456789:AAH-fakeTokenForTests_0123456789abcdefXYZ"
CHAT_ID = "-1001234567890"


@dataclass(frozen=True)
class RecordedRequest:
    """One Bot API call the fake server received."""

    token: str
    method: str
    chat_id: str | None
    text: str | None
    parse_mode: str | None


class _BotApiHandler(BaseHTTPRequestHandler):
    server: FakeTelegramServer

    def do_POST(self) -> None:
        token, method = self._token_and_method()
        params = self._params()
        if token is None:
            self._reply(HTTPStatus.NOT_FOUND, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        self.server.record(
            RecordedRequest(
                token=token,
                method=method,
                chat_id=None if params.get("chat_id") is None else str(params["chat_id"]),
                text=params.get("text"),
                parse_mode=params.get("parse_mode"),
            )
        )
        if self.server.error_reply is not None:
            code, description = self.server.error_reply
            self._reply(code, {"ok": False, "error_code": code, "description": description})
        elif method.lower() == "sendmessage":
            self._reply(HTTPStatus.OK, {"ok": True, "result": self.server.message_object(params)})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"ok": False, "error_code": 404, "description": "Not Found"})

    def _token_and_method(self) -> tuple[str | None, str]:
        path = self.path.split("?", 1)[0]
        prefix, _, rest = path.partition("/bot")
        token, _, method = rest.partition("/")
        if prefix or not token or not method:
            return None, ""
        return token, method

    def _params(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            return json.loads(body or "{}")
        # python-telegram-bot posts url-encoded form fields
        return {key: values[-1] for key, values in parse_qs(body, keep_blank_values=True).items()}

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """Stay silent: the default writes the request path, which holds the token, to stderr."""


class FakeTelegramServer(ThreadingHTTPServer):
    """A Bot API look-alike on ``127.0.0.1`` and a free port, serving from a daemon thread.

    :param token: the bot token the fixture puts into the connection
    :param chat_id: the chat id the fixture puts into the connection
    """

    daemon_threads = True

    def __init__(self, token: str = TOKEN, chat_id: str = CHAT_ID) -> None:
        super().__init__(("127.0.0.1", 0), _BotApiHandler)
        self.token = token
        self.chat_id = chat_id
        self.requests: list[RecordedRequest] = []
        self.error_reply: tuple[int, str] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-telegram", daemon=True
        )

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        """What goes into the connection extra ``base_url``; the client appends ``<token>/<method>``."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def messages(self) -> list[RecordedRequest]:
        """The ``sendMessage`` calls received so far."""
        with self._lock:
            return [r for r in self.requests if r.method.lower() == "sendmessage"]

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def message_object(self, params: dict) -> dict:
        """Build the ``Message`` the real API returns for a sent text."""
        chat_id = str(params.get("chat_id"))
        try:
            chat_id_value: int | str = int(chat_id)
        except ValueError:
            chat_id_value = chat_id
        chat: dict = {"id": chat_id_value, "type": "private"}
        if isinstance(chat_id_value, int) and chat_id_value < 0:
            chat = {"id": chat_id_value, "type": "supergroup", "title": "alerts"}
        with self._lock:
            message_id = len(self.requests)
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": 123456789, "is_bot": True, "first_name": "alerts-bot"},
            "text": params.get("text") or "",
        }

    def start(self) -> FakeTelegramServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


def connection_uri_json(server_base_url: str, token: str = TOKEN, chat_id: str = CHAT_ID) -> str:
    """Return a JSON Airflow connection for Telegram that points the client at ``server_base_url``.

    :param server_base_url: Bot API base URL without the token, e.g. ``http://127.0.0.1:PORT/bot``
    :param token: bot token, stored as the connection password
    :param chat_id: chat id, stored as the connection host
    """
    return json.dumps(
        {
            "conn_type": "telegram",
            "password": token,
            "host": chat_id,
            "extra": {"base_url": server_base_url},
        }
    )


@pytest.fixture
def telegram_server():
    """Serve the fake Bot API and expose it as the Airflow connection ``telegram_default``."""
    server = FakeTelegramServer().start()
    previous = os.environ.get("AIRFLOW_CONN_TELEGRAM_DEFAULT")
    os.environ["AIRFLOW_CONN_TELEGRAM_DEFAULT"] = connection_uri_json(server.base_url)
    try:
        yield server
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_TELEGRAM_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_TELEGRAM_DEFAULT"] = previous
        server.stop()


@pytest.fixture
def telegram_unreachable(monkeypatch):
    """Point ``telegram_default`` at a loopback port nothing listens on; yield token and base_url."""
    base_url = f"http://127.0.0.1:{local_stack.free_port()}/bot"
    monkeypatch.setenv("AIRFLOW_CONN_TELEGRAM_DEFAULT", connection_uri_json(base_url))
    return SimpleNamespace(token=TOKEN, chat_id=CHAT_ID, base_url=base_url)
