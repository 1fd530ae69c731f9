#!/usr/bin/env bash
# Run the libosdp harness self-test (PD script vs CP script over a socat PTY pair).
# Uses $PORTIER_PYTHON (set by scripts/test), else the repo's .venv, else python3.
# Extra args go to selftest.py, e.g. --capture DIR or --only plaintext.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${PORTIER_PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then py="$repo/.venv/bin/python"; else py=python3; fi
fi
command -v socat >/dev/null || { echo "socat not installed" >&2; exit 1; }
exec "$py" "$here/selftest.py" "$@"
