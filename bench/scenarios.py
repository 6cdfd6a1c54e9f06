"""The scenarios: what wrk sends, which app answers, and the one request that checks the answer.

Besides the side-by-side scenarios (``hello``, ``echo-4k``, ``download-32m``, the default), the
growth scenarios vary one thing of the request along an axis: the number of request headers
(``headers-1``, ``headers-16``, ``headers-100``) or the size of a request body that the app reads
whole (``body-0``, ``body-4k``, ``body-1m``), so the cost per request can be fitted to a line.
"""

from __future__ import annotations

import hashlib
import http.client
import os
from dataclasses import dataclass

HELLO = b"Hello, World!"
DOWNLOAD_BLOCK = bytes(range(256)) * 256  # what apps/*_apps.py:download send, repeated
HEADERS, BODY = "headers", "body"  # the growth axes
AXIS_UNITS = {HEADERS: "request headers", BODY: "request body KiB"}
HEADER_VALUE = "0123456789abcdef"  # every extra header's value: 28-byte header lines


def extra_headers(count: int) -> dict[str, str]:
    """count request headers besides Host: ``X-Bench-01: 0123456789abcdef`` and so on."""
    return {f"X-Bench-{i:02d}": HEADER_VALUE for i in range(1, count + 1)}


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
    extra_headers: int = 0  # request headers besides Host (wrk sends Host and nothing else)
    axis: str = ""  # growth scenarios: HEADERS or BODY, the axis this scenario is a point of

    @property
    def axis_value(self) -> float:
        """The point on its growth axis: request headers (Host included), or body KiB."""
        return 1 + self.extra_headers if self.axis == HEADERS else self.body_size / 1024

    def request_headers(self) -> dict[str, str]:
        """The headers sent besides Host (and Content-Length, which wrk and http.client add)."""
        headers = extra_headers(self.extra_headers)
        if self.method == "POST":
            headers["Content-Type"] = "application/octet-stream"
        return headers

    def wrk_script(self) -> str | None:
        """A wrk Lua script for a POST or extra headers (None for a plain GET)."""
        if self.method != "POST" and not self.extra_headers:
            return None
        lines = []
        if self.method == "POST":  # an empty body still sends Content-Length: 0
            lines += ['wrk.method = "POST"', f'wrk.body = string.rep("e", {self.body_size})']
        lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in self.request_headers().items()]
        return "\n".join(lines) + "\n"

    def check(self, host: str, port: int, timeout: float) -> str:
        """Send one request and compare status, headers and body; returns a summary line.

        Raises WrongAnswer for a wrong answer, OSError / HTTPException when the exchange failed.
        """
        body = os.urandom(self.body_size) if self.method == "POST" else None
        headers = self.request_headers()
        want_size, want_digest = self.expected(body)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            # the headers wrk sends and no others (http.client would add Accept-Encoding)
            conn.putrequest(self.method, self.path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
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
        """Length and sha256 of the right answer: body length, echoed body, download or hello."""
        if self.app == "length":
            text = b"%d" % len(body or b"")
            return len(text), hashlib.sha256(text).digest()
        if body is not None:
            return len(body), hashlib.sha256(body).digest()
        if self.answer_size:
            digest = hashlib.sha256()
            for _ in range(self.answer_size // len(DOWNLOAD_BLOCK)):
                digest.update(DOWNLOAD_BLOCK)
            return self.answer_size, digest.digest()
        return len(HELLO), hashlib.sha256(HELLO).digest()


DEFAULT = ("hello", "echo-4k", "download-32m")  # the side-by-side comparison
GROWTH = ("headers-1", "headers-16", "headers-100", "body-0", "body-4k", "body-1m")


def _headers(total: int) -> Scenario:
    """GET / (hello) with total request headers, Host included."""
    return Scenario(
        f"headers-{total}", "hello", "GET", "/", "text/plain", extra_headers=total - 1, axis=HEADERS
    )


def _body(label: str, size: int) -> Scenario:
    """POST /length with a body of size bytes, which the app reads whole and answers its length."""
    return Scenario(
        f"body-{label}", "length", "POST", "/length", "text/plain", body_size=size, axis=BODY
    )


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
        _headers(1),
        _headers(16),
        _headers(100),
        _body("0", 0),
        _body("4k", 4096),
        _body("1m", 1 << 20),
    )
}
