#!/usr/bin/env bash
# Debian packages lid-dask's tests and dataset builder need: FFmpeg/sox for audio, espeak-ng and
# Festival voices for synthetic speech, Chromium for page tests, Prometheus (server and promtool) for the monitoring tests. Installs only what is missing.
set -euo pipefail
PACKAGES=(ffmpeg sox libsox-fmt-all espeak-ng festival festival-hi festival-mr festival-te
  festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k festvox-itapc16k festvox-ru
  festvox-czech-dita festvox-czech-machac festvox-czech-krb festvox-czech-ph
  festvox-suopuhe-lj festvox-suopuhe-mv festvox-ca-ona-hts festvox-hi-nsk festvox-mr-nsk festvox-te-nsk
  util-linux chromium prometheus)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
