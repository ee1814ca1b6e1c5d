"""A loopback HTTP server that answers like the model hub's ``resolve`` endpoint, for download tests.

It serves ``/{repo}/resolve/{revision}/{filename}`` for HEAD and GET with the headers huggingface_hub reads
(``X-Repo-Commit``, ``ETag``, ``Content-Length``). Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _handler(repo: str, files: dict[str, bytes], log: list[str]):
    class Handler(BaseHTTPRequestHandler):
        def _lookup(self):
            prefix = f"/{repo}/resolve/"
            if not self.path.startswith(prefix):
                return None
            revision_and_name = self.path[len(prefix):].split("?")[0]
            _, _, name = revision_and_name.partition("/")
            return name if name in files else None

        def _headers(self, name: str) -> None:
            body = files[name]
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()

        def do_HEAD(self):  # noqa: N802 (http.server's naming)
            log.append(f"HEAD {self.path}")
            name = self._lookup()
            if name is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()
                return
            self._headers(name)

        def do_GET(self):  # noqa: N802
            log.append(f"GET {self.path}")
            name = self._lookup()
            if name is None:
                self.send_response(404)
                self.end_headers()
                return
            self._headers(name)
            self.wfile.write(files[name])

        def log_message(self, *args):  # keep test output quiet
            pass

    return Handler


@contextmanager
def serve_hub(repo: str, files: dict[str, bytes]):
    """Yield (endpoint URL, request log) while a stand-in hub serves ``files`` for ``repo``."""
    log: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(repo, files, log))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
