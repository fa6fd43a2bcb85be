"""What every local fake of a cloud API shares: a threaded HTTP server on 127.0.0.1 and
JSON answers (tests/cloudflare_fake.py, desec_fake.py, hetzner_fake.py)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T", bound="FakeServer")


class FakeServer:
    """The fake's HTTP server on a free loopback port; subclasses return their handler class."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self: T) -> T:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class JsonHandler(BaseHTTPRequestHandler):
    """Quiet, with one way to answer: a JSON document (or raw bytes, for broken answers)."""

    def log_message(self, *args: Any) -> None:
        return

    def _send(self, status: int, doc: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        payload = raw if raw is not None else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)
