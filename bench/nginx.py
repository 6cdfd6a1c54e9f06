"""nginx's configuration for one cell: one worker, no access log, the server its only upstream."""

from __future__ import annotations

from pathlib import Path

# The CGI variables nginx's stock uwsgi_params file passes; request headers follow as HTTP_*.
UWSGI_PARAMS = {
    "QUERY_STRING": "$query_string",
    "REQUEST_METHOD": "$request_method",
    "CONTENT_TYPE": "$content_type",
    "CONTENT_LENGTH": "$content_length",
    "REQUEST_URI": "$request_uri",
    "PATH_INFO": "$document_uri",
    "DOCUMENT_ROOT": "$document_root",
    "SERVER_PROTOCOL": "$server_protocol",
    "REQUEST_SCHEME": "$scheme",
    "REMOTE_ADDR": "$remote_addr",
    "REMOTE_PORT": "$remote_port",
    "SERVER_PORT": "$server_port",
    "SERVER_NAME": "$server_name",
}

_PASS = {
    # nginx opens a new upstream connection per uwsgi request: this is the path uwsgi_pass users pay
    "uwsgi": [
        *(f"uwsgi_param {k} {v};" for k, v in UWSGI_PARAMS.items()),
        "uwsgi_pass backend;",
        "uwsgi_buffer_size 16k;",
        "uwsgi_buffers 8 64k;",
        "uwsgi_busy_buffers_size 128k;",
        "uwsgi_max_temp_file_size 0;",
    ],
    # HTTP rides on upstream keep-alive connections (for servers that keep them open)
    "http": [
        "proxy_pass http://backend;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "proxy_buffer_size 16k;",
        "proxy_buffers 8 64k;",
        "proxy_busy_buffers_size 128k;",
        "proxy_max_temp_file_size 0;",
    ],
}


def render(folder: Path, port: int, protocol: str, target: str) -> str:
    """nginx.conf text: listen on 127.0.0.1:port, pass every request to target over protocol.

    Every path nginx writes (pid, error log, temp folders) is inside folder. A request body of up
    to 2 MiB (body-1m) is held in memory, never written to a temp file; nginx sizes the buffer to
    the body, so a smaller body costs what it did with a smaller buffer.
    """
    location = "\n".join(f"            {line}" for line in _PASS[protocol])
    return f"""\
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/client-body;
    proxy_temp_path {folder}/proxy;
    uwsgi_temp_path {folder}/uwsgi;
    fastcgi_temp_path {folder}/fastcgi;
    scgi_temp_path {folder}/scgi;
    client_max_body_size 2m;
    client_body_buffer_size 2m;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    upstream backend {{
        server {target};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
{location}
        }}
    }}
}}
"""
