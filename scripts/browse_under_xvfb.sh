#!/bin/bash
# A person's browsing in the real window under a virtual X server, driven by keys:
#   scripts/browse_under_xvfb.sh [PRESSES] [OUT.png]
# opens a folder of 35 photos, clicks the first, presses Down and Up PRESSES times (default 700)
# through xdotool, saves a screenshot and says whether the app is still alive (exit 1 if not).
# Needs: apt-get install -y xvfb xdotool imagemagick libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
set -u
cd "$(dirname "$0")/.."
presses="${1:-700}"
out="${2:-/tmp/browse_under_xvfb.png}"
work=$(mktemp -d)
.venv/bin/python - "$work/photos" <<'PY'
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
from gui_soak import make_photos

Path(sys.argv[1]).mkdir()
make_photos(Path(sys.argv[1]), 35)
PY
display=:$((90 + RANDOM % 9))
Xvfb "$display" -screen 0 1600x1000x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null; rm -rf "$work"' EXIT
sleep 2
export DISPLAY=$display
unset QT_QPA_PLATFORM
.venv/bin/captioner-gui --settings "$work/settings.ini" "$work/photos" >"$work/app.log" 2>&1 &
app=$!
for _ in $(seq 60); do
    xdotool search --name "Captioner" >/dev/null 2>&1 && break
    sleep 1
done
sleep 15  # the model loads and the first captions come
xdotool mousemove 170 75 click 1
sleep 1
rounds=$((presses / 100))
for _ in $(seq "$rounds"); do
    xdotool key --delay 60 $(printf 'Down %.0s' $(seq 50))
    xdotool key --delay 60 $(printf 'Up %.0s' $(seq 50))
done
xdotool key --delay 60 Down Down Down Down Down Down Down
sleep 3
import -window root "$out"
if kill -0 "$app" 2>/dev/null; then
    echo "alive after $((rounds * 100 + 7)) key presses; screenshot: $out"
    kill "$app"
    exit 0
fi
echo "the app DIED:"
grep -v propagateSizeHints "$work/app.log" | tail -5
exit 1
