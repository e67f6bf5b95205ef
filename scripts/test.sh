#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, and all tests. Installs what the tests need when it
# is missing. Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked --all-targets
cargo test --workspace --locked --doc

echo "== browser tests (e2e/)"
./scripts/e2e.sh
