"""The lifecycle every HTTP fake shares: a threaded server on 127.0.0.1, a free port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LoopbackHTTPFake:
    """Base of the HTTP fakes: subclasses implement ``_serve(handler)`` for every request.

    Use as a context manager, or call ``start()`` / ``stop()``; ``url`` is the base URL.
    """

    thread_name = "fake-http"

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError  # pragma: no cover - every fake defines its routes

    def start(self) -> Self:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # ~40 ms per request otherwise

            def _dispatch(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True, name=self.thread_name
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"
