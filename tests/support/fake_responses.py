"""A loopback stand-in for the OpenAI model API, for running the real codex CLI offline.

The guide allows one stand-in: the model API behind codex, which a test cannot reach. This one
speaks the streaming Responses API as codex 0.169.0 uses it, so that the real CLI, in ``codex
exec --json`` or in its full screen, completes whole turns: the model calls a tool, codex runs
it and sends the output back, the model answers. It is scripted (a list of :class:`Reply`, one
per model request of the conversation) and records every request for assertions.

Written from the codex repository's own mocks (``sdk/typescript/tests/responsesProxy.ts`` and
``codex-rs/core/tests/common/responses.rs``), the Responses API's streaming events, and what
codex 0.169.0 was seen to send (every request is recorded: dump ``fake.requests`` to look).

How codex is pointed here
    A custom provider in ``$CODEX_HOME/config.toml`` (:meth:`FakeResponses.provider_toml`):
    ``model_provider = "fake"`` and ``[model_providers.fake]`` with ``base_url =
    "http://127.0.0.1:PORT/v1"``, ``wire_api = "responses"``, ``env_key`` naming a variable
    that holds :attr:`FakeResponses.api_key` (sent as ``Authorization: Bearer``, no login
    needed), ``supports_websockets = false``, and no retries (``request_max_retries`` and
    ``stream_max_retries`` 0), so that a refused request fails the turn at once. The built-in
    ``openai`` provider (and ``openai_base_url``) first opens a WebSocket, ``GET
    /v1/responses`` with ``Upgrade: websocket`` and ``openai-beta:
    responses_websockets=2026-02-06``, retries it five times, then falls back to HTTPS; a
    custom provider without WebSockets goes straight to HTTPS.

What codex sends (``POST /v1/responses``, JSON, ``Accept: text/event-stream``)
    ``{"model": "gpt-6.1-sol", "stream": true, "store": false, "tool_choice": "auto",
    "parallel_tool_calls": false, "reasoning": {"effort": "low", "context": "all_turns"},
    "include": ["reasoning.encrypted_content"], "prompt_cache_key": THREAD_ID, "text":
    {"verbosity": "low"}, "client_metadata": {...}, "input": [...]}``. There is no top-level
    ``tools``: the first input item is ``{"type": "additional_tools", "role": "developer",
    "tools": [namespaces]}``, and the model-facing tools are namespaced: ``functions`` holds
    ``exec`` (a *custom* tool with a Lark grammar: JavaScript that calls the nested tools,
    ``await tools.exec_command({cmd})`` among them), ``wait``, ``request_user_input``...;
    ``clock`` holds ``sleep``; ``collaboration`` the sub-agent tools. Then developer messages
    (instructions, permissions, skills), a user ``<environment_context>`` message, the user's
    prompt as ``{"type": "message", "role": "user", "content": [{"type": "input_text",
    "text": PROMPT}]}``, and ``{"type": "configuration_update", ...}``. Headers carry
    ``originator`` (``codex_exec`` or ``codex-tui``), ``session-id``, ``thread-id`` and
    ``x-codex-turn-metadata`` (JSON: ``request_kind``, ``thread_source``, ``turn_id``...).

    The next request repeats the input and appends the model's item and its output:
    ``{"type": "custom_tool_call", "call_id", "name": "exec", "input"}`` then
    ``{"type": "custom_tool_call_output", "call_id", "output": [{"type": "input_text", "text":
    "Script completed\\nWall time 0.1 seconds\\nOutput:\\n"}, {"type": "input_text", "text":
    "hello\\n"}]}``; a plain ``function_call`` gets a ``function_call_output`` whose ``output``
    is a string (``"Chunk ID: ..\\nWall time: ..\\nProcess exited with code 0\\n...Output:\\n..."``
    for ``exec_command``). codex accepts a direct ``exec_command`` function call too, but it
    is not among the tools it offers, so a faithful model does not make one; the stand-in
    reports a call of a tool that the request did not offer as a problem.

    The full screen adds a side request per new thread for its title: the same shape with
    ``"text": {"format": {"type": "json_schema", "name": "codex_output_schema", "schema":
    {"properties": {"title": ...}}}}`` and ``thread_source: "thread_title"`` in the metadata,
    sent while the turn runs. The stand-in answers it on its own (``{"title": TITLE}``),
    outside the script.

What the stand-in answers (``200``, ``text/event-stream``, chunked; one ``event:``/``data:`` frame
per event, each event with a ``sequence_number``)
    ``response.created`` and ``response.in_progress`` (the response object, ``status:
    "in_progress"``); per output item ``response.output_item.added``, its deltas
    (``response.content_part.added``, ``response.output_text.delta`` ... ``.done``,
    ``response.content_part.done`` for a message; ``response.function_call_arguments.delta``
    / ``.done``; ``response.custom_tool_call_input.delta`` / ``.done``) and
    ``response.output_item.done`` with the whole item; last ``response.completed`` with
    ``usage: {input_tokens, input_tokens_details: {cached_tokens}, output_tokens,
    output_tokens_details: {reasoning_tokens}, total_tokens}``. codex reads the items from
    ``output_item.done`` and the usage from ``response.completed``; it sums the usage of a
    turn's responses into ``turn.completed``.

What ``codex exec --json`` 0.169.0 prints for such a turn (one JSON object per line; this is the
capture in ``tests/fixtures/codex/exec-json-0.169.0.jsonl``, broken here for width)::

    {"type":"thread.started","thread_id":"01a23341-460a-78e1-b120-49864d30824f"}
    {"type":"turn.started"}
    {"type":"item.started","item":{"id":"item_0","type":"command_execution",
        "command":"/bin/bash -lc 'echo offline-$((6 * 7))'","aggregated_output":"",
        "exit_code":null,"status":"in_progress"}}
    {"type":"item.completed","item":{"id":"item_0","type":"command_execution",
        "command":"/bin/bash -lc 'echo offline-$((6 * 7))'","aggregated_output":"offline-42\n",
        "exit_code":0,"status":"completed"}}
    {"type":"item.completed","item":{"id":"item_1","type":"agent_message",
        "text":"Ran it: the command printed offline-42."}}
    {"type":"turn.completed","usage":{"input_tokens":3200,"cached_input_tokens":1700,
        "cache_write_input_tokens":0,"output_tokens":65,"reasoning_output_tokens":12}}

The command is the shell's argv joined (``$SHELL -lc CMD``), the output is stdout and stderr
together, the usage is the sum over the turn's model responses (here 1500+1700 input, 300+1400
cached, 40+25 output, 12+0 reasoning) and has no total. A failed turn ends with ``{"type":"turn.failed","error":{"message":...}}``; retries show as
``{"type":"error","message":"Reconnecting... 2/5 (...)"}`` and notices as items of type
``error`` (``{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Falling back
from WebSockets to HTTPS transport. ..."}}``).

Anything else is refused and recorded: a request through the proxy (``CONNECT host:443`` or an
absolute URL; point ``HTTPS_PROXY``/``HTTP_PROXY`` here) goes to :attr:`FakeResponses.strays`
with a ``403``; an unknown path, a WebSocket upgrade, a wrong key or a request after the script
ran out gets a JSON error and goes to :attr:`FakeResponses.problems`. A test asserts both.

Plain ``http.server`` in a thread (the test process is not gevent-patched); one thread per
connection, which codex keeps few of.
"""
from __future__ import annotations

