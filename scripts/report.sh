#!/usr/bin/env bash
# Installs pfps-meta and runs the main job: the full report from analyses/ and data/ into reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e .
pfps-meta report --out reports
echo "open reports/index.html (or read reports/report.md)"
