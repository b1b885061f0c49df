"""A second chat-completions endpoint for the tests, built apart from chat_server.py and unlike it.

chat_server.py replays a script in its own turn format and sends every field OpenAI sends. This one
serves a *model*: a Python function from the request body to the assistant's message, written in the
wire format itself, and sends only what that message holds, as some servers do:

- no tool-call ``id`` or ``type`` unless the message gives them, no ``finish_reason``, no
  ``created``, ``object`` or ``system_fingerprint``;
- ``usage`` only on the replies the model gives one (``"usage": {...}`` beside the message, e.g.
  only on a role's last reply);
- several tool calls in one reply when the model lists several (parallel calls).

A model returns ``{"message": {...}}`` (and optionally ``"usage"``), or ``{"status": 500}`` for an
HTTP error. Streaming is refused with HTTP 400 (the LLM core does not stream). Every request body is
kept in ``bodies``.

    with WireEndpoint(model) as endpoint:
        ChatOpenAI(base_url=endpoint.url, ...)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Model = Callable[[dict[str, Any]], dict[str, Any]]


class WireEndpoint:
    def __init__(self, model: Model, name: str = "wire-model"):
        self.model, self.name = model, name
        self.bodies: list[dict[str, Any]] = []
        self.errors: list[str] = []  # a model that raised: the test fails on these, the client got HTTP 500
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> "WireEndpoint":
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.bodies.append(body)
            number = len(self.bodies)
            if body.get("stream"):
                return 400, {"error": {"message": "this endpoint does not stream"}}
            try:
                out = self.model(body)
            except Exception as err:  # noqa: BLE001 - the test reads `errors`
                self.errors.append(f"request {number}: {type(err).__name__}: {err}")
                return 500, {"error": {"message": f"model error: {err}"}}
        if "status" in out:
            return out["status"], {"error": {"message": out.get("text", "scripted error")}}
        completion = {"id": f"wire-{number}", "model": self.name, "choices": [{"index": 0, "message": out["message"]}]}
        if "usage" in out:
            completion["usage"] = out["usage"]
        return 200, completion

    def _handler(self):
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"data": [{"id": endpoint.name}]} if self.path.endswith("/models")
                           else {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                self._send(*endpoint.answer(body))

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def tool_call(name: str, **arguments: Any) -> dict[str, Any]:
    """A tool call as the wire carries it, without id or type."""
    return {"function": {"name": name, "arguments": json.dumps(arguments)}}


def says(content: str | None, *calls: dict[str, Any], usage: tuple[int, int] | None = None) -> dict[str, Any]:
    """A model's answer: the assistant's text and calls; usage only when given."""
    message: dict[str, Any] = {"role": "assistant"}
    if content is not None:
        message["content"] = content
    if calls:
        message["tool_calls"] = list(calls)
    out: dict[str, Any] = {"message": message}
    if usage:
        out["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return out