import gzip
import itertools
import json
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):04d}"


# --------------------------------------------------------------------------- the script


@dataclass(frozen=True)
class Usage:
    """Token counts of one response, as ``response.completed`` carries them."""

    input_tokens: int = 1200
    cached_input_tokens: int = 200
    output_tokens: int = 30
    reasoning_output_tokens: int = 5

    def wire(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_input_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_output_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


@dataclass(frozen=True)
class Message:
    """An assistant message: the model's answer to the user."""

    text: str
    item_id: str = field(default_factory=lambda: _next_id("msg"))

    def done(self) -> dict[str, Any]:
        return {"id": self.item_id, "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": self.text}]}


@dataclass(frozen=True)
class ToolCall:
    """A tool call: a ``function_call`` with the JSON ``arguments`` the model writes, or, when
    ``freeform``, a ``custom_tool_call`` with raw ``input`` (codex's code-mode ``exec``)."""

    name: str
    payload: str
    freeform: bool = False
    call_id: str = field(default_factory=lambda: _next_id("call"))
    item_id: str = ""  # "ctc_..." or "fc_..." as the API names them

    def __post_init__(self) -> None:
        if not self.item_id:
            object.__setattr__(self, "item_id", _next_id("ctc" if self.freeform else "fc"))

    @property
    def kind(self) -> str:
        return "custom_tool_call" if self.freeform else "function_call"

    @property
    def field(self) -> str:
        """The item's field with the payload; its deltas are ``response.<kind>_<field>.delta``,
        ``custom_tool_call_input`` and ``function_call_arguments``."""
        return "input" if self.freeform else "arguments"

    def done(self) -> dict[str, Any]:
        return {"id": self.item_id, "type": self.kind, "status": "completed", "name": self.name,
                "call_id": self.call_id, self.field: self.payload}


