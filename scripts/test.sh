#!/usr/bin/env bash
# Runs the test suite (installs what it needs first). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest "$@"
