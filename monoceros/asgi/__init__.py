"""ASGI 3 serving on one asyncio/uvloop event loop: scopes, request cycles, lifespan, WebSockets."""
