#!/usr/bin/env bash
# Installs pfps-meta with its test dependencies and runs the whole test suite.
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
python3 -m pytest -q
