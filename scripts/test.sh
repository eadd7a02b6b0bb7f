#!/usr/bin/env bash
# Runs every test of IRAS on one machine: installs what the tests need (idempotent, quick
# when already installed), runs the suites, and stops whatever it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# A clean clone builds everything once: incremental caches (a third of target/) and debug info
# would only fill the CI machine's disk, which ran out before (pip's wheels could not unpack).
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
  export CARGO_PROFILE_DEV_DEBUG=0
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

step "test tools"
# Headless Chromium from Debian for the approval-page browser test; never a downloaded build.
if [ ! -x /usr/bin/chromium ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi
# playwright-core drives that Chromium; installed into the project, pinned by package-lock.json.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
# moto (AWS APIs on localhost) into .venv-test; the AWS tests start their own servers from it.
bash scripts/moto.sh
export IRAS_REQUIRE_AWS=1
export CHROMIUM=/usr/bin/chromium
# The test command has installed the browser tools, so the browser test must run.
export IRAS_REQUIRE_BROWSER=1

step "format"
cargo fmt --all -- --check

step "lint"
# --all-features: the optional AWS evidence of the `iras` command is linted and tested too.
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "dependency lines"
# The engine stays IRAS-free and core stays free of SDKs, HTTP and databases.
bash scripts/check-deps.sh

step "each function alone"
# Built in its own folder as sam build does, each function gets only its own features: code
# that needs an adapter its features do not link fails here, not in a deploy.
for dir in functions/*/; do
  (cd "$dir" && cargo check --locked --quiet)
done
cargo check --locked --quiet -p iras-lambda --no-default-features

step "AWS deployment shape"
# cfn-lint, sam validate --lint and statelint over template.yaml and statemachine.asl.json.
bash scripts/validate-aws.sh

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --locked --no-fail-fast
else
  cargo test --workspace --all-features --locked --no-fail-fast
fi
echo "all tests passed (${root})"
