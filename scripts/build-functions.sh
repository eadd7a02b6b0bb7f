#!/usr/bin/env bash
# Release-builds the function binaries the way `sam build` does: each in its own crate's folder,
# where cargo enables that function's features only (one `cargo lambda build --bin ...` from the
# workspace root would unify them and link every adapter into every function). The binaries
# land in target/lambda/<function>/bootstrap; prints each build's seconds and the total.
#
#   scripts/build-functions.sh [--arm64 | --x86-64] [function ...]    (default: --arm64, all)
set -euo pipefail
cd "$(dirname "$0")/.."

arch=--arm64
case "${1:-}" in
  --arm64 | --x86-64) arch=$1; shift ;;
esac
if [ $# -gt 0 ]; then
  functions=("$@")
else
  functions=()
  for dir in functions/*/; do functions+=("$(basename "$dir")"); done
fi

start=$(date +%s)
for f in "${functions[@]}"; do
  began=$(date +%s)
  (cd "functions/$f" && cargo lambda build --release "$arch")
  echo "BUILT $f in $(($(date +%s) - began)) s"
done
echo "WALL_SECONDS=$(($(date +%s) - start))"
