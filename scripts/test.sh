#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, and all tests. Installs what the tests need when it
# is missing. Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The reverse-proxy test (crates/herald/tests/ops_proxy.rs) runs Debian's real nginx.
if [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx (for the reverse-proxy test)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq &&
    { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 ||
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }; } ||
    echo "warning: could not install nginx; the reverse-proxy test will fail" >&2
fi

# The Redis store and cluster tests (crates/herald-hub/tests/redis_store.rs,
# crates/herald/tests/cluster.rs) start Debian's real redis-server.
if ! command -v redis-server >/dev/null; then
  echo "== installing redis-server (for the Redis store and cluster tests)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq &&
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } ||
    echo "warning: could not install redis-server; the Redis tests will fail" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked --all-targets
cargo test --workspace --locked --doc

echo "== browser tests (e2e/)"
./scripts/e2e.sh
