#!/usr/bin/env bash
# Runs every check: the UI's type check, formatting, clippy (warnings are errors), and every
# test of every crate, including the desktop app's WebDriver test (it starts its own Xvfb).
# Usage: scripts/test.sh            (set CARGO_TARGET_DIR to share a build directory)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# The server and load tests hold thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== ui type check (tsc)" >&2
(cd ui && npm run --silent check)
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --locked
echo "== all checks passed" >&2
