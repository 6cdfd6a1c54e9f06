"""What the benchmark serves: hello, a POST echo and a streamed download (WSGI+ASGI)."""
