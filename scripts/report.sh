#!/usr/bin/env bash
# Installs pfps-meta and runs the main job on the bundled data.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e .
pfps-meta pool data/examples/normand1999.csv --measure MD --method REML --ci hksj
