#!/usr/bin/env bash
# Installs pfps-meta with its test dependencies (and Debian's chromium for the browser check of the
# HTML report, and LibreOffice for the PDF conversion check of the Word and Excel reports, when they are
# missing and we may install them) and runs the whole test suite.
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
      || echo "note: could not install chromium; the browser test will be skipped" >&2
  fi
fi
if ! command -v soffice >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        libreoffice-core libreoffice-writer libreoffice-calc) >/dev/null 2>&1 \
      || echo "note: could not install LibreOffice; the PDF conversion test will be skipped" >&2
  fi
fi
python3 -m pytest -q
