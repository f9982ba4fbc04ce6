#!/usr/bin/env bash
# README command 2: create the environment if it is missing, then run the test suite.
#   bash tools/run_tests.sh [pytest args...]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(bash "$ROOT/tools/setup_env.sh")
cd "$ROOT"
exec "$VENV/bin/python" -m pytest tests "$@"
