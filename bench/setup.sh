#!/usr/bin/env bash
# Creates (or updates) the benchmark's own virtualenv holding the peers monoceros is compared with.
# They are never dependencies of monoceros. Prints the line to export before bench/run.py.
#   PEERS_VENV  where to create it (default: ~/.cache/monoceros-bench/peers)
set -eu
venv="${PEERS_VENV:-$HOME/.cache/monoceros-bench/peers}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
"$venv/bin/pip" install -q "gunicorn==27.0.1" "uwsgi==2.0.31" "uvicorn==0.54.0" "granian==2.8.7" uvloop httptools websockets >&2
echo "export PEERS_BIN=$venv/bin"
