#!/usr/bin/env bash
# Browser tests (e2e/): Debian's Chromium, driven by playwright-core, against a real
# `herald serve` that each test starts and stops. Installs what is missing (the chromium
# package, openssl, the pinned npm packages), builds the herald binary, runs `node --test`.
# Screenshots go to test-output/. Usage: ./scripts/e2e.sh [test files...]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
apt_updated=no
apt_install() {
  if [ "$apt_updated" = no ]; then
    as_root apt-get update -q
    apt_updated=yes
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || apt_install chromium
command -v openssl >/dev/null || apt_install openssl
command -v node >/dev/null || apt_install nodejs npm

if [ ! -d e2e/node_modules/playwright-core ] || [ ! -d e2e/node_modules/axe-core ]; then
  (cd e2e && npm ci --no-audit --no-fund)
fi

cargo build -p herald --locked
target_dir="${CARGO_TARGET_DIR:-target}"
export HERALD_BIN="${HERALD_BIN:-$(cd "$target_dir" && pwd)/debug/herald}"

cd e2e
if [ "$#" -eq 0 ]; then set -- tests/; fi
exec node --test --test-concurrency=1 "$@"
