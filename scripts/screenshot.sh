#!/bin/sh
# Screenshot of the real window under a virtual X server:
#   scripts/screenshot.sh [OUT.png] [--model DIR] [PATH ...]
# Needs Xvfb (Debian: apt-get install -y xvfb libxcb-cursor0). Default output: docs/screenshot.png
set -eu
cd "$(dirname "$0")/.."
out="${1:-docs/screenshot.png}"
[ $# -gt 0 ] && shift
if ! command -v xvfb-run >/dev/null; then
    echo "xvfb-run not found: apt-get install -y xvfb libxcb-cursor0" >&2
    exit 1
fi
unset QT_QPA_PLATFORM
exec xvfb-run --auto-servernum --server-args="-screen 0 1600x1000x24 -dpi 96" \
    .venv/bin/python scripts/screenshot.py "$out" "$@"
