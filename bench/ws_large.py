"""Large WebSocket frames: monoceros's asgi worker against uvicorn with ``websockets``.

A ``websockets`` client (the library monoceros's tests use; uvicorn's own WebSocket
implementation, with its C speed-up) sends MESSAGES single-frame binary (or, with ``--text``,
text) messages of SIZE bytes
to an echo application and waits for each echo. Per server: the wall time per round trip and
the server's CPU time per message (its whole process tree, from ``/proc``). Compression is off
on the client, so both servers do plain RFC 6455 framing: unmasking, buffering, writing.

    PEERS_BIN=... .venv/bin/python -m bench.ws_large [--size 16777216] [--messages 10]

Needs ``websockets`` in monoceros's environment (the test extra) and in uvicorn's
(``bench/setup.sh`` installs it). Not part of the test suite; run it briefly, the machine is
shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from . import procs, procstat

ECHO_APP = """
async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
"""


async def _round_trips(port: int, size: int, messages: int, text: bool) -> list[float]:
    import websockets  # the client; imported here so --help works without it

    payload: bytes | str = os.urandom(size)
    if text:  # valid UTF-8 of the same size: two-byte characters among ASCII
        payload = ("é" + "x" * 62 + "\n").encode().decode() * (size // 65)
    times = []
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/", compression=None, max_size=None, ping_interval=None
    ) as ws:
        await ws.send(payload)  # warm-up: buffers grown, code paths hot
        assert await ws.recv() == payload
        for _ in range(messages):
            started = time.perf_counter()
            await ws.send(payload)
            echo = await ws.recv()
            times.append(time.perf_counter() - started)
            assert len(echo) == len(payload)
    return times


def measure(
    name: str, argv: list[str], port: int, work: Path, size: int, n: int, text: bool
) -> None:
    """Start one server, time ``n`` round trips and its CPU time, stop it, print one line."""
    proc = procs.start(argv, work / f"{name}.log", cwd=work)
    try:
        procs.wait_listening(proc, 20, port=port)
        before = procstat.read_table()
        times = asyncio.run(_round_trips(port, size, n, text))
        after = procstat.read_table()
    finally:
        procs.stop(proc)
    cpu = procstat.window_cpu_seconds(proc.pid, before, after) / (n + 1)
    times.sort()
    print(
        f"{name:<28} median {times[len(times) // 2] * 1e3:7.1f} ms per echo, "
        f"best {times[0] * 1e3:7.1f} ms, server CPU {cpu * 1e3:7.1f} ms per message"
    )


def main() -> int:
    """Run both servers in turn and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--peers-bin", default=os.environ.get("PEERS_BIN", ""))
    parser.add_argument("--loop", default="uvloop", help="both servers' event loop")
    parser.add_argument("--text", action="store_true", help="text messages instead of binary")
    args = parser.parse_args()
    uvicorn = str(Path(args.peers_bin) / "uvicorn") if args.peers_bin else "uvicorn"
    limit = str(max(args.size, 16 * 1024 * 1024))
    with tempfile.TemporaryDirectory(prefix="ws-bench-") as tmp:
        work = Path(tmp)
        (work / "echo_app.py").write_text(ECHO_APP)
        port = procs.free_port()
        monoceros = [sys.executable, "-m", "monoceros", "-k", "asgi", "--asgi-loop", args.loop]
        measure(
            "monoceros asgi",
            [*monoceros, "-b", f"127.0.0.1:{port}", "--ws-max-message-size", limit, "echo_app:app"],
            port,
            work,
            args.size,
            args.messages,
            args.text,
        )
        port = procs.free_port()
        measure(
            "uvicorn --ws websockets",
            [
                uvicorn,
                *("--ws", "websockets", "--loop", args.loop, "--http", "httptools"),
                *("--port", str(port), "--ws-max-size", limit, "--log-level", "warning"),
                "echo_app:app",
            ],
            port,
            work,
            args.size,
            args.messages,
            args.text,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