Item = Message | ToolCall


@dataclass(frozen=True)
class Reply:
    """What the model answers to one request: output items and the tokens it cost."""

    items: tuple[Item, ...]
    usage: Usage = Usage()

    @property
    def calls(self) -> list[ToolCall]:
        return [item for item in self.items if not isinstance(item, Message)]


def say(text: str, usage: Usage = Usage()) -> Reply:
    """The model's final message."""
    return Reply((Message(text),), usage)


def run_command(cmd: str, usage: Usage = Usage()) -> Reply:
    """The model runs a shell command the way codex 0.169 offers it: its code-mode ``exec``
    tool, with JavaScript that calls the nested ``exec_command`` tool and returns its output."""
    script = f"const r = await tools.exec_command({{cmd: {json.dumps(cmd)}}});\ntext(r.output);\n"
    return Reply((ToolCall("exec", script, freeform=True),), usage)


def call_function(name: str, arguments: dict[str, Any], usage: Usage = Usage()) -> Reply:
    """The model calls a JSON-schema tool (``exec_command`` where code mode is off)."""
    return Reply((ToolCall(name, json.dumps(arguments)),), usage)


# --------------------------------------------------------------------------- the stream


def _pieces(text: str) -> list[str]:
    """Text split as a model streams it: a word (and its trailing space) per delta."""
    return re.findall(r"\S+\s*|\s+", text) or [""]


def response_events(reply: Reply, response_id: str, model: str) -> list[dict[str, Any]]:
    """The streaming events of one response, in order, without sequence numbers."""
    base = {"id": response_id, "object": "response", "created_at": int(time.time()), "model": model,
            "output": [], "usage": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**base, "status": "in_progress"}},
        {"type": "response.in_progress", "response": {**base, "status": "in_progress"}},
    ]
    for index, item in enumerate(reply.items):
        done = item.done()
        where = {"item_id": item.item_id, "output_index": index}
        if isinstance(item, Message):
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**done, "status": "in_progress", "content": []}})
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            events.append({"type": "response.content_part.added", **where, "content_index": 0, "part": part})
            for piece in _pieces(item.text):
                events.append({"type": "response.output_text.delta", **where, "content_index": 0,
                               "delta": piece, "logprobs": []})
            events.append({"type": "response.output_text.done", **where, "content_index": 0,
                           "text": item.text, "logprobs": []})
            events.append({"type": "response.content_part.done", **where, "content_index": 0,
                           "part": {**part, "text": item.text}})
        else:
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**done, "status": "in_progress", item.field: ""}})
            stream = f"response.{item.kind}_{item.field}"
            for piece in _pieces(item.payload):
                events.append({"type": f"{stream}.delta", **where, "delta": piece})
            events.append({"type": f"{stream}.done", **where, item.field: item.payload})
        events.append({"type": "response.output_item.done", "output_index": index, "item": done})
    events.append({"type": "response.completed",
                   "response": {**base, "status": "completed", "output": [item.done() for item in reply.items],
                                "usage": reply.usage.wire()}})
    return events


