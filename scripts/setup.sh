# Shared setup for scripts/run.sh and scripts/test.sh (POSIX sh; sourced, or run alone).
#
# Creates .venv with Python >= 3.11 when it is missing, and installs the pinned
# requirements whenever requirements.txt differs from the copy saved after the
# last successful install (the stamp), so a second run starts at once.
set -eu

ROOT=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-.venv}
STAMP="$VENV/.requirements.installed"

find_python() {
    # $PYTHON first, then the exact version we test on, then whatever is there.
    for candidate in ${PYTHON:-} python3.11 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    if ! PY=$(find_python); then
        echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    echo "==> Creating $VENV with $PY" >&2
    if ! "$PY" -m venv "$VENV"; then
        echo "error: could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    fi
fi

if ! cmp -s requirements.txt "$STAMP"; then
    echo "==> Installing pinned requirements into $VENV" >&2
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r requirements.txt
    # Written only after a successful install, so a failed one is retried next time.
    cp requirements.txt "$STAMP"
fi
