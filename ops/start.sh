#!/usr/bin/env bash
# Sets up everything (ops/setup.sh), then starts the daemon suite in the background on the
# built-in default configuration (or the one given: ops/start.sh --config FILE).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash ops/setup.sh
exec .venv/bin/hftctl start "$@"
