"""The environ-like mapping the access log formats an ASGI request from."""

from __future__ import annotations

from typing import Any

__all__ = ["access_environ", "access_headers"]


def access_environ(scope: dict[str, Any]) -> dict[str, Any]:
    """CGI-style keys (REQUEST_METHOD, RAW_URI, HTTP_*, ...) for gunicorn's access log atoms."""
    query = scope.get("query_string", b"")
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8")
    target = raw + b"?" + query if query else raw
    client = scope.get("client")
    env: dict[str, Any] = {
        "REQUEST_METHOD": scope.get("method", "GET"),
        "RAW_URI": target.decode("latin-1"),
        "PATH_INFO": scope.get("path", ""),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
        "REMOTE_ADDR": client[0] if client else "",
        "SCRIPT_NAME": scope.get("root_path", ""),
    }
    if client:
        env["REMOTE_PORT"] = str(client[1])
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        text = value.decode("latin-1")
        env[key] = env[key] + ", " + text if key in env else text
    return env


def access_headers(headers: Any) -> list[tuple[str, str]]:
    """Response headers as ``str`` pairs (what the access log's ``{name}o`` atoms read)."""
    out = []
    for name, value in headers or ():
        try:
            out.append((bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1")))
        except (TypeError, ValueError):
            continue
    return out
