"""wrk's text output, parsed: request count, rate, latency percentiles and every kind of error."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}
_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m|h)$")
_TOTAL = re.compile(r"^(\d+) requests in ([\d.]+(?:us|ms|s|m|h)), ")
_SOCKET = re.compile(r"(connect|read|write|timeout) (\d+)")


@dataclass(frozen=True)
class WrkResult:
    """The figures of one wrk run."""

    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    non2xx: int = 0
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0

    @property
    def errors(self) -> int:
        """All failed requests and socket errors together."""
        return (
            self.non2xx + self.connect_errors + self.read_errors + self.write_errors + self.timeouts
        )

    def error_text(self) -> str:
        """The non-zero error counts, e.g. ``3 non-2xx, 1 timeout`` ('' when clean)."""
        parts = [
            (self.non2xx, "non-2xx"),
            (self.connect_errors, "connect"),
            (self.read_errors, "read"),
            (self.write_errors, "write"),
            (self.timeouts, "timeout"),
        ]
        return ", ".join(f"{n} {label}" for n, label in parts if n)


def to_ms(text: str) -> float:
    """A wrk duration such as ``812.00us``, ``1.20ms`` or ``2.00s`` in ms (nan if not one)."""
    m = _DURATION.match(text)
    return float(m.group(1)) * _TO_MS[m.group(2)] if m else math.nan


def parse_wrk(output: str) -> WrkResult:
    """Parse ``wrk --latency`` output; raises ValueError when the summary line is missing."""
    fields: dict[str, float | int] = {}
    found = False
    for raw in output.splitlines():
        line = raw.strip()
        total = _TOTAL.match(line)
        if total:
            found = True
            fields["requests"] = int(total.group(1))
            fields["seconds"] = to_ms(total.group(2)) / 1e3
        elif line.startswith("Requests/sec:"):
            fields["rps"] = float(line.split()[1])
        elif line.startswith("50%"):
            fields["p50_ms"] = to_ms(line.split()[1])
        elif line.startswith("99%"):
            fields["p99_ms"] = to_ms(line.split()[1])
        elif line.startswith("Non-2xx or 3xx responses:"):
            fields["non2xx"] = int(line.split(":")[1])
        elif line.startswith("Socket errors:"):
            for kind, count in _SOCKET.findall(line):
                fields["timeouts" if kind == "timeout" else f"{kind}_errors"] = int(count)
    if not found:
        raise ValueError("no 'N requests in T' line in wrk's output")
    return WrkResult(**fields)  # type: ignore[arg-type]
