"""A real framework app (Starlette) for the ASGI worker's integration tests."""

from __future__ import annotations

import contextlib
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"started": True}


async def item(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "item": request.path_params["item_id"],
            "q": request.query_params.get("q"),
            "started": request.state.started,
        }
    )


async def pid(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(os.getpid()))


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"got": await request.json()})


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(f"echo: {text}")
    await websocket.close()


app = Starlette(
    routes=[
        Route("/pid", pid),
        Route("/items/{item_id:int}", item),
        Route("/echo", echo, methods=["POST"]),
        WebSocketRoute("/ws", ws),
    ],
    lifespan=lifespan,
)
