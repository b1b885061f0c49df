"""A local server that speaks the OpenAI chat-completions protocol and replays a script.

It exercises the LLM path over real HTTP with the real client (``ChatOpenAI``),
with no model and no network: each ``POST /v1/chat/completions`` takes the next
turn of a SCRIPT and answers with it, as one JSON body, or as server-sent events
when the request sets ``"stream": true``. Every request body is recorded, so a
test can assert on the messages, tools and tool_choice the client sent.

Script format: a list of turns (or ``{"turns": [...]}`` in a JSON file). A turn is
a dict; the keys it may carry:

- ``content``: the assistant's text (may be absent or null when it calls tools).
- ``tool_calls``: ``[{"name": "write_file", "arguments": {...} | "raw text", "id": "..."}]``.
  A dict of arguments is sent as its JSON string; a string is sent as it is, so
  ``"arguments": "{not json"`` scripts malformed arguments. ``id`` defaults to
  ``call_<request>_<i>``. A name the client offered no tool for scripts an unknown tool.
- ``usage``: ``{"prompt_tokens": P, "completion_tokens": C}`` (or ``[P, C]``); sent in the
  JSON body, and as the last event of a stream when the client asks for it
  (``stream_options.include_usage``), as OpenAI does.
- ``status``: an HTTP error instead of a reply (500, 503, 429, 400...), with an
  OpenAI-style error body; ``message`` sets its text; ``retry_after`` (seconds)
  adds a ``Retry-After`` header.
- ``delay_s``: wait this long before answering (longer than the client's timeout
  scripts a timeout; the client gives up, the turn is spent).
- ``disconnect``: true closes the connection without an answer.
- ``garbage``: true answers 200 with a body that is not JSON.
- ``repeat``: how many requests this turn answers (default 1); ``"forever"`` never
  moves on (e.g. ``{"status": 500, "repeat": "forever"}``).
- ``finish_reason``: overrides "tool_calls"/"stop".

In Python a turn may also be a function of the request body returning a turn
(e.g. to answer with a path the request mentions). When the script is spent the
server answers HTTP 410 with "script exhausted" (the client does not retry it)
and records the request in ``extra_requests``.

In tests::

    from chat_server import ChatServer, chat_server  # noqa: F401 (fixture)

    def test_x(chat_server):
        server = chat_server([{"content": "hello", "usage": [10, 2]}])
        ChatOpenAI(base_url=server.url, api_key="x", max_retries=0).invoke("hi")
        assert server.requests[0]["messages"][0]["content"] == "hi"

    with ChatServer(script) as server: ...

From a shell (a later benchmark's fault suite)::

    python tests/chat_server.py SCRIPT.json --port 8011 --log requests.jsonl

prints ``http://127.0.0.1:8011/v1`` once listening and serves until interrupted
(or, with ``--exit-when-done``, until the script is spent and answered).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Turn = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]

COMPLETIONS_PATHS = ("/v1/chat/completions", "/chat/completions")
_FAULT_TEXT = {429: "Rate limit reached (scripted).", 500: "Internal server error (scripted)."}


def reply(content: str | None = None, *calls: dict, usage: tuple[int, int] | None = None, **extra: Any) -> dict:
    """A reply turn: ``reply(None, call("write_file", path="a.py", content="x"), usage=(120, 30))``."""
    turn: dict[str, Any] = {"content": content, **extra}
    if calls:
        turn["tool_calls"] = list(calls)
    if usage:
        turn["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
    return turn


def call(name: str, arguments: dict | str | None = None, /, **kwargs: Any) -> dict:
    """One tool call: ``call("run_script", command="python a.py")`` or ``call("x", "{raw")``."""
    return {"name": name, "arguments": kwargs if arguments is None else arguments}


class ChatServer:
    """A scripted chat-completions endpoint on loopback; a context manager.

    Attributes read by tests: ``url`` (the base URL for the client, ending in /v1),
    ``requests`` (every request body, in order, including those answered with a
    fault), ``headers`` (their HTTP headers, names in lower case), ``served`` (how many requests took a scripted turn), ``extra_requests``
    (bodies that came after the script was spent), ``done`` (script spent).
    """

    def __init__(self, script: Iterable[Turn], host: str = "127.0.0.1", port: int = 0,
                 log: Path | None = None, model: str = "scripted-model"):
        self.script: list[Turn] = list(script)
        self.host, self.port, self.model, self.log = host, port, model, log
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # each request's HTTP headers, in the order of `requests`
        self.extra_requests: list[dict[str, Any]] = []
        self.served = 0
        self._position, self._used = 0, 0  # script index; requests answered by the current turn
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> "ChatServer":
        handler = type("Handler", (_Handler,), {"server_ref": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler asleep in a scripted delay must not hold up close
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"chat-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read --------------------------------------------------
    @property
    def done(self) -> bool:
        with self._lock:
            return self._position >= len(self.script)

    def messages(self, index: int = -1) -> list[dict[str, Any]]:
        """The messages of request `index` (default: the last)."""
        return self.requests[index]["messages"]

    def tool_messages(self, index: int = -1) -> list[dict[str, Any]]:
        """The tool results (role "tool") the client sent in request `index`."""
        return [m for m in self.messages(index) if m.get("role") == "tool"]

    def tool_names(self, index: int = 0) -> list[str]:
        """The names of the tools offered in request `index`."""
        return [t["function"]["name"] for t in self.requests[index].get("tools", [])]

    # -- the script -------------------------------------------------------
    def next_turn(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any] | None:
        """Record the request and take the turn that answers it (None: the script is spent)."""
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(headers or {}))
            if self.log:
                with open(self.log, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(body) + "\n")
            if self._position >= len(self.script):
                self.extra_requests.append(body)
                return None
            turn = self.script[self._position]
            number = len(self.requests)
            resolved = turn(body) if callable(turn) else copy.deepcopy(turn)
            repeat = resolved.get("repeat", 1)
            self._used += 1
            if repeat != "forever" and self._used >= int(repeat):
                self._position, self._used = self._position + 1, 0
            self.served += 1
            resolved.setdefault("_number", number)
            return resolved

    def sleep(self, seconds: float) -> None:
        """A scripted delay that ends early when the server stops."""
        self._closing.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    server_ref: ChatServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests` instead
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            return self._json(200, {"object": "list", "data": [{"id": self.server_ref.model, "object": "model"}]})
        self._json(404, _error(f"no route {self.path}; POST /v1/chat/completions", "not_found"))

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.split("?")[0] not in COMPLETIONS_PATHS:
            return self._json(404, _error(f"no route {self.path}; POST /v1/chat/completions", "not_found"))
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as err:
            return self._json(400, _error(f"request body is not JSON: {err}", "invalid_request_error"))
        server = self.server_ref
        turn = server.next_turn(body, {k.lower(): v for k, v in self.headers.items()})
        if turn is None:
            return self._json(410, _error(f"chat_server: script exhausted after {server.served} turns",
                                          "script_exhausted"))
        if turn.get("delay_s"):
            server.sleep(float(turn["delay_s"]))
        if turn.get("disconnect"):
            self.close_connection = True
            self.connection.close()
            return
        if turn.get("garbage"):
            return self._send(200, b"<html>this is not JSON</html>", "application/json")
        status = int(turn.get("status", 200))
        if status != 200:
            headers = {"Retry-After": str(turn["retry_after"])} if "retry_after" in turn else {}
            message = turn.get("message") or _FAULT_TEXT.get(status, f"HTTP {status} (scripted).")
            kind = "rate_limit_exceeded" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
            return self._json(status, _error(message, kind), headers)
        if body.get("stream"):
            return self._stream(turn, body)
        self._json(200, completion(turn, body, server.model))

    # -- writing ----------------------------------------------------------
    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            self.close_connection = True

    def _stream(self, turn: dict, body: dict) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for chunk in stream_chunks(turn, body, self.server_ref.model):
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


# -- the protocol's bodies ----------------------------------------------------
def _error(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _usage(turn: dict) -> dict | None:
    usage = turn.get("usage")
    if usage is None:
        return None
    if isinstance(usage, (list, tuple)):
        usage = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
    usage = {"prompt_tokens": int(usage.get("prompt_tokens", 0)), "completion_tokens": int(usage.get("completion_tokens", 0))}
    return usage | {"total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}


def _tool_calls(turn: dict) -> list[dict]:
    calls = []
    for i, spec in enumerate(turn.get("tool_calls") or []):
        arguments = spec.get("arguments", {})
        calls.append({"id": spec.get("id") or f"call_{turn.get('_number', 0)}_{i}", "type": "function",
                      "function": {"name": spec["name"],
                                   "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}})
    return calls


def _finish_reason(turn: dict) -> str:
    return turn.get("finish_reason") or ("tool_calls" if turn.get("tool_calls") else "stop")


def completion(turn: dict, body: dict, model: str) -> dict:
    """The JSON body of a non-streamed answer."""
    message: dict[str, Any] = {"role": "assistant", "content": turn.get("content")}
    calls = _tool_calls(turn)
    if calls:
        message["tool_calls"] = calls
    answer = {"id": f"chatcmpl-{turn.get('_number', 0)}", "object": "chat.completion", "created": int(time.time()),
              "model": body.get("model") or model,
              "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(turn)}]}
    usage = _usage(turn)
    if usage:
        answer["usage"] = usage
    return answer


def stream_chunks(turn: dict, body: dict, model: str, piece: int = 12) -> Iterable[dict]:
    """The events of a streamed answer: role, content in pieces, each tool call's name then its
    arguments in pieces, the finish reason, and the usage when the client asked for it."""
    base = {"id": f"chatcmpl-{turn.get('_number', 0)}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body.get("model") or model}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return base | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    content = turn.get("content") or ""
    for start in range(0, len(content), piece):
        yield chunk({"content": content[start:start + piece]})
    for index, tool_call in enumerate(_tool_calls(turn)):
        arguments = tool_call["function"]["arguments"]
        yield chunk({"tool_calls": [{"index": index, "id": tool_call["id"], "type": "function",
                                     "function": {"name": tool_call["function"]["name"], "arguments": ""}}]})
        for start in range(0, len(arguments), piece):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[start:start + piece]}}]})
    yield chunk({}, _finish_reason(turn))
    usage = _usage(turn)
    if usage and (body.get("stream_options") or {}).get("include_usage"):
        yield base | {"choices": [], "usage": usage}


# -- pytest ---------------------------------------------------------------------
try:
    import pytest
except ImportError:  # the CLI needs no pytest
    pytest = None

if pytest is not None:

    @pytest.fixture()
    def chat_server():
        """A factory: ``server = chat_server(script)`` starts a ChatServer; all stop at teardown."""
        started: list[ChatServer] = []

        def start(script: Iterable[Turn], **kwargs: Any) -> ChatServer:
            server = ChatServer(script, **kwargs).start()
            started.append(server)
            return server

        yield start
        for server in started:
            server.stop()


# -- command line ---------------------------------------------------------------
def load_script(path: Path) -> list[dict]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    turns = data["turns"] if isinstance(data, dict) else data
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise SystemExit(f"{path}: a script is a JSON list of turns (objects), or {{\"turns\": [...]}}")
    return turns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay a scripted chat-completions conversation over HTTP.")
    parser.add_argument("script", type=Path, help="JSON list of turns (see this module's docstring)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--log", type=Path, help="append each request body to this JSONL file")
    parser.add_argument("--exit-when-done", action="store_true", help="stop once the script is spent")
    args = parser.parse_args(argv)
    server = ChatServer(load_script(args.script), args.host, args.port, log=args.log).start()
    print(server.url, flush=True)
    try:
        while True:
            if args.exit_when_done and server.done:
                time.sleep(0.2)  # let the last answer go out
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"served {server.served} turns, {len(server.requests)} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