def sse_frames(events: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """``event:``/``data:`` frames, numbered as the API numbers them."""
    for number, event in enumerate(events):
        data = json.dumps({**event, "sequence_number": number}, separators=(",", ":"))
        yield f"event: {event['type']}\ndata: {data}\n\n".encode()


# --------------------------------------------------------------------------- what codex sent


@dataclass
class Request:
    """One request as received: for assertions on what codex sent."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    kind: str = "other"  # "turn" (answered from the script), "title", "stray", "other"

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def metadata(self) -> dict[str, Any]:
        """``x-codex-turn-metadata``: request kind, thread source, turn id..."""
        try:
            value = json.loads(self.headers.get("x-codex-turn-metadata", "{}"))
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def input(self, item_type: str | None = None) -> list[dict[str, Any]]:
        items = self.json().get("input", [])
        return [i for i in items if item_type is None or i.get("type") == item_type]

    def user_texts(self) -> list[str]:
        """The ``input_text`` of the user's messages (the prompt, the environment context)."""
        return [part.get("text", "") for item in self.input("message") if item.get("role") == "user"
                for part in item.get("content", []) if part.get("type") == "input_text"]

    def call_output(self, call_id: str) -> str | None:
        """The output codex sent back for a tool call, as text; None if it is not there."""
        for item in self.input():
            if item.get("type") in ("function_call_output", "custom_tool_call_output") \
                    and item.get("call_id") == call_id:
                output = item.get("output")
                if isinstance(output, list):
                    return "".join(part.get("text", "") for part in output if isinstance(part, dict))
                return str(output)
        return None

    def offered_tools(self) -> set[str]:
        """Names of the tools the request offers the model, top level and in namespaces."""
        body = self.json()
        tools = list(body.get("tools") or [])
        for item in body.get("input", []):
            if item.get("type") == "additional_tools":
                tools += item.get("tools", [])
        names: set[str] = set()
        while tools:
            tool = tools.pop()
            if tool.get("type") == "namespace":
                tools += tool.get("tools", [])
            elif tool.get("name"):
                names.add(tool["name"])
        return names


# --------------------------------------------------------------------------- the server


class FakeResponses:
    """The stand-in: ``with FakeResponses([run_command("ls"), say("Done.")]) as fake:``.

    ``listener`` is a bound, listening socket to serve on (one made in another network
    namespace, say); without it, a free port on 127.0.0.1 of this namespace.
    """

    def __init__(self, replies: Iterable[Reply], *, api_key: str = "sk-fake-offline-0000",
                 title: str = "Offline turn", listener: socket.socket | None = None) -> None:
        self.replies = list(replies)
        self.api_key = api_key
        self.title = title
        self.requests: list[Request] = []
        self.strays: list[str] = []
        self.problems: list[str] = []
        self._next = 0
        self._awaiting: list[ToolCall] = []  # calls whose output the next turn request must carry
        self._changed = threading.Condition()
        self._httpd = _Server(self, listener)
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-responses", daemon=True)

    # lifecycle
    def start(self) -> FakeResponses:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()

    def __enter__(self) -> FakeResponses:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # configuration for codex
    def provider_toml(self, name: str = "fake", env_key: str = "FAKE_RESPONSES_API_KEY") -> str:
        """The ``config.toml`` lines that make codex use this server (and its key in ``env_key``)."""
        return (f'model_provider = "{name}"\n\n'
                f"[model_providers.{name}]\n"
                f'name = "offline stand-in"\nbase_url = "{self.url}"\nwire_api = "responses"\n'
                f'env_key = "{env_key}"\nsupports_websockets = false\n'
                "request_max_retries = 0\nstream_max_retries = 0\n")

    @property
    def proxy_url(self) -> str:
        """For ``HTTPS_PROXY``/``HTTP_PROXY``: what goes through a proxy lands in :attr:`strays`."""
        return f"http://127.0.0.1:{self.port}"

    # what happened
    @property
    def turns(self) -> list[Request]:
        """The requests of the conversation (not titles, not strays), in order."""
        with self._changed:
            return [r for r in self.requests if r.kind == "turn"]

    @property
    def replies_left(self) -> int:
        with self._changed:
            return len(self.replies) - self._next

    def wait_until(self, predicate: Callable[[FakeResponses], bool], timeout: float, what: str) -> None:
        """Block until ``predicate(self)`` holds; fail with what was seen after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; {self.summary()}")
                self._changed.wait(min(remaining, 0.5))

    def summary(self) -> str:
        seen = [f"{r.method} {r.path} ({r.kind})" for r in self.requests]
        return f"requests: {seen}, strays: {self.strays}, problems: {self.problems}"

    # serving
    def _record(self, request: Request, problem: str | None = None, stray: str | None = None) -> None:
        with self._changed:
            self.requests.append(request)
            if problem:
                self.problems.append(problem)
            if stray:
                self.strays.append(stray)
            self._changed.notify_all()

    def _handle(self, handler: _Handler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        target = handler.path
        if handler.command == "CONNECT" or target.startswith(("http://", "https://")):
            self._refuse_stray(handler, headers, f"{handler.command} {target}")
            return
        body, problem = _read_body(handler, headers)
        request = Request(handler.command, target, headers, body)
        if problem is None and headers.get("upgrade", "").lower() == "websocket":
            problem = f"WebSocket upgrade on {target}: the provider needs supports_websockets = false"
        if problem is None and not (handler.command == "POST" and target.split("?")[0] == "/v1/responses"):
            problem = f"unexpected {handler.command} {target}"
        if problem is None and headers.get("authorization") != f"Bearer {self.api_key}":
            problem = f"{target} without the API key (Authorization: {headers.get('authorization')!r})"
        if problem is None:
            try:
                payload = request.json()
                assert isinstance(payload, dict) and payload.get("stream") is True
            except (ValueError, AssertionError):
                problem = f"{target}: not a streaming Responses request: {body[:200]!r}"
        if problem is not None:
            self._record(request, problem=problem)
            _send_json(handler, 400, {"error": {"type": "invalid_request_error", "code": "fake_responses",
                                                "message": f"offline stand-in: {problem}"}})
            return
        reply, problem = self._choose(request, payload)
        if reply is None:
            _send_json(handler, 400, {"error": {"type": "invalid_request_error", "code": "fake_responses",
                                                "message": f"offline stand-in: {problem}"}})
            return
        response_id = _next_id("resp")
        _send_stream(handler, sse_frames(response_events(reply, response_id, str(payload.get("model", "")))))

    def _choose(self, request: Request, payload: dict[str, Any]) -> tuple[Reply | None, str | None]:
        """The reply for a valid request: a title, or the next of the script (checked)."""
        text_format = (payload.get("text") or {}).get("format") or {}
        properties = (text_format.get("schema") or {}).get("properties") or {}
        if text_format.get("type") == "json_schema" and set(properties) == {"title"}:
            request.kind = "title"
            self._record(request)
            return Reply((Message(json.dumps({"title": self.title})),), Usage(200, 0, 8, 0)), None
        with self._changed:
            if self._next >= len(self.replies):
                problem = f"request {len(self.turns) + 1} of the conversation, but the script has {len(self.replies)}"
                request.kind = "turn"
                self.requests.append(request)
                self.problems.append(problem)
                self._changed.notify_all()
                return None, problem
            reply = self.replies[self._next]
            self._next += 1
            request.kind = "turn"
            problems = [f"codex did not send back the output of {call.name} call {call.call_id}"
                        for call in self._awaiting if request.call_output(call.call_id) is None]
            offered = request.offered_tools()
            problems += [f"the script calls {call.name!r}, which the request does not offer "
                         f"(it offers {sorted(offered)})" for call in reply.calls if call.name not in offered]
            self._awaiting = reply.calls
            self.requests.append(request)
            self.problems += problems
            self._changed.notify_all()
        return reply, None

    def _refuse_stray(self, handler: _Handler, headers: dict[str, str], what: str) -> None:
        self._record(Request(handler.command, handler.path, headers, b"", kind="stray"), stray=what)
        _send_json(handler, 403, {"error": {"message": f"offline test: {what} refused"}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeResponses, listener: socket.socket | None) -> None:
        self.fake = fake
        if listener is None:
            super().__init__(("127.0.0.1", 0), _Handler)
        else:
            super().__init__(listener.getsockname()[:2], _Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = listener
            self.server_address = listener.getsockname()[:2]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that stops mid-request does not hold a thread for ever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # requests are recorded, not logged

    def _dispatch(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_CONNECT = _dispatch


def _read_body(handler: _Handler, headers: dict[str, str]) -> tuple[bytes, str | None]:
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return b"", "a request with a bad Content-Length"
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return b"", "a chunked request body (codex sends Content-Length)"
    body = handler.rfile.read(length) if length else b""
    encoding = headers.get("content-encoding", "identity").lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding != "identity":
            return body, f"a request body in {encoding!r}, which the stand-in cannot read"
    except (OSError, zlib.error) as error:
        return body, f"a damaged {encoding} request body: {error}"
    return body, None


def _send_json(handler: _Handler, status: int, value: Any) -> None:
    data = json.dumps(value).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(data)
    handler.close_connection = True


def _send_stream(handler: _Handler, frames: Iterable[bytes]) -> None:
    """An SSE response, chunked as the API sends it, flushed frame by frame."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("x-request-id", _next_id("req"))
    handler.end_headers()
    try:
        for frame in frames:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True  # codex went away mid-stream (stopped, or cancelled the turn)
