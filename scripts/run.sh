#!/bin/sh
# Run the web server on this machine: sh scripts/run.sh
#
# Sets up .venv first (see scripts/setup.sh), then serves webhook.py with
# Flask's development server and an SQLite database in ./instance. No
# credentials are needed. HOST and PORT override 127.0.0.1:5000.
set -eu
. "$(dirname -- "$0")/setup.sh"
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-5000}
echo "==> Tự rà soát: web chat   http://$HOST:$PORT/"
echo "==>             API        http://$HOST:$PORT/api/v1/openapi.json"
echo "==>             stop with Ctrl+C"
exec "$VENV/bin/python" -m flask --app webhook run --host "$HOST" --port "$PORT"
