#!/usr/bin/env bash
# The first screen of report.html, as a newcomer sees it, in headless Chromium (Debian's
# `chromium`): scripts/screenshot-report.sh RESULTS_FOLDER OUT.png [WIDTHxHEIGHT]
set -euo pipefail
folder=$(cd "$1" && pwd); out=$2; size=${3:-1280,900}
profile=$(mktemp -d); trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="$size" \
  --screenshot="$out" "file://$folder/report.html" 2>/dev/null
echo "$out"
