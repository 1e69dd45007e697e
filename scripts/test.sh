#!/bin/sh
# Run the whole test suite: sh scripts/test.sh [pytest arguments...]
#
# Sets up .venv first (see scripts/setup.sh). Tests use a temporary SQLite
# database unless TEST_DATABASE_URL is set (e.g. postgresql+psycopg://...).
set -eu
. "$(dirname -- "$0")/setup.sh"
exec "$VENV/bin/python" -m pytest "$@"
