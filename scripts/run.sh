#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks, builds the desktop app and starts it.
# The app hosts the bundled signaling server by default; its header shows the address
# (ws://<LAN address>:7878) that others enter in their Settings.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
exec cargo run --release -p shoal-app "$@"
