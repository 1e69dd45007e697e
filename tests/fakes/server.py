"""A scriptable fake HTTP provider: a werkzeug server on 127.0.0.1 (random port) in a thread.

Every request is recorded (method, path, query, headers, raw body, JSON, form). Each route answers with its
provider-specific handler unless a scripted action is queued for it: tests queue failures per call with
:meth:`FakeServer.script` (``Reply`` for HTTP errors / provider error bodies, ``Delay`` to sleep past the client's
timeout), and the queue is consumed one action per request, so "fail once, then succeed" reads naturally.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

__all__ = ["Delay", "FakeServer", "Recorded", "Reply"]


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    form: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """Header value, ignoring case."""
        lname = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lname), None)


@dataclass(frozen=True)
class Reply:
    """A canned HTTP answer."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    """Sleep ``seconds`` (past the client's timeout), then answer ``then`` (a 504 by default)."""

    seconds: float
    then: Reply | None = None


Action = Reply | Delay | Callable[[Recorded], Reply]
Handler = Callable[[Recorded], Reply]


class _QuietHandler(WSGIRequestHandler):
    """Request handler that keeps the raw headers and does not log every request to stderr."""

    def make_environ(self) -> dict[str, Any]:
        """Add the headers exactly as sent: the WSGI environ drops names with ``_`` (werkzeug does so on
        purpose), and Zalo's are ``access_token`` and ``secret_key``."""
        environ = super().make_environ()
        environ["fake.raw_headers"] = list(self.headers.items())
        return environ

    def log(self, type: str, message: str, *args: Any) -> None:
        """Drop werkzeug's access log."""


class FakeServer:
    """Base of the provider fakes: routing, recording, scripting, start/stop."""

    def __init__(self) -> None:
        """Create a stopped server with no routes."""
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self._scripts: dict[str, deque[Action]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[Recorded] = []

    # -- setup ---------------------------------------------------------------------------------------------------

    def route(self, method: str, pattern: str, name: str, handler: Handler) -> None:
        """Answer ``method`` requests whose path fully matches ``pattern`` with ``handler``."""
        self._routes.append((method, re.compile(pattern), name, handler))

    def script(self, route: str, *actions: Action) -> None:
        """Queue ``actions`` for the next requests to ``route`` (one per request, in order)."""
        with self._lock:
            self._scripts.setdefault(route, deque()).extend(actions)

    def start(self) -> Self:
        """Start serving in a daemon thread."""
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        # A short poll interval: shutdown() waits for the loop to notice, and tests start and stop many servers.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake any sleeping ``Delay`` and stop the server."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_port}"

    # -- inspection ----------------------------------------------------------------------------------------------

    def calls(self, route: str) -> list[Recorded]:
        """Requests received on ``route``, in order."""
        with self._lock:
            return [r for r in self.requests if r.route == route]

    def __iter__(self) -> Iterator[Recorded]:
        with self._lock:
            return iter(list(self.requests))

    # -- serving -------------------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        """The WSGI app: match, record, run the script or the handler."""
        request = Request(environ)
        body = request.get_data(cache=True)
        for method, pattern, name, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if request.method == method and match:
                break
        else:
            return Response(json.dumps({"error": "no such route"}), 404, content_type="application/json")(
                environ, start_response
            )
        try:
            parsed_json = json.loads(body) if body and "json" in (request.content_type or "") else None
        except ValueError:
            parsed_json = None
        recorded = Recorded(
            route=name,
            method=request.method,
            path=request.path,
            query=dict(request.args.items()),
            headers=dict(environ.get("fake.raw_headers") or request.headers.items()),
            body=body,
            json=parsed_json,
            form=dict(request.form.items()),
            params={k: v for k, v in match.groupdict().items() if v is not None},
        )
        with self._lock:
            self.requests.append(recorded)
            queue = self._scripts.get(name)
            action: Action | None = queue.popleft() if queue else None
        reply = self._run(action, recorded, handler)
        payload = reply.body if isinstance(reply.body, (bytes, str)) else json.dumps(reply.body, ensure_ascii=False)
        response = Response(payload, reply.status, content_type="application/json; charset=utf-8")
        for key, value in reply.headers.items():
            response.headers[key] = value
        return response(environ, start_response)

    def _run(self, action: Action | None, recorded: Recorded, handler: Handler) -> Reply:
        """Apply a scripted action, or the route's normal handler."""
        if action is None:
            return handler(recorded)
        if isinstance(action, Delay):
            self._stopping.wait(action.seconds)
            return action.then or Reply(504, {"error": "gateway timeout"})
        if isinstance(action, Reply):
            return action
        return action(recorded)
