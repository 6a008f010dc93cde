"""A static-file update repository on 127.0.0.1 (port 0) for OTA tests: GET/HEAD with ``Range``.

``drop_after`` makes the server cut the connection of the first full GET of a file name after that
many body bytes (the Content-Length still announces the whole file), which is what a flaky link does;
the updater must resume with ``Range``. ``requests`` records (path, Range header) for assertions.
"""

from __future__ import annotations

import http.server
import os
import re
import threading
from pathlib import Path
from types import TracebackType

__all__ = ["UpdateRepo"]

_RANGE = re.compile(r"^bytes=(\d+)-$")


class UpdateRepo:
    def __init__(
        self, directory: str | os.PathLike[str], *, drop_after: dict[str, int] | None = None
    ) -> None:
        self.directory = Path(directory)
        self.drop_after = dict(drop_after or {})
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        repo = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # silence per-request lines
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, *, body: bool) -> None:
                name = self.path.split("?", 1)[0].lstrip("/")
                range_header = self.headers.get("Range")
                with repo._lock:
                    repo.requests.append((name, range_header))
                path = (repo.directory / name).resolve()
                if repo.directory.resolve() not in path.parents or not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                match = _RANGE.match(range_header or "")
                if match and int(match.group(1)) < len(data):
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                with repo._lock:
                    cut = repo.drop_after.pop(name, None) if start == 0 else None
                if cut is not None:
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data[start:])

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client killed mid-download (the fault-injection tests) is expected here

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="update-repo", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> UpdateRepo:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> UpdateRepo:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
