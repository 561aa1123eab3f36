#!/usr/bin/env bash
# Sets up everything (ops/setup.sh) and runs the whole test suite: lint, types, tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash ops/setup.sh
echo "test: ruff"
.venv/bin/ruff check .
echo "test: mypy"
.venv/bin/mypy -p hft
echo "test: pytest"
exec .venv/bin/pytest "$@"
