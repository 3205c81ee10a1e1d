#!/bin/sh
# Installs what `captioner-scenes OUT --kind composites` pastes and paints on, from Debian:
#   tuxpaint-stamps-default  Tux Paint's stamps (GPL-2) in /usr/share/tuxpaint/stamps; the
#                            photographs listed in training/data/stamps.tsv are the objects
#   lomiri-wallpapers-16.04  landscape photos (CC-BY-4.0, CC-BY-SA-4.0, CC0) in
#                            /usr/share/backgrounds; optional: without them backgrounds are synthetic
# Neither is committed to this repository, nor are images made from them.
# Never use the photos of mate-backgrounds, plasma-workspace-wallpapers, darknet or opencv-doc for
# training: they are reserved for an independent evaluation (the generator refuses them).
# Run as root, or as a user with sudo.
set -eu
if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" "$@"
fi
apt-get update
apt-get install -y --no-install-recommends tuxpaint-stamps-default lomiri-wallpapers-16.04
echo "installed; next: .venv/bin/captioner-scenes OUT --kind composites" >&2
