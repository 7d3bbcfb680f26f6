"""A local stand-in for the Hugging Face hub: files in the hub's URL layout on 127.0.0.1.

``/<repo>/resolve/<revision>/<path>`` answers HEAD (size, ETag) and GET, with HTTP
Range requests (206) like the real hub, so downloads, progress, cancel and resume
run end to end through the real download code. ``bytes_per_s`` slows GETs down so a
test can watch progress and cancel half-way.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self, repo: str, revision: str, files: dict[str, bytes], *, bytes_per_s: float | None = None) -> None:
        self.requests: list[tuple[str, str, str]] = []  # (method, path, range header)
        self.bytes_per_s = bytes_per_s
        prefix = f"/{repo}/resolve/{revision}/"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, with_body: bool) -> None:
                outer.requests.append((self.command, self.path, self.headers.get("Range", "")))
                path = self.path.split("?")[0]
                name = path[len(prefix):] if path.startswith(prefix) else None
                if name not in files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = files[name]
                start = 0
                wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if wanted and with_body:
                    start = int(wanted.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body) if with_body else len(data)))
                self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", revision)
                self.end_headers()
                if with_body:
                    self._send(body)

            def _send(self, body: bytes) -> None:
                step = 16384
                for offset in range(0, len(body), step):
                    try:
                        self.wfile.write(body[offset : offset + step])
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the client cancelled
                    if outer.bytes_per_s:
                        time.sleep(step / outer.bytes_per_s)

            def do_HEAD(self):  # noqa: N802
                self._answer(False)

            def do_GET(self):  # noqa: N802
                self._answer(True)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def gets(self) -> list[tuple[str, str]]:
        """(path, range) of every file GET."""
        return [(path, rng) for method, path, rng in self.requests if method == "GET" and "/resolve/" in path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 whose port refuses connections (nothing listens there)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def private_models_dir(home, downloads: tuple[str, ...] = ("hub-test", "smolvlm-256m")) -> None:
    """Test libraries share one models folder (a symlink, so MiniLM is built once); a test that
    downloads must not leave models there for later tests. The folder becomes this library's
    own, linking everything shared except the models the test downloads."""
    models = home / "models"
    if not models.is_symlink():
        return
    shared = models.resolve()
    models.unlink()
    models.mkdir()
    for entry in shared.iterdir():
        if entry.name not in downloads:
            (models / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
