"""Micro-benchmark: microseconds per ``parse_head`` call on real uwsgi captures (stdlib timeit).

Usage: ``python bench/uwsgi_parse_micro.py [FIXTURES_DIR]``. The captures default to
``../shared/fixtures/uwsgi-packets`` next to the repository root.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

from monoceros.protocols.uwsgi import UwsgiParser, parse_head

CAPTURES = ("nginx-get-query.bin", "apache-get-query.bin", "nginx-headers-100.bin")
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "uwsgi-packets"


def per_call_us(func: object, number: int, repeat: int = 7) -> float:
    """Best-of-``repeat`` time of one call, in microseconds."""
    times = timeit.repeat(func, number=number, repeat=repeat)  # type: ignore[arg-type]
    return min(times) / number * 1e6


def parser_round(packet: bytes) -> None:
    """Drive a fresh UwsgiParser over a whole packet until EndOfMessage (head + empty body)."""
    parser = UwsgiParser()
    parser.receive_data(packet)
    parser.next_event()
    parser.next_event()


def main(argv: list[str]) -> int:
    """Print the figures for each capture."""
    folder = Path(argv[1]) if len(argv) > 1 else DEFAULT_DIR
    if not folder.is_dir():
        print(f"captures not found in {folder}", file=sys.stderr)
        return 1
    print(f"{'capture':28} {'vars bytes':>10} {'parse_head':>11} {'UwsgiParser':>12}")
    for name in CAPTURES:
        packet = (folder / name).read_bytes()
        size = packet[1] | packet[2] << 8
        number = 2000 if size > 2000 else 20000
        head = per_call_us(lambda packet=packet: parse_head(packet), number)
        full = per_call_us(lambda packet=packet: parser_round(packet), number)
        print(f"{name:28} {size:>10} {head:>8.2f} us {full:>9.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
