#!/usr/bin/env bash
# Install (scripts/install.sh), lint, then run the whole test suite with pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest tests "$@"
