"""Steady client load for the zero-downtime tests: a few threads sending GET /version through a
front end until stopped, every failure recorded and none retried."""

from __future__ import annotations

import http.client
import threading
import time

from conftest import wait_for


class Load:
    """A few client threads sending GET /version through nginx until stopped (bounded)."""

    def __init__(self, port: int, clients: int = 3, max_seconds: float = 60.0) -> None:
        self.port = port
        self.errors: list[object] = []
        self.versions: list[bytes] = []
        self.count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for t in self._threads:
            t.start()

    def served_more(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` more requests were answered (or failed) than now."""
        target = self.count + n
        return wait_for(lambda: self.count >= target, timeout)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        for _ in range(1_000_000):
            if self._stop.is_set() or time.monotonic() > self._deadline:
                break
            try:
                conn.request("GET", "/version")
                resp = conn.getresponse()
                body = resp.read()
                with self._lock:
                    self.count += 1
                    if resp.status != 200:
                        self.errors.append((resp.status, body[:200]))
                    elif not self.versions or self.versions[-1] != body:
                        self.versions.append(body)
            except Exception as exc:  # every failure is recorded, none is retried
                with self._lock:
                    self.errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(20)
