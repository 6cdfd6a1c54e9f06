"""The scenarios: what wrk sends, which app answers, and the one request that checks the answer."""

from __future__ import annotations

import hashlib
import http.client
import os
from dataclasses import dataclass

HELLO = b"Hello, World!"
DOWNLOAD_BLOCK = bytes(range(256)) * 256  # what apps/*_apps.py:download send, repeated


class WrongAnswer(Exception):
    """The server answered, but not what the app sends: the cell fails."""


@dataclass(frozen=True)
class Scenario:
    """One kind of request: the app callable serving it, and its wrk settings."""

    name: str
    app: str  # callable name in wsgi_apps / asgi_apps
    method: str
    path: str
    content_type: str
    body_size: int = 0  # request body (POST)
    answer_size: int = 0  # download: DOWNLOAD_BLOCK repeated up to this size
    max_connections: int = 0  # 0: wrk -c as given; else at most this many (long downloads)

    def wrk_script(self) -> str | None:
        """A wrk Lua script for requests with a body (None for a plain GET)."""
        if not self.body_size:
            return None
        return (
            'wrk.method = "POST"\n'
            f'wrk.body = string.rep("e", {self.body_size})\n'
            'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        )

    def check(self, host: str, port: int, timeout: float) -> str:
        """Send one request and compare status, headers and body; returns a summary line.

        Raises WrongAnswer for a wrong answer, OSError / HTTPException when the exchange failed.
        """
        body = os.urandom(self.body_size) if self.body_size else None
        headers = {"Content-Type": "application/octet-stream"} if body else {}
        want_size, want_digest = self.expected(body)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request(self.method, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            digest = hashlib.sha256()
            size = 0
            for _ in range(want_size // 65536 + 2):  # bounded: a longer body shows up in `rest`
                block = resp.read(65536)
                if not block:
                    break
                digest.update(block)
                size += len(block)
            rest = resp.read(1)
            status, ctype = resp.status, resp.getheader("Content-Type", "")
            clen = resp.getheader("Content-Length")
        finally:
            conn.close()
        problems = []
        if status != 200:
            problems.append(f"status {status}")
        if rest or size != want_size or digest.digest() != want_digest:
            problems.append(
                f"body of {size}{'+' if rest else ''} bytes, expected {want_size} "
                f"bytes{'' if size != want_size else ' (content differs)'}"
            )
        if not ctype.startswith(self.content_type):
            problems.append(f"Content-Type {ctype!r}, expected {self.content_type}")
        if clen is not None and clen != str(size):
            problems.append(f"Content-Length {clen} for {size} bytes")
        if problems:
            raise WrongAnswer(f"{self.method} {self.path}: " + "; ".join(problems))
        return f"{status} {ctype} {size} B"

    def expected(self, body: bytes | None) -> tuple[int, bytes]:
        """Length and sha256 of the right answer: echoed body, download or hello."""
        if body is not None:
            return len(body), hashlib.sha256(body).digest()
        if self.answer_size:
            digest = hashlib.sha256()
            for _ in range(self.answer_size // len(DOWNLOAD_BLOCK)):
                digest.update(DOWNLOAD_BLOCK)
            return self.answer_size, digest.digest()
        return len(HELLO), hashlib.sha256(HELLO).digest()


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("hello", "hello", "GET", "/", "text/plain"),
        Scenario("echo-4k", "echo", "POST", "/echo", "application/octet-stream", body_size=4096),
        Scenario(
            "download-32m",
            "download",
            "GET",
            "/download",
            "application/octet-stream",
            answer_size=32 << 20,
            max_connections=4,
        ),
    )
}
